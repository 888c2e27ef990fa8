//! `kiln build` against TLS and authenticating registries, and platform
//! selection from a multi-arch base.

use crate::build_common;

use std::fs;
use std::path::Path;

use build_common::{pushed_manifest_and_config, stderr, Kiln};
use kiln_testkit::{BaseImage, Credentials, FaultProxy, Flattened, Platform, Registry};

/// A context whose Dockerfile is `FROM <base>` plus one COPY.
fn context(base: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("note.txt"), "built by kiln\n").unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY note.txt /note.txt\n"),
    )
    .unwrap();
    ctx
}

fn assert_built(reg: &Registry, name: &str) {
    let img = Flattened::from_registry(reg, name).unwrap();
    assert_eq!(img.text("/note.txt").as_deref(), Some("built by kiln\n"));
    assert!(img.get("/bin/busybox").is_some(), "base layers present");
}

#[test]
fn tls_registry_with_its_ca_or_without_verification() {
    let reg = Registry::tls().unwrap();
    let base = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = context(&base);
    let ca = reg.ca_cert_path().unwrap();

    // The test CA for this host, for the base pull and the push.
    Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("app:ca")])
        .arg("--registry-certificate")
        .arg(format!("{}={}", reg.host(), ca.display()))
        .success();
    assert_built(&reg, "app:ca");

    // Without the CA the certificate does not verify ...
    let out = Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("app:none")])
        .output();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // ... unless verification is skipped for pulls and pushes.
    Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("app:skip")])
        .args(["--skip-tls-verify", "--skip-tls-verify-pull"])
        .success();
    assert_built(&reg, "app:skip");
}

/// A `DOCKER_CONFIG` directory whose `config.json` has `creds` for `host`.
fn docker_config(dir: &Path, host: &str, creds: &Credentials) {
    fs::create_dir_all(dir).unwrap();
    let doc = serde_json::json!({ "auths": { host: { "auth": creds.basic_auth_token() } } });
    fs::write(dir.join("config.json"), doc.to_string()).unwrap();
}

#[test]
fn htpasswd_registry_with_docker_config_credentials() {
    const PASSWORD: &str = "correct-horse-battery";
    const WRONG: &str = "wrong-password-7f3a9c";
    let reg = Registry::tls_with_auth("builder", PASSWORD).unwrap();
    let base = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = context(&base);
    let cert = format!("{}={}", reg.host(), reg.ca_cert_path().unwrap().display());

    let out = Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("private/app:1")])
        .args(["--registry-certificate", &cert])
        .env("DOCKER_CONFIG", reg.docker_config_dir().unwrap())
        .success();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains(PASSWORD), "the password was printed:\n{all}");
    assert_built(&reg, "private/app:1");
    let (_, config) = pushed_manifest_and_config(&reg, "private/app:1");
    assert_eq!(config["config"]["Env"][0], kiln_testkit::BUSYBOX_PATH_ENV);

    // A wrong password: exit 4, one error line naming the registry, and
    // neither password anywhere in the output.
    let wrong = tempfile::tempdir().unwrap();
    let creds = Credentials {
        username: "builder".into(),
        password: WRONG.into(),
    };
    docker_config(wrong.path(), &reg.host(), &creds);
    let out = Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("private/app:2")])
        .args(["--registry-certificate", &cert])
        .env("DOCKER_CONFIG", wrong.path())
        .output();
    let err = stderr(&out);
    let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(4), "{err}");
    for secret in [WRONG, PASSWORD, creds.basic_auth_token().as_str()] {
        assert!(!all.contains(secret), "a secret was printed:\n{all}");
    }
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{err}");
    let line = errors[0].to_ascii_lowercase();
    assert!(
        line.contains(&reg.host()) || line.contains("busybox"),
        "the error names the registry or image: {line}"
    );
    assert!(
        ["auth", "401", "unauthorized", "credential", "denied"]
            .iter()
            .any(|w| line.contains(w)),
        "the error says authentication failed: {line}"
    );
}

#[test]
fn multi_arch_base_resolves_to_host_or_custom_platform() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox_multi_arch()
        .unwrap()
        .push_to(&reg, "multi:latest")
        .unwrap();
    let ctx = context(&base);
    let (host, foreign) = (Platform::host(), Platform::foreign());

    Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("arch:host")])
        .args(["--insecure", "--insecure-pull"])
        .success();
    assert_built(&reg, "arch:host");
    let (_, config) = pushed_manifest_and_config(&reg, "arch:host");
    assert_eq!(config["architecture"], host.architecture.as_str());

    let mut name = format!("{}/{}", foreign.os, foreign.architecture);
    if let Some(v) = &foreign.variant {
        name = format!("{name}/{v}");
    }
    Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("arch:foreign")])
        .args(["--insecure", "--insecure-pull", "--custom-platform", &name])
        .success();
    let (_, config) = pushed_manifest_and_config(&reg, "arch:foreign");
    assert_eq!(config["architecture"], foreign.architecture.as_str());
    assert_eq!(config["os"], "linux");
    // Read the single-platform manifest kiln pushed, whatever the host.
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    kiln_testkit::skopeo_copy_with(
        &format!("docker://{}", reg.image_ref("arch:foreign")),
        &format!("oci:{}:image", layout.display()),
        &kiln_testkit::CopyOptions {
            src: kiln_testkit::Access::insecure(),
            preserve_digests: true,
            ..Default::default()
        },
    )
    .unwrap();
    let img = Flattened::from_layout_for(&layout, "image", &foreign).unwrap();
    let arch = format!("{}\n", foreign.architecture);
    assert_eq!(img.text("/ARCH").as_deref(), Some(arch.as_str()));
    assert_eq!(img.text("/note.txt").as_deref(), Some("built by kiln\n"));
    assert!(
        img.get("/bin/busybox").is_none(),
        "the host's base was used"
    );
}

#[test]
fn docker_hub_bases_come_from_the_mirrors_in_order() {
    // Docker Hub is out of reach here: a build FROM `busybox` can only
    // succeed through a mirror, and the first mirror (nothing listens on
    // its port) must be passed over for the second, as Kaniko does.
    let mirror = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&mirror, "library/busybox:latest")
        .unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dest = Registry::plain().unwrap();
    let ctx = context("busybox");
    let out = Kiln::build(ctx.path())
        .args(["--destination", &dest.image_ref("via-mirror:1")])
        .args(["--insecure", "--insecure-pull"])
        .arg(format!("--insecure-registry={dead}"))
        .arg(format!("--insecure-registry={}", mirror.host()))
        .arg(format!("--registry-mirror={dead}"))
        .arg(format!("--registry-mirror={}", mirror.host()))
        .success();
    assert_built(&dest, "via-mirror:1");
    let (_, config) = pushed_manifest_and_config(&dest, "via-mirror:1");
    assert!(config["rootfs"]["diff_ids"].as_array().unwrap().len() >= 2);
    // The step log names the reference as written, normalised to Docker Hub.
    assert!(
        stderr(&out).contains("docker.io/library/busybox"),
        "{}",
        stderr(&out)
    );
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time (`2026-12-03T08:31:39.7197Z`).
fn unix_seconds(stamp: &str) -> f64 {
    let (date, clock) = stamp.split_once('T').unwrap();
    let mut d = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let mut c = clock
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse::<f64>().unwrap());
    let (h, min, sec) = (c.next().unwrap(), c.next().unwrap(), c.next().unwrap());
    days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec
}

#[test]
fn a_layer_is_uploaded_while_the_steps_after_it_run_and_only_once() {
    let reg = Registry::plain_with_busybox().unwrap();
    // The destination is reached through a proxy that records every request.
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let proxy_started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ctx = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..(3u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(ctx.path().join("payload.bin"), &payload).unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nCOPY payload.bin /payload.bin\nRUN sleep 3 && echo slept > /slept\n",
            reg.host()
        ),
    )
    .unwrap();
    let out = Kiln::build(ctx.path())
        .args(["--destination", &format!("{}/app:1", proxy.host())])
        .args(["--insecure", "--insecure-pull", "--log-timestamp"])
        .args(["--log-format", "text"])
        .success();
    let log = stderr(&out);

    let (manifest, _) = pushed_manifest_and_config(&reg, "app:1");
    let layers = manifest["layers"].as_array().unwrap();
    let copy_layer = layers[layers.len() - 2]["digest"].as_str().unwrap();
    let hex = copy_layer.trim_start_matches("sha256:");
    let requests = proxy.timed_log();
    let puts: Vec<_> = requests
        .iter()
        .filter(|(_, r)| r.starts_with("PUT /v2/app/blobs/uploads/") && r.contains(hex))
        .collect();
    assert_eq!(puts.len(), 1, "the COPY layer is sent once: {requests:#?}");
    let put_at = proxy_started + puts[0].0.as_secs_f64();
    let run_done = log
        .lines()
        .find(|l| l.contains("step 3: done in "))
        .unwrap_or_else(|| panic!("no end line for the RUN:\n{log}"));
    let run_done_at = unix_seconds(run_done.split(' ').next().unwrap());
    assert!(
        put_at + 1.0 < run_done_at,
        "the COPY layer was in the registry at {put_at}, the RUN ended at {run_done_at}:\n{log}"
    );
    // The push at the end counts it (with the base layer and the RUN layer
    // and the config) as uploaded.
    assert!(
        log.lines()
            .any(|l| l.contains("pushed ") && l.contains(": 4 uploaded")),
        "{log}"
    );
    let img = Flattened::from_registry(&reg, "app:1").unwrap();
    assert_eq!(img.get("/payload.bin").unwrap().size, payload.len() as u64);
    assert_eq!(img.text("/slept").as_deref(), Some("slept\n"));
}

/// Two tags in one repository get each layer uploaded once: the registry
/// rewrites a blob's link on every upload of it, and a second upload
/// finishing while the first tag's manifest is put made the registry refuse
/// that manifest (`MANIFEST_BLOB_UNKNOWN`).
#[test]
fn two_tags_in_one_repository_upload_each_layer_once() {
    let reg = Registry::plain_with_busybox().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let ctx = context(&format!("{}/busybox:latest", reg.host()));
    let dockerfile = ctx.path().join("Dockerfile");
    let mut text = fs::read_to_string(&dockerfile).unwrap();
    text.push_str("RUN echo built > /built.txt\n");
    fs::write(&dockerfile, text).unwrap();
    Kiln::build(ctx.path())
        .args(["--destination", &format!("{}/app:1", proxy.host())])
        .args(["--destination", &format!("{}/app:2", proxy.host())])
        .args(["--insecure", "--insecure-pull"])
        .success();

    let (_dir, one) = build_common::pushed_dir(&reg, "app:1");
    let (_dir, two) = build_common::pushed_dir(&reg, "app:2");
    assert_eq!(one, two);
    let layers = one["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{one}");
    let log = proxy.log();
    for blob in layers.iter().chain([&one["config"]]) {
        let hex = blob["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let commits = log
            .iter()
            .filter(|l| l.starts_with("PUT /v2/app/blobs/uploads/") && l.contains(hex))
            .count();
        assert_eq!(commits, 1, "{hex}: {log:#?}");
    }
    assert_built(&reg, "app:2");
}

#[test]
fn a_big_run_layer_is_uploaded_from_its_writer_once() {
    let reg = Registry::plain_with_busybox().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    // 80 MiB that do not compress: past the 64 MiB up to which a blob goes
    // in one PUT, so the layer is sent in 32 MiB chunks.
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nRUN dd if=/dev/urandom of=/big bs=1M count=80 2>/dev/null\n",
            reg.host()
        ),
    )
    .unwrap();
    let out = Kiln::build(ctx.path())
        .args(["--destination", &format!("{}/app:1", proxy.host())])
        .args(["--insecure", "--insecure-pull"])
        .args(["--verbosity", "debug", "--log-format", "text"])
        .success();
    let kiln_log = stderr(&out);

    let (dir, manifest) = build_common::pushed_dir(&reg, "app:1");
    let layer = manifest["layers"].as_array().unwrap().last().unwrap();
    let stored = fs::read(build_common::blob_path(&dir, layer)).unwrap();
    let digest = layer["digest"].as_str().unwrap();
    assert_eq!(kiln_oci::Digest::sha256_of(&stored).to_string(), digest);
    assert_eq!(layer["size"].as_u64(), Some(stored.len() as u64));
    assert!(stored.len() > 80 << 20, "{}", stored.len());

    let log = proxy.log();
    let hex = digest.trim_start_matches("sha256:");
    // Where in the log the requests `what` picks are.
    let at = |what: &dyn Fn(&str) -> bool| -> Vec<usize> {
        let picked = log.iter().enumerate().filter(|(_, l)| what(l));
        picked.map(|(i, _)| i).collect()
    };
    let patches = at(&|l| l.starts_with("PATCH /v2/app/blobs/uploads/") && l.ends_with("-> 202"));
    let head = at(&|l| l.starts_with("HEAD /v2/app/blobs/") && l.contains(hex));
    let puts = at(&|l| l.starts_with("PUT /v2/app/blobs/uploads/") && l.contains(hex));
    // Sent once, every byte once, in at most three PATCHes (the 32 MiB
    // chunks, or fewer when chunks written meanwhile went together): the
    // upload that began with the writer is the one the push used, not
    // started again for the finished layer.
    assert!((1..=3).contains(&patches.len()), "{log:#?}");
    assert_eq!((puts.len(), head.len()), (1, 1), "{log:#?}");
    assert_eq!(
        proxy.request_bytes(Some("PATCH"), "/v2/app/blobs/uploads/"),
        stored.len() as u64
    );
    // Whether the session opened before the writer finished is a race
    // between two threads (the kiln-oci tests settle it deterministically);
    // either way the upload came from the writer's watch.
    let streamed = kiln_log.contains("uploading a blob while it is written");
    assert!(
        streamed || kiln_log.contains("blob complete before its upload began"),
        "{kiln_log}"
    );
    let early = patches.iter().filter(|&&p| p < head[0]).count();
    eprintln!(
        "{} requests for the {}-byte layer; session opened while it was written: {streamed}; {early} of its {} PATCHes sent before it was complete",
        patches.len() + puts.len() + head.len() + 1,
        stored.len(),
        patches.len()
    );
}
