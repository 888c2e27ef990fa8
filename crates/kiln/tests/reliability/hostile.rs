//! Hostile inputs end to end: base images whose layers try to escape,
//! registries that serve bytes not matching their digests, build contexts
//! that try to reach outside themselves, and endpoints that are not
//! registries. Each must fail clearly (or be contained) and touch nothing
//! outside the build's own directories; nothing half-built is pushed.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use flate2::{write::GzEncoder, Compression};
use kiln_testkit::layout::{sha256_digest, Layer, LayerBuilder};
use kiln_testkit::{add_busybox_rootfs, BaseImage, Flattened, Registry};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(300);

/// A sandbox: `kiln/` is the kiln dir, `ctx/` the context, `outside/` a
/// place no build may write to.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(dockerfile: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["kiln", "ctx", "outside"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("ctx/Dockerfile"), dockerfile).unwrap();
        fs::write(dir.path().join("outside/secret"), "outside the context\n").unwrap();
        Sandbox { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn kiln(&self, dest: &str) -> Output {
        Command::cargo_bin("kiln")
            .unwrap()
            .args(["build", "--context"])
            .arg(self.path("ctx"))
            .args(["--destination", dest, "--insecure", "--insecure-pull"])
            .args(["--isolation", "chroot", "--kiln-dir"])
            .arg(self.path("kiln"))
            .timeout(TIMEOUT)
            .output()
            .unwrap()
    }

    /// Nothing but the secret in `outside/`, no build dir left in `kiln/`.
    fn assert_untouched(&self) {
        let names = |p: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&self.path("outside")), ["secret"]);
        assert_eq!(
            fs::read_to_string(self.path("outside/secret")).unwrap(),
            "outside the context\n"
        );
        assert_eq!(names(self.dir.path()), ["ctx", "kiln", "outside"]);
        let leftovers: Vec<String> = names(&self.path("kiln"))
            .into_iter()
            .filter(|n| n.starts_with("build-"))
            .collect();
        assert_eq!(leftovers, Vec::<String>::new(), "private dir left behind");
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines of stderr that report an error.
fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .map(str::to_string)
        .collect()
}

/// True when the registry has a manifest for `repo:tag`.
fn tag_exists(reg: &Registry, repo: &str, tag: &str) -> bool {
    let url = format!("{}/v2/{repo}/manifests/{tag}", reg.url());
    match reg
        .http_agent()
        .unwrap()
        .head(&url)
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .call()
    {
        Ok(resp) => resp.status() == 200,
        Err(_) => false,
    }
}

/// One raw tar entry: name, type, link name, content.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// A gzip layer from raw tar bytes (no validation of names at all).
fn raw_layer(entries: &[RawEntry<'_>]) -> Layer {
    let mut tar = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(*kind);
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&tar).unwrap();
    Layer {
        gzip: gz.finish().unwrap(),
        diff_id: sha256_digest(&tar),
    }
}

/// Pushes busybox plus `hostile` on top as `evil:latest`; returns the
/// hostile layer's blob digest.
fn push_hostile(reg: &Registry, hostile: Layer) -> String {
    let mut b = LayerBuilder::new();
    add_busybox_rootfs(&mut b).unwrap();
    let digest = sha256_digest(&hostile.gzip);
    let runtime = json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]});
    BaseImage::from_layers(vec![b.finish().unwrap(), hostile], runtime)
        .unwrap()
        .push_to(reg, "evil:latest")
        .unwrap();
    digest
}

#[test]
fn base_layer_with_parent_components_fails_naming_entry_and_layer() {
    let reg = Registry::plain().unwrap();
    let sb = Sandbox::new("");
    // Deep enough to reach the sandbox's `outside/` from any rootfs in kiln/.
    let name = b"../../../../../../../../outside/pwned";
    let digest = push_hostile(
        &reg,
        raw_layer(&[(name, tar::EntryType::Regular, b"", b"pwned\n")]),
    );
    fs::write(
        sb.path("ctx/Dockerfile"),
        format!("FROM {}/evil:latest\nRUN true\n", reg.host()),
    )
    .unwrap();
    let out = sb.kiln(&reg.image_ref("out:1"));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one error line expected:\n{all}");
    assert!(errors[0].contains(&digest), "layer digest missing: {all}");
    assert!(errors[0].contains("outside/pwned"), "entry missing: {all}");
    sb.assert_untouched();
    assert!(!tag_exists(&reg, "out", "1"));
}

#[test]
fn base_layer_writing_through_symlinks_and_hard_links_is_contained() {
    let reg = Registry::plain().unwrap();
    let sb = Sandbox::new("");
    let outside = sb.path("outside");
    let target = outside.to_string_lossy().into_owned();
    let secret = sb.path("outside/secret").to_string_lossy().into_owned();
    push_hostile(
        &reg,
        raw_layer(&[
            // A symlink to the host dir, then a write through it.
            (b"escape", tar::EntryType::Symlink, target.as_bytes(), b""),
            (b"escape/pwned", tar::EntryType::Regular, b"", b"pwned\n"),
            // A hard link to a host file, then a write to the link.
            (b"hard", tar::EntryType::Link, secret.as_bytes(), b""),
            // A whiteout that names a host path.
            (b"escape/.wh.secret", tar::EntryType::Regular, b"", b""),
        ]),
    );
    fs::write(
        sb.path("ctx/Dockerfile"),
        format!(
            "FROM {}/evil:latest\nRUN echo still-here > /marker\n",
            reg.host()
        ),
    )
    .unwrap();
    let out = sb.kiln(&reg.image_ref("out:1"));
    // Refused or contained: either way nothing outside changed.
    sb.assert_untouched();
    if out.status.success() {
        let img = Flattened::from_registry(&reg, "out:1").unwrap();
        assert_eq!(img.text("/marker").as_deref(), Some("still-here\n"));
        assert_ne!(img.text("/hard").as_deref(), Some("outside the context\n"));
    } else {
        assert!(!tag_exists(&reg, "out", "1"));
        assert_eq!(error_lines(&out).len(), 1, "{}", text(&out));
    }
}

/// The registry's stored file for `digest`.
fn blob_data(reg: &Registry, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    reg.storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn manifest_of(reg: &Registry, reference: &str) -> (String, serde_json::Value) {
    let url = format!("{}/v2/busybox/manifests/{reference}", reg.url());
    let mut resp = reg
        .http_agent()
        .unwrap()
        .get(&url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .unwrap();
    let body = resp.body_mut().read_to_vec().unwrap();
    (sha256_digest(&body), serde_json::from_slice(&body).unwrap())
}

fn flip_a_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(path, bytes).unwrap();
}

#[test]
fn tampered_layer_blob_fails_with_its_digest_and_nothing_is_pushed() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let (_, manifest) = manifest_of(&reg, "latest");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    flip_a_byte(&blob_data(&reg, &layer));
    let sb = Sandbox::new(&format!(
        "FROM {}/busybox:latest\nRUN echo x > /x\n",
        reg.host()
    ));
    let out = sb.kiln(&reg.image_ref("out:1"));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one error line expected:\n{all}");
    assert!(errors[0].contains(&layer), "digest missing: {all}");
    assert!(!tag_exists(&reg, "out", "1"), "an image was pushed");
    sb.assert_untouched();
}

#[test]
fn tampered_config_and_manifest_fail_with_their_digest() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let (manifest_digest, manifest) = manifest_of(&reg, "latest");
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();

    // The config first: JSON stays valid when one letter changes.
    let path = blob_data(&reg, &config);
    let original = fs::read(&path).unwrap();
    fs::write(
        &path,
        String::from_utf8(original.clone())
            .unwrap()
            .replacen("amd64", "amd65", 1)
            .replacen("arm64", "arm65", 1),
    )
    .unwrap();
    let sb = Sandbox::new(&format!("FROM {}/busybox:latest\nENV A=1\n", reg.host()));
    let out = sb.kiln(&reg.image_ref("out:1"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&config),
        "config digest missing: {}",
        text(&out)
    );
    assert!(!tag_exists(&reg, "out", "1"));
    fs::write(&path, original).unwrap();

    // Then the manifest, pulled by digest.
    let path = blob_data(&reg, &manifest_digest);
    let body = fs::read_to_string(&path).unwrap();
    fs::write(&path, body.replacen("\"size\"", "\"size\" ", 1)).unwrap();
    let sb = Sandbox::new(&format!(
        "FROM {}/busybox@{manifest_digest}\nENV A=1\n",
        reg.host()
    ));
    let out = sb.kiln(&reg.image_ref("out:2"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&manifest_digest),
        "manifest digest missing: {}",
        text(&out)
    );
    assert!(!tag_exists(&reg, "out", "2"));
    sb.assert_untouched();
}

#[test]
fn the_context_cannot_be_escaped() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let from = format!("FROM {}/busybox:latest\n", reg.host());
    for (i, step) in [
        "COPY ../outside/secret /s",
        "COPY ../* /s/",
        "ADD ../outside /s",
    ]
    .iter()
    .enumerate()
    {
        let sb = Sandbox::new(&format!("{from}{step}\n"));
        let dest = format!("esc:{i}");
        let out = sb.kiln(&reg.image_ref(&dest));
        if out.status.success() {
            // Docker cleans `..` away at the context root: whatever was
            // copied must come from inside the context.
            let img = Flattened::from_registry(&reg, &dest).unwrap();
            let leaked = img
                .entries
                .keys()
                .any(|p| img.text(p).as_deref() == Some("outside the context\n"));
            assert!(!leaked, "{step}: the secret was copied");
        } else {
            assert_eq!(error_lines(&out).len(), 1, "{step}: {}", text(&out));
        }
        sb.assert_untouched();
    }

    // A context symlink pointing outside: the link is copied, never its target.
    let sb = Sandbox::new(&format!("{from}COPY link /link\nCOPY dirlink/ /d/\n"));
    std::os::unix::fs::symlink(sb.path("outside/secret"), sb.path("ctx/link")).unwrap();
    std::os::unix::fs::symlink(sb.path("outside"), sb.path("ctx/dirlink")).unwrap();
    let out = sb.kiln(&reg.image_ref("esc:link"));
    if out.status.success() {
        let img = Flattened::from_registry(&reg, "esc:link").unwrap();
        let leaked = img
            .entries
            .keys()
            .any(|p| img.text(p).as_deref() == Some("outside the context\n"));
        assert!(!leaked, "a symlink's target outside the context was copied");
    } else {
        assert_eq!(error_lines(&out).len(), 1, "{}", text(&out));
    }
    sb.assert_untouched();
}

/// A server on 127.0.0.1 that answers every request with an HTML page.
fn html_server() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        // Bounded: at most 64 connections, then the thread ends.
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<html><body><h1>Welcome to nginx!</h1></body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (host, handle)
}

#[test]
fn endpoints_that_are_not_registries_give_one_clear_line() {
    let (html, _server) = html_server();
    // A port nothing listens on: bind, note it, close.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    for host in [html.as_str(), closed.as_str()] {
        let sb = Sandbox::new(&format!("FROM {host}/busybox:latest\nENV A=1\n"));
        let out = sb.kiln(&format!("{host}/out:1"));
        let all = text(&out);
        assert_eq!(out.status.code(), Some(4), "{host}: {all}");
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{host}: one error line expected:\n{all}");
        assert!(errors[0].contains(host), "{host} not named: {all}");
        assert!(errors[0].len() < 400, "not one short line: {}", errors[0]);
        assert!(!all.contains("<html>"), "the HTML page was dumped: {all}");
        sb.assert_untouched();
    }
}
