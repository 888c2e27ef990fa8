//! Cache entries as the registry holds them: expiry and re-push, builds that
//! must not push, broken entries, cache repositories that refuse or cannot
//! be reached, and a fully cached rebuild that downloads no layer. Each
//! build runs on a fresh working directory, as on a fresh CI runner, and
//! the entries are read back from the registry itself.

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Fault, FaultProxy, Flattened, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

/// Limit for one `kiln build`.
const TIMEOUT: Duration = Duration::from_secs(300);

const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Dockerfile lines: 2 WORKDIR, 3-5 RUN.
const DOCKERFILE: &str = "\
FROM BASE/busybox:latest
WORKDIR /app
RUN echo one > /app/one
RUN echo two > /app/two
RUN echo three > /app/three
";

/// Every cacheable step of [`DOCKERFILE`].
const ALL_STEPS: [usize; 4] = [2, 3, 4, 5];

struct Fixture {
    reg: Registry,
    ctx: tempfile::TempDir,
}

struct Run {
    ok: bool,
    log: String,
    /// Dockerfile lines whose step came from the cache.
    cached: BTreeSet<usize>,
}

impl Fixture {
    /// A registry with busybox, and a context whose Dockerfile starts
    /// `FROM <registry>/busybox`.
    fn new() -> Fixture {
        let reg = Registry::plain().unwrap();
        BaseImage::busybox()
            .unwrap()
            .push_to(&reg, "busybox:latest")
            .unwrap();
        let f = Fixture {
            reg,
            ctx: tempfile::tempdir().unwrap(),
        };
        f.base_from(&f.reg.host());
        f
    }

    /// Makes the Dockerfile pull busybox from `host`.
    fn base_from(&self, host: &str) {
        fs::write(
            self.ctx.path().join("Dockerfile"),
            DOCKERFILE.replace("BASE", host),
        )
        .unwrap();
    }

    /// Builds to `destinations` with the cache on in `cache_repo`.
    fn build_to(&self, destinations: &[String], cache_repo: &str, extra: &[&str]) -> Run {
        let work = tempfile::tempdir().unwrap();
        let mut cmd = Command::cargo_bin("kiln").unwrap();
        cmd.args(["build", "--context"]).arg(self.ctx.path());
        for d in destinations {
            cmd.args(["--destination", d]);
        }
        let out = cmd
            .args(["--insecure", "--insecure-pull", "--cache=true"])
            .args(["--cache-repo", cache_repo, "--kiln-dir"])
            .arg(work.path())
            .args(extra)
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Run {
            ok: out.status.success(),
            cached: cached_lines(&log),
            log,
        }
    }

    /// Builds `<registry>/app:1` with the cache in `<registry>/cache`; the
    /// build must succeed.
    fn build(&self, extra: &[&str]) -> Run {
        let run = self.build_to(
            &[self.reg.image_ref("app:1")],
            &self.reg.image_ref("cache"),
            extra,
        );
        assert!(run.ok, "kiln failed:\n{}", run.log);
        run
    }

    /// The image is what the Dockerfile says, whichever steps came from
    /// the cache (every layer's diff_id is checked while reading it).
    fn check_image(&self, name: &str) {
        let img = Flattened::from_registry(&self.reg, name).unwrap();
        assert_eq!(img.text("/app/one").as_deref(), Some("one\n"));
        assert_eq!(img.text("/app/two").as_deref(), Some("two\n"));
        assert_eq!(img.text("/app/three").as_deref(), Some("three\n"));
        assert!(img.get("/bin/busybox").is_some());
    }
}

/// Dockerfile lines reported as `step N: CACHED`.
fn cached_lines(log: &str) -> BTreeSet<usize> {
    log.lines()
        .filter(|l| l.contains("CACHED"))
        .filter_map(|l| {
            let rest = &l[l.find("step ")? + 5..];
            rest.split(':').next()?.trim().parse().ok()
        })
        .collect()
}

/// GET `path` (under `/v2/`) on the registry: status and body.
fn get(reg: &Registry, path: &str) -> (u16, Vec<u8>) {
    let mut resp = reg
        .http_agent()
        .unwrap()
        .get(format!("{}/v2/{path}", reg.url()))
        .header("Accept", MANIFEST_ACCEPT)
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_vec().unwrap())
}

/// The tags of `repo`; none when the repository does not exist.
fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let (status, body) = get(reg, &format!("{repo}/tags/list"));
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["tags"]
        .as_array()
        .map(|t| t.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// One cache entry as the registry serves it.
#[derive(Debug, Clone)]
struct Entry {
    tag: String,
    created: String,
    manifest: serde_json::Value,
}

impl Entry {
    fn layer_digest(&self) -> String {
        self.manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The step entries of cache repository `repo` (layer listings left out),
/// by the step's history text.
fn entries(reg: &Registry, repo: &str) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for tag in tags(reg, repo) {
        let (status, body) = get(reg, &format!("{repo}/manifests/{tag}"));
        assert_eq!(status, 200);
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let a = &manifest["annotations"];
        let created_by = a["dev.kiln.cache.created-by"].as_str().unwrap().to_string();
        if created_by.starts_with("listing of ") {
            continue;
        }
        let created = a["org.opencontainers.image.created"]
            .as_str()
            .unwrap()
            .to_string();
        out.insert(
            created_by,
            Entry {
                tag,
                created,
                manifest,
            },
        );
    }
    out
}

/// The entry of the RUN step whose command ends with `command`.
fn run_entry<'a>(entries: &'a BTreeMap<String, Entry>, command: &str) -> &'a Entry {
    entries
        .iter()
        .find(|(by, _)| by.starts_with("RUN ") && by.ends_with(command))
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no entry for {command}: {:?}", entries.keys()))
}

const COMMANDS: [&str; 3] = [
    "echo one > /app/one",
    "echo two > /app/two",
    "echo three > /app/three",
];

#[test]
fn an_expired_entry_misses_and_is_pushed_again_with_a_new_creation_time() {
    let f = Fixture::new();
    assert!(f.build(&[]).cached.is_empty(), "a cold cache hits nothing");
    let before = entries(&f.reg, "cache");
    // Creation times have second precision.
    std::thread::sleep(Duration::from_millis(1100));

    let expired = f.build(&["--cache-ttl", "1ns"]);
    assert!(expired.cached.is_empty(), "{}", expired.log);
    let after = entries(&f.reg, "cache");
    for command in COMMANDS {
        let (old, new) = (run_entry(&before, command), run_entry(&after, command));
        assert_eq!(old.tag, new.tag, "{command}: same step, same key");
        // RFC 3339 UTC times of one format order as strings do.
        assert!(
            new.created > old.created,
            "{command}: entry created {} then {}",
            old.created,
            new.created
        );
    }
    f.check_image("app:1");
    // The pushed-again entries serve the next build.
    assert_eq!(f.build(&[]).cached, BTreeSet::from(ALL_STEPS));
}

#[test]
fn no_push_cache_builds_without_writing_the_cache_and_the_next_build_misses() {
    let f = Fixture::new();
    let run = f.build(&["--no-push-cache"]);
    assert!(run.cached.is_empty());
    f.check_image("app:1");
    assert!(tags(&f.reg, "cache").is_empty());
    let repo_dir = f
        .reg
        .storage_dir()
        .join("docker/registry/v2/repositories/cache");
    assert!(
        !repo_dir.exists(),
        "something was written to the cache repository"
    );

    let run = f.build(&[]);
    assert!(run.cached.is_empty(), "nothing was cached: {}", run.log);
    assert!(!entries(&f.reg, "cache").is_empty());
    // Pushing normally, the same steps hit: the misses above were the
    // missing entries, not changed keys.
    assert_eq!(f.build(&[]).cached, BTreeSet::from(ALL_STEPS));
}

#[test]
fn broken_entries_are_warnings_and_misses() {
    let f = Fixture::new();
    f.build(&[]);
    let before = entries(&f.reg, "cache");
    let agent = f.reg.http_agent().unwrap();

    // Step 3's entry: its layer blob is deleted from the cache repository.
    let one = run_entry(&before, COMMANDS[0]).clone();
    let url = format!("{}/v2/cache/blobs/{}", f.reg.url(), one.layer_digest());
    let status = agent.delete(&url).call().unwrap().status().as_u16();
    assert_eq!(status, 202, "DELETE {url}");
    let status = agent.head(&url).call().unwrap().status().as_u16();
    assert_eq!(status, 404, "the blob is gone from the cache repository");

    // Step 4's entry: its layer descriptor names a blob that exists but is
    // not the layer (the entry's own config blob).
    let two = run_entry(&before, COMMANDS[1]).clone();
    let mut broken = two.manifest.clone();
    broken["layers"][0]["digest"] = two.manifest["config"]["digest"].clone();
    let url = format!("{}/v2/cache/manifests/{}", f.reg.url(), two.tag);
    let status = agent
        .put(&url)
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send(serde_json::to_vec(&broken).unwrap())
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 201, "PUT {url}");

    let run = f.build(&[]);
    // Only the intact entries hit; the build still succeeds.
    assert_eq!(run.cached, BTreeSet::from([2, 5]), "{}", run.log);
    for broken in [&one.tag, &two.tag] {
        assert!(
            run.log
                .lines()
                .any(|l| l.contains("WARN") && l.contains(broken.as_str())),
            "no warning about entry {broken}:\n{}",
            run.log
        );
    }
    f.check_image("app:1");
    // The rebuilt steps stored good entries again.
    assert_eq!(f.build(&[]).cached, BTreeSet::from(ALL_STEPS));
    f.check_image("app:1");
}

#[test]
fn a_cache_repository_that_refuses_pushes_only_warns() {
    let f = Fixture::new();
    let proxy = FaultProxy::start(&f.reg.host()).unwrap();
    let cache = format!("{}/cache", proxy.host());
    let dest = [f.reg.image_ref("app:1")];

    // Uploads to the cache repository are denied.
    proxy.inject(Some("POST"), "/v2/cache/", Fault::Status(403, None), 10_000);
    let run = f.build_to(&dest, &cache, &[]);
    assert!(run.ok, "kiln failed:\n{}", run.log);
    assert!(proxy.faults_applied() > 0, "{:?}", proxy.log());
    assert!(
        run.log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("could not store cache entry")),
        "{}",
        run.log
    );
    f.check_image("app:1");
    assert!(tags(&f.reg, "cache").is_empty());

    // Blobs are accepted, but every entry manifest fails with a server error.
    let applied = proxy.faults_applied();
    let proxy2 = FaultProxy::start(&f.reg.host()).unwrap();
    let cache2 = format!("{}/cache", proxy2.host());
    proxy2.inject(
        Some("PUT"),
        "/v2/cache/manifests/",
        Fault::Status(500, None),
        10_000,
    );
    let run = f.build_to(&dest, &cache2, &[]);
    assert!(run.ok, "kiln failed:\n{}", run.log);
    assert!(proxy2.faults_applied() > 0, "{:?}", proxy2.log());
    assert_eq!(proxy.faults_applied(), applied);
    assert!(
        run.log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("could not store cache entry")),
        "{}",
        run.log
    );
    f.check_image("app:1");
    assert!(tags(&f.reg, "cache").is_empty());
}

#[test]
fn an_unreachable_cache_repository_only_warns() {
    let f = Fixture::new();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = f.build_to(
        &[f.reg.image_ref("app:1")],
        &format!("127.0.0.1:{port}/cache"),
        &[],
    );
    assert!(run.ok, "kiln failed:\n{}", run.log);
    assert!(run.cached.is_empty());
    assert!(
        run.log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("cache lookup failed")),
        "{}",
        run.log
    );
    f.check_image("app:1");
}

/// `pushed DEST in ...: U uploaded (...), M mounted, E already there`.
fn push_report(log: &str, destination: &str) -> (usize, usize, usize) {
    let line = log
        .lines()
        .find(|l| l.contains(&format!("pushed {destination} in ")))
        .unwrap_or_else(|| panic!("no push report for {destination}:\n{log}"));
    let counts = &line[line.find(": ").unwrap() + 2..];
    let number_before = |word: &str| -> usize {
        let end = counts.find(word).unwrap();
        counts[..end]
            .trim_end()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        number_before(" uploaded"),
        number_before(" mounted"),
        number_before(" already there"),
    )
}

#[test]
fn a_fully_cached_rebuild_downloads_and_uploads_no_layer() {
    // Every request of both builds, base pull included, goes through the
    // proxy, whose log shows each one.
    let f = Fixture::new();
    let proxy = FaultProxy::start(&f.reg.host()).unwrap();
    f.base_from(&proxy.host());
    let cache = format!("{}/cache", proxy.host());
    let app = format!("{}/app:1", proxy.host());
    let other = format!("{}/other:1", proxy.host());

    let cold = f.build_to(std::slice::from_ref(&app), &cache, &[]);
    assert!(cold.ok, "kiln failed:\n{}", cold.log);
    let cold_requests = proxy.log();

    let warm = f.build_to(&[other.clone(), app.clone()], &cache, &[]);
    assert!(warm.ok, "kiln failed:\n{}", warm.log);
    assert_eq!(warm.cached, BTreeSet::from(ALL_STEPS), "{}", warm.log);
    let warm_requests: Vec<String> = proxy.log()[cold_requests.len()..].to_vec();

    f.check_image("other:1");
    let img = Flattened::from_registry(&f.reg, "other:1").unwrap();
    let layer_digests: Vec<String> = img.manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let base = &layer_digests[0];
    // The cold build did download the base (its RUN steps needed the
    // files), so the log would show a download.
    assert!(
        cold_requests
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains(&format!("/blobs/{base}"))),
        "{cold_requests:#?}"
    );
    for d in &layer_digests {
        let touching: Vec<&String> = warm_requests
            .iter()
            .filter(|r| {
                (r.starts_with("GET ") || r.starts_with("PUT ") || r.starts_with("PATCH "))
                    && r.contains(d.as_str())
            })
            .collect();
        assert!(
            touching.is_empty(),
            "layer {d} was transferred: {touching:#?}"
        );
    }

    // The new repository got every layer by mount and only its config by
    // upload; the old one already had every layer.
    let n = layer_digests.len();
    assert_eq!(push_report(&warm.log, &other), (1, n, 0), "{}", warm.log);
    let (uploaded, mounted, existing) = push_report(&warm.log, &app);
    assert!(
        uploaded <= 1 && mounted == 0 && existing >= n,
        "{}",
        warm.log
    );
}
