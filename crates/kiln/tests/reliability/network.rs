//! Hostile servers end to end, each bounded in time: `ADD <url>` from a
//! server that never answers, stalls mid-body or closes early; a base image
//! whose manifest lists one layer twenty thousand times; a base image that
//! repeats a layer, which is downloaded once; and a registry behind an
//! HTTPS front that redirects blob downloads to plain HTTP on its own host
//! and port, which must not get the password.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kiln_testkit::{BaseImage, DowngradeFront, FaultProxy, Lure, Registry};
use serde_json::{json, Value};

/// Longer than any of these builds may take when kiln bounds its work; the
/// unbounded ones ran for many minutes, or forever.
const TIMEOUT: Duration = Duration::from_secs(120);

struct Build {
    dir: tempfile::TempDir,
}

impl Build {
    fn new(dockerfile: &str) -> Build {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ctx")).unwrap();
        fs::create_dir(dir.path().join("kiln")).unwrap();
        fs::write(dir.path().join("ctx/Dockerfile"), dockerfile).unwrap();
        Build { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `kiln build` with `args` (`--no-push` unless they name a
    /// destination) and `env`, and how long it took.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
        let started = Instant::now();
        let mut cmd = Command::cargo_bin("kiln").unwrap();
        cmd.arg("build");
        if !args.contains(&"--destination") {
            cmd.arg("--no-push");
        }
        cmd.arg("--context")
            .arg(self.path("ctx"))
            .args(["--isolation", "chroot", "--kiln-dir"])
            .arg(self.path("kiln"))
            .args(args)
            .env_remove("KILN_REGISTRY_READ_TIMEOUT")
            .timeout(TIMEOUT);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out, started.elapsed())
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How a hostile server treats an ADD download.
#[derive(Clone, Copy)]
enum Misbehaviour {
    Silent,
    StallMidBody,
    CloseEarly,
}

/// A server on 127.0.0.1 that misbehaves on every connection; held
/// connections are released after five minutes.
fn hostile_server(how: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                if !matches!(how, Misbehaviour::Silent) {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n",
                    );
                    let _ = s.write_all(&[b'x'; 1000]);
                    let _ = s.flush();
                }
                if !matches!(how, Misbehaviour::CloseEarly) {
                    std::thread::sleep(Duration::from_secs(300));
                }
            });
        }
    });
    format!("http://{addr}/tool.bin")
}

/// Builds `ADD <url>` from a `how` server with a one-second read timeout
/// and two retries; returns the error output, after checking the build
/// failed within seconds.
fn add_from(how: Misbehaviour) -> (String, String) {
    let url = hostile_server(how);
    let b = Build::new(&format!("FROM scratch\nADD {url} /tool.bin\n"));
    let (out, took) = b.run(
        &["--image-download-retry", "2"],
        &[("KILN_REGISTRY_READ_TIMEOUT", "1")],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {err}");
    assert!(err.contains(&url), "{err}");
    (url, err)
}

#[test]
fn add_from_a_server_that_never_answers_ends_with_a_timeout() {
    let (_, err) = add_from(Misbehaviour::Silent);
    assert!(
        err.contains("timed out") && err.contains("sent no data for 1s"),
        "{err}"
    );
}

#[test]
fn add_from_a_server_that_stalls_mid_body_ends_with_a_timeout() {
    let (_, err) = add_from(Misbehaviour::StallMidBody);
    assert!(
        err.contains("timed out") && err.contains("sent no data for 1s"),
        "{err}"
    );
}

#[test]
fn add_from_a_server_that_closes_early_says_how_much_arrived() {
    let (_, err) = add_from(Misbehaviour::CloseEarly);
    assert!(err.contains("broke off after 1000 of 4096 bytes"), "{err}");
    assert!(!err.contains("error decoding response body"), "{err}");
}

/// GETs `path` on the registry and parses the JSON.
fn get_json(reg: &Registry, path: &str, accept: &str) -> Value {
    let mut resp = reg
        .http_agent()
        .unwrap()
        .get(format!("{}{path}", reg.url()))
        .header("Accept", accept)
        .call()
        .unwrap();
    serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap()
}

/// Stores `bytes` as a blob of `repo` (one monolithic upload).
fn put_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> String {
    let digest = kiln_testkit::layout::sha256_digest(bytes);
    let agent = reg.http_agent().unwrap();
    let resp = agent
        .post(format!("{}/v2/{repo}/blobs/uploads/", reg.url()))
        .send_empty()
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let location = if location.starts_with('/') {
        format!("{}{location}", reg.url())
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    agent
        .put(format!("{location}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .send(bytes)
        .unwrap();
    digest
}

/// Pushes busybox, then `repo:1`: busybox's layer listed `copies` times in
/// the manifest and in the config's diff_ids (a valid image). Returns the
/// reference and the layer's digest.
fn push_repeated_layer(reg: &Registry, repo: &str, copies: usize) -> (String, String) {
    BaseImage::busybox()
        .unwrap()
        .push_to(reg, &format!("{repo}:base"))
        .unwrap();
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let mut manifest = get_json(reg, &format!("/v2/{repo}/manifests/base"), manifest_type);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config = get_json(reg, &format!("/v2/{repo}/blobs/{config_digest}"), "*/*");
    let layer = manifest["layers"][0].clone();
    let diff_id = config["rootfs"]["diff_ids"][0].clone();
    manifest["layers"] = Value::Array(vec![layer.clone(); copies]);
    config["rootfs"]["diff_ids"] = Value::Array(vec![diff_id; copies]);
    config["history"] = json!([]);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(reg, repo, &config_bytes);
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    reg.http_agent()
        .unwrap()
        .put(format!("{}/v2/{repo}/manifests/1", reg.url()))
        .header("Content-Type", manifest_type)
        .send(&manifest_bytes[..])
        .unwrap();
    (
        format!("{repo}:1"),
        layer["digest"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_manifest_listing_a_layer_twenty_thousand_times_is_refused_quickly() {
    let reg = Registry::plain().unwrap();
    let (image, _) = push_repeated_layer(&reg, "bomb", 20_000);
    let reference = format!("{}/{image}", reg.host());
    let b = Build::new(&format!("FROM {reference}\nRUN true\n"));
    let (out, took) = b.run(&["--insecure-pull"], &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {err}");
    assert!(
        err.contains(&reference) && err.contains("20000 layers") && err.contains("500 layers"),
        "{err}"
    );
}

#[test]
fn a_layer_a_manifest_repeats_is_downloaded_once() {
    let reg = Registry::plain().unwrap();
    let (image, layer) = push_repeated_layer(&reg, "repeat", 40);
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let reference = format!("{}/{image}", proxy.host());
    let b = Build::new(&format!("FROM {reference}\nRUN test -x /bin/busybox\n"));
    let (out, _) = b.run(&["--insecure-pull"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let downloads: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|l| l.starts_with("GET ") && l.contains(&format!("/blobs/{layer}")))
        .collect();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
}

/// Builds `dockerfile` (where `{front}` stands for the front's host) with
/// the registry's password in a Docker config for the front, trusting the
/// front's CA; `extra` are more flags. Checks that the build failed within
/// seconds, that the lure was sent and that no `Authorization` header ever
/// arrived over plain HTTP; returns the error output and the front's host.
fn build_through_front(lure: Lure, dockerfile: &str, extra: &[&str]) -> (String, String) {
    let reg = Registry::builder()
        .auth("kiln", "s3cret-pass")
        .start()
        .unwrap();
    let creds = reg.credentials().unwrap().clone();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "lure/busybox:1")
        .unwrap();
    let front = DowngradeFront::start(&reg.host(), lure).unwrap();
    let b = Build::new(&dockerfile.replace("{front}", &front.host()));
    fs::create_dir(b.path("docker")).unwrap();
    fs::write(
        b.path("docker/config.json"),
        json!({"auths": {front.host(): {"auth": creds.basic_auth_token()}}}).to_string(),
    )
    .unwrap();
    let cert = format!("{}={}", front.host(), front.ca_cert_path().display());
    let docker_config = b.path("docker");
    let extra: Vec<String> = extra
        .iter()
        .map(|a| a.replace("{front}", &front.host()))
        .collect();
    let mut args = vec!["--registry-certificate", &cert];
    args.extend(extra.iter().map(String::as_str));
    let (out, took) = b.run(&args, &[("DOCKER_CONFIG", docker_config.to_str().unwrap())]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(front.lures_sent() > 0, "the front never lured: {err}");
    let leaked: Vec<_> = front
        .plain_requests()
        .into_iter()
        .filter(|r| r.authorization.is_some())
        .collect();
    assert!(leaked.is_empty(), "password sent in clear: {leaked:?}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {err}");
    (err, front.host())
}

#[test]
fn a_tls_registry_redirecting_a_layer_to_plain_http_fails_and_keeps_the_password() {
    let (err, host) = build_through_front(
        Lure::RedirectBlobGets,
        "FROM {front}/lure/busybox:1\nRUN true\n",
        &[],
    );
    assert!(
        err.contains(&format!(
            "registry {host} is reached over HTTPS but sent a redirect to plain HTTP"
        )),
        "{err}"
    );
}

#[test]
fn a_tls_registry_handing_out_a_plain_http_upload_location_fails_and_keeps_the_password() {
    let (err, host) = build_through_front(
        Lure::HttpUploadLocation,
        "FROM scratch\nCOPY Dockerfile /\n",
        &["--destination", "{front}/lure/out:1"],
    );
    assert!(
        err.contains(&format!(
            "registry {host} is reached over HTTPS but sent an upload Location"
        )),
        "{err}"
    );
}

#[test]
fn a_plain_http_token_realm_never_gets_the_password() {
    let (err, host) = build_through_front(
        Lure::HttpTokenRealm,
        "FROM {front}/lure/busybox:1\nRUN true\n",
        &[],
    );
    assert!(
        err.contains(&format!(
            "registry {host} asks for credentials at token server http://{host}/token"
        )),
        "{err}"
    );
}
