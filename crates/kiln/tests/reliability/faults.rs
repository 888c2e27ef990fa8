//! Flaky networks: kiln pulls and pushes through a fault-injecting proxy in
//! front of a real registry. Transient faults are retried within
//! `--image-download-retry` / `--push-retry`; persistent ones end the build
//! with one clear line; a manifest is never tagged without its blobs, and
//! corrupted bytes are caught by their digest. Stalls are cut short by the
//! read timeout (`KILN_REGISTRY_READ_TIMEOUT`, 1 s here) and retried the
//! same way.

use std::fs;
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kiln_testkit::{Fault, FaultProxy, Flattened, Registry};

const TIMEOUT: Duration = Duration::from_secs(300);
/// A read timeout short enough that a stall costs a second, not a minute.
const SHORT_READ_TIMEOUT: (&str, &str) = ("KILN_REGISTRY_READ_TIMEOUT", "1");

struct Setup {
    reg: Registry,
    proxy: FaultProxy,
    ctx: tempfile::TempDir,
}

fn setup() -> Setup {
    let reg = Registry::plain_with_busybox().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("file.txt"), "through the proxy\n").unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nCOPY file.txt /file.txt\nRUN echo ran > /ran\n",
            proxy.host()
        ),
    )
    .unwrap();
    Setup { reg, proxy, ctx }
}

impl Setup {
    fn build(&self, tag: &str, extra: &[&str]) -> Output {
        self.build_with_env(tag, extra, &[])
    }

    fn build_with_env(&self, tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let kiln_dir = tempfile::tempdir().unwrap();
        Command::cargo_bin("kiln")
            .unwrap()
            .envs(env.iter().copied())
            .args(["build", "--context"])
            .arg(self.ctx.path())
            .args(["--destination", &format!("{}/{tag}", self.proxy.host())])
            .args(["--insecure", "--insecure-pull", "--isolation", "chroot"])
            .arg("--kiln-dir")
            .arg(kiln_dir.path())
            .args(extra)
            .timeout(TIMEOUT)
            .output()
            .unwrap()
    }

    /// The image as the registry itself (not the proxy) has it.
    fn check_image(&self, tag: &str) {
        let img = Flattened::from_registry(&self.reg, tag).unwrap();
        assert_eq!(
            img.text("/file.txt").as_deref(),
            Some("through the proxy\n")
        );
        assert_eq!(img.text("/ran").as_deref(), Some("ran\n"));
        assert!(img.get("/bin/busybox").is_some());
    }

    fn tag_missing(&self, tag: &str) -> bool {
        Flattened::from_registry(&self.reg, tag).is_err()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("error"))
        .map(str::to_string)
        .collect()
}

#[test]
fn transient_pull_faults_are_retried() {
    let s = setup();
    s.proxy.inject(
        Some("GET"),
        "/blobs/sha256:",
        Fault::Status(503, Some(1)),
        1,
    );
    s.proxy
        .inject(Some("GET"), "/blobs/sha256:", Fault::DropMidBody, 1);
    s.proxy
        .inject(Some("GET"), "/blobs/sha256:", Fault::Corrupt, 1);
    s.proxy
        .inject(Some("GET"), "/blobs/sha256:", Fault::Truncate, 1);
    s.proxy
        .inject(Some("GET"), "/manifests/", Fault::Status(429, Some(1)), 1);
    s.proxy.inject(
        Some("GET"),
        "/manifests/",
        Fault::Delay(Duration::from_millis(500)),
        1,
    );
    let out = s.build("pulled:1", &["--image-download-retry=5"]);
    assert!(out.status.success(), "{}\n{:?}", text(&out), s.proxy.log());
    assert_eq!(s.proxy.faults_applied(), 6, "{:?}", s.proxy.log());
    s.check_image("pulled:1");
}

#[test]
fn transient_push_faults_are_retried() {
    let s = setup();
    s.proxy
        .inject(Some("POST"), "/blobs/uploads/", Fault::Status(500, None), 1);
    s.proxy.inject(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::Status(503, Some(1)),
        2,
    );
    s.proxy
        .inject(Some("PUT"), "/manifests/", Fault::Status(429, Some(1)), 1);
    let out = s.build("pushed:1", &["--push-retry=5"]);
    assert!(out.status.success(), "{}\n{:?}", text(&out), s.proxy.log());
    assert_eq!(s.proxy.faults_applied(), 4, "{:?}", s.proxy.log());
    s.check_image("pushed:1");
}

#[test]
fn persistent_pull_faults_end_the_build_with_one_line() {
    let s = setup();
    s.proxy.inject(
        Some("GET"),
        "/blobs/sha256:",
        Fault::Status(503, None),
        1000,
    );
    let out = s.build("never:1", &["--image-download-retry=2"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one error line expected:\n{all}");
    assert!(errors[0].contains("503"), "status missing: {all}");
    // Bounded: one try plus two retries per blob, not an endless loop.
    assert!(s.proxy.faults_applied() <= 3 * 4, "{:?}", s.proxy.log());
    assert!(s.tag_missing("never:1"));
}

#[test]
fn a_manifest_is_never_tagged_without_its_blobs() {
    let s = setup();
    s.proxy.inject(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::Status(500, None),
        1000,
    );
    let out = s.build("partial:1", &["--push-retry=2"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert_eq!(
        error_lines(&out).len(),
        1,
        "one error line expected:\n{all}"
    );
    let log = s.proxy.log();
    assert!(
        !log.iter()
            .any(|l| l.starts_with("PUT") && l.contains("/manifests/")),
        "a manifest was sent although its blobs failed: {log:?}"
    );
    assert!(s.tag_missing("partial:1"));
}

#[test]
fn corrupted_bytes_that_persist_are_caught_by_digest() {
    let s = setup();
    s.proxy
        .inject(Some("GET"), "/blobs/sha256:", Fault::Corrupt, 1000);
    let out = s.build("corrupt:1", &["--image-download-retry=1"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one error line expected:\n{all}");
    assert!(errors[0].contains("sha256:"), "digest missing: {all}");
    assert!(s.tag_missing("corrupt:1"));

    // Truncated bodies that look complete are caught the same way.
    let s = setup();
    s.proxy
        .inject(Some("GET"), "/blobs/sha256:", Fault::Truncate, 1000);
    let out = s.build("short:1", &["--image-download-retry=1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(error_lines(&out)[0].contains("sha256:"), "{}", text(&out));
    assert!(s.tag_missing("short:1"));
}

#[test]
fn stalled_responses_time_out_and_are_retried() {
    let s = setup();
    // Each stall would hold its request for 5 s; the 1 s read timeout ends
    // it and the retry goes through. Heads that stall, a body that stalls
    // halfway, and answers to uploads that stall after the registry took
    // the bytes.
    let stall = Duration::from_secs(5);
    s.proxy
        .inject(Some("GET"), "/manifests/", Fault::Delay(stall), 1);
    s.proxy
        .inject(Some("GET"), "/blobs/sha256:", Fault::StallMidBody(stall), 1);
    s.proxy
        .inject(Some("PUT"), "/blobs/uploads/", Fault::Delay(stall), 1);
    s.proxy
        .inject(Some("PUT"), "/manifests/", Fault::Delay(stall), 1);
    let started = Instant::now();
    let out = s.build_with_env(
        "stalled:1",
        &["--image-download-retry=3", "--push-retry=3"],
        &[SHORT_READ_TIMEOUT],
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{}\n{:?}", text(&out), s.proxy.log());
    assert_eq!(s.proxy.faults_applied(), 4, "{:?}", s.proxy.log());
    s.check_image("stalled:1");
    assert!(took < 4 * stall, "the stalls were waited out: {took:?}");
    eprintln!("build with four stalls: {took:?}");
}

#[test]
fn a_registry_that_stops_answering_ends_the_build_with_one_timed_out_line() {
    let s = setup();
    s.proxy.inject(
        Some("GET"),
        "/busybox/manifests/",
        Fault::Delay(Duration::from_secs(60)),
        1000,
    );
    let started = Instant::now();
    let out = s.build_with_env(
        "stalled:2",
        &["--image-download-retry=2"],
        &[SHORT_READ_TIMEOUT],
    );
    let took = started.elapsed();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one error line expected:\n{all}");
    assert!(
        errors[0].contains("timed out") && errors[0].contains(&s.proxy.host()),
        "host or timeout missing: {all}"
    );
    // One try and two retries of 1 s each, not the 60 s stall.
    assert_eq!(s.proxy.faults_applied(), 3, "{:?}", s.proxy.log());
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(s.tag_missing("stalled:2"));
    eprintln!("stopped registry, failure after {took:?}: {}", errors[0]);
}

#[test]
fn dropped_upload_connections_and_retry_after_on_put_are_retried() {
    let s = setup();
    // The connection dies halfway through one blob's PUT before the
    // registry sees any of it; the registry gets half of another's and the
    // client never hears back; the manifest PUT is refused with a 503 that
    // asks for 2 s.
    s.proxy
        .inject(Some("PUT"), "/blobs/uploads/", Fault::DropRequestMidBody, 1);
    s.proxy.inject(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::RelayHalfRequestBody,
        1,
    );
    s.proxy
        .inject(Some("PUT"), "/manifests/", Fault::Status(503, Some(2)), 1);
    let out = s.build("dropped:1", &["--push-retry=3"]);
    assert!(out.status.success(), "{}\n{:?}", text(&out), s.proxy.log());
    assert_eq!(s.proxy.faults_applied(), 3, "{:?}", s.proxy.log());
    s.check_image("dropped:1");

    // The manifest went again after the 2 s asked for, not after the
    // 0.5 s first backoff.
    let log = s.proxy.timed_log();
    let manifest_put = |end: &str| {
        log.iter()
            .find(|(_, l)| l.starts_with("PUT ") && l.contains("/manifests/") && l.ends_with(end))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("no manifest PUT ending {end:?}: {log:?}"))
    };
    let waited = manifest_put("-> 201") - manifest_put("injected 503");
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
}

#[test]
fn persistent_upload_drops_end_the_build_with_one_line_and_no_manifest() {
    let s = setup();
    s.proxy.inject(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::DropRequestMidBody,
        1000,
    );
    let out = s.build("dropped:2", &["--push-retry=2"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "one error line expected:\n{all}");
    assert!(errors[0].contains(&s.proxy.host()), "host missing: {all}");
    // Upload URLs carry signed session state; errors show them without it.
    assert!(!errors[0].contains("_state"), "{all}");
    eprintln!("persistent upload drops: {}", errors[0]);
    // Bounded: at most one try and two retries per blob.
    assert!(s.proxy.faults_applied() <= 3 * 4, "{:?}", s.proxy.log());
    let log = s.proxy.log();
    assert!(
        !log.iter()
            .any(|l| l.starts_with("PUT") && l.contains("/manifests/")),
        "a manifest was sent although its blobs failed: {log:?}"
    );
    assert!(s.tag_missing("dropped:2"));
}

/// The base layer is unpacked as it downloads (a RUN needs the root before
/// anything else does). A first transfer with a changed byte and a second
/// cut off mid-body hand the unpack bytes the digest check later rejects;
/// the build must still end with the verified layer, unpacked again.
#[test]
fn a_base_layer_unpacked_while_it_downloads_survives_retried_transfers() {
    let s = setup();
    fs::write(
        s.ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nRUN echo ran > /ran\nCOPY file.txt /file.txt\n",
            s.proxy.host()
        ),
    )
    .unwrap();
    // The first blob GET is the config; the next ones are the layer's.
    s.proxy
        .inject_after(Some("GET"), "/blobs/sha256:", Fault::Corrupt, 1, 1);
    s.proxy
        .inject_after(Some("GET"), "/blobs/sha256:", Fault::DropMidBody, 0, 1);
    let out = s.build("streamed:1", &["--image-download-retry=5"]);
    assert!(out.status.success(), "{}\n{:?}", text(&out), s.proxy.log());
    assert_eq!(s.proxy.faults_applied(), 2, "{:?}", s.proxy.log());
    s.check_image("streamed:1");
}
