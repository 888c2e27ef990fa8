//! The registry cache, end to end: which steps hit and which miss, against
//! the real registry, each build on a fresh working directory as on a fresh
//! CI runner.

use assert_cmd::Command;
use kiln_testkit::{Flattened, Registry};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

struct Fixture {
    reg: Registry,
    ctx: tempfile::TempDir,
}

impl Fixture {
    fn new(dockerfile: &str) -> Fixture {
        let reg = Registry::plain_with_busybox().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let f = Fixture { reg, ctx };
        f.write("Dockerfile", &dockerfile.replace("REGISTRY", &f.reg.host()));
        f
    }

    fn write(&self, name: &str, content: &str) {
        let path = self.ctx.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Builds with the cache on (COPY layers cached too) and returns the
    /// Dockerfile lines whose step came from the cache.
    fn build(&self, extra: &[&str]) -> BTreeSet<usize> {
        cached_lines(&self.build_output(extra))
    }

    /// Builds as [`Fixture::build`] does and returns kiln's output.
    fn build_output(&self, extra: &[&str]) -> String {
        let work = tempfile::tempdir().unwrap();
        let out = Command::cargo_bin("kiln")
            .unwrap()
            .args(["build", "--context"])
            .arg(self.ctx.path())
            .args(["--destination", &format!("{}/app:1", self.reg.host())])
            .args([
                "--insecure",
                "--insecure-pull",
                "--cache=true",
                "--cache-copy-layers=true",
            ])
            .arg("--kiln-dir")
            .arg(work.path())
            .args(extra)
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kiln failed:\n{text}");
        text
    }

    fn layers(&self) -> Vec<String> {
        let img = Flattened::from_registry(&self.reg, "app:1").unwrap();
        img.manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
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

const DOCKERFILE: &str = "\
FROM REGISTRY/busybox:latest
ARG VERSION=1
ARG UNUSED_HERE
WORKDIR /app
COPY deps.txt ./
COPY src/ ./src/
COPY version-$VERSION.txt ./
";

fn fixture() -> Fixture {
    let f = Fixture::new(DOCKERFILE);
    f.write("deps.txt", "left-pad==1\n");
    f.write("src/main.sh", "echo main\n");
    f.write("version-1.txt", "1\n");
    f.write("version-2.txt", "2\n");
    f
}

#[test]
fn unchanged_rebuild_hits_every_step_and_reuses_every_layer() {
    let f = fixture();
    assert!(f.build(&[]).is_empty(), "a cold cache hits nothing");
    let first = f.layers();
    assert_eq!(f.build(&[]), BTreeSet::from([4, 5, 6, 7]));
    assert_eq!(
        f.layers(),
        first,
        "the warm build reuses the same layer digests"
    );
    // A build arg no stage declares changes nothing.
    assert_eq!(
        f.build(&["--build-arg", "NOBODY_DECLARES_ME=x"]),
        BTreeSet::from([4, 5, 6, 7])
    );
    // A declared arg that no step uses changes nothing either.
    assert_eq!(
        f.build(&["--build-arg", "UNUSED_HERE=x"]),
        BTreeSet::from([4, 5, 6, 7])
    );
}

#[test]
fn a_changed_build_arg_misses_from_its_first_use_on() {
    let f = fixture();
    f.build(&[]);
    assert_eq!(
        f.build(&["--build-arg", "VERSION=2"]),
        BTreeSet::from([4, 5, 6])
    );
}

#[test]
fn renaming_a_copied_file_misses_even_with_the_same_content() {
    let f = fixture();
    f.build(&[]);
    fs::rename(
        f.ctx.path().join("src/main.sh"),
        f.ctx.path().join("src/start.sh"),
    )
    .unwrap();
    // The COPY of the renamed file misses, and so does everything after it.
    assert_eq!(f.build(&[]), BTreeSet::from([4, 5]));
    let img = Flattened::from_registry(&f.reg, "app:1").unwrap();
    assert!(img.get("/app/src/start.sh").is_some() && img.get("/app/src/main.sh").is_none());
}

#[test]
fn mtime_only_changes_still_hit() {
    let f = fixture();
    f.build(&[]);
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let file = fs::File::options()
        .write(true)
        .open(f.ctx.path().join("deps.txt"))
        .unwrap();
    file.set_modified(later).unwrap();
    assert_eq!(f.build(&[]), BTreeSet::from([4, 5, 6, 7]));
}

#[test]
fn an_expired_entry_misses_and_is_pushed_again() {
    let f = fixture();
    f.build(&[]);
    assert!(
        f.build(&["--cache-ttl", "1ns"]).is_empty(),
        "every entry is older than 1ns"
    );
    assert_eq!(f.build(&[]), BTreeSet::from([4, 5, 6, 7]));
}

#[test]
fn copy_layers_are_not_cached_unless_asked() {
    let f = fixture();
    let run = |extra: &[&str]| {
        let mut args = vec!["--cache-copy-layers=false"];
        args.extend_from_slice(extra);
        f.build(&args)
    };
    run(&[]);
    // Only WORKDIR goes through the cache when COPY layers are not cached.
    assert_eq!(run(&[]), BTreeSet::from([4]));
}

#[test]
fn a_changed_copy_from_stage_misses() {
    let f = Fixture::new(
        "FROM REGISTRY/busybox:latest AS build\nCOPY input.txt /out/result.txt\n\
         FROM REGISTRY/busybox:latest\nCOPY --from=build /out/result.txt /result.txt\nCOPY static.txt /static.txt\n",
    );
    f.write("input.txt", "v1\n");
    f.write("static.txt", "static\n");
    f.build(&[]);
    assert_eq!(f.build(&[]), BTreeSet::from([2, 4, 5]));
    f.write("input.txt", "v2\n");
    // The stage's COPY misses, so does the COPY --from it, and every step after.
    assert!(f.build(&[]).is_empty());
    let img = Flattened::from_registry(&f.reg, "app:1").unwrap();
    assert_eq!(img.text("/result.txt").as_deref(), Some("v2\n"));
}

#[test]
fn oci_layout_cache_repo_works_like_a_registry() {
    let f = fixture();
    let cache = tempfile::tempdir().unwrap();
    let repo = format!("--cache-repo=oci:{}", cache.path().display());
    f.build(&[&repo]);
    assert_eq!(f.build(&[&repo]), BTreeSet::from([4, 5, 6, 7]));
    assert!(Path::new(&cache.path().join("index.json")).exists());
}

/// A project built once, with the cache on, on a busybox base from its own
/// registry: `WORKDIR /srv`, a COPY of each of `files` (dependency steps a
/// warm rebuild takes from the cache), then `COPY --chown=app:app src/`.
fn built_on_another_registry(files: &[&str]) -> (Registry, Fixture) {
    let base_reg = Registry::plain_with_busybox().unwrap();
    let mut dockerfile = format!("FROM {}/busybox:latest\nWORKDIR /srv\n", base_reg.host());
    for file in files {
        dockerfile.push_str(&format!("COPY {file} ./\n"));
    }
    dockerfile.push_str("COPY --chown=app:app src/ ./src/\n");
    let f = Fixture::new(&dockerfile);
    for file in files {
        f.write(file, &format!("{file} content\n"));
    }
    f.write("src/main.sh", "echo main\n");
    f.build(&[]);
    (base_reg, f)
}

/// On a warm runner, a COPY that misses needs to know what the base holds,
/// but must not download it: the base's layer blobs are deleted from the
/// registry it came from, and the rebuild still succeeds.
#[test]
fn a_warm_rebuild_with_a_code_change_downloads_no_base_layer() {
    let (base_reg, f) = built_on_another_registry(&["deps.txt"]);

    remove_layer_blobs(&base_reg, "busybox:latest");

    f.write("src/main.sh", "echo changed\n");
    assert_eq!(f.build(&[]), BTreeSet::from([2, 3]));
    let img = Flattened::from_registry(&f.reg, "app:1").unwrap();
    assert_eq!(
        img.text("/srv/src/main.sh").as_deref(),
        Some("echo changed\n")
    );
    assert_eq!(
        img.get("/srv/src/main.sh").unwrap().uid,
        1000,
        "--chown resolved without the base's files"
    );
}

/// Deletes the data of `image`'s layer blobs from the registry's storage,
/// so that any download of them fails.
fn remove_layer_blobs(reg: &Registry, image: &str) {
    let manifest = Flattened::from_registry(reg, image).unwrap().manifest;
    for layer in manifest["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let data = reg
            .storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        fs::remove_file(&data).unwrap_or_else(|e| panic!("removing {}: {e}", data.display()));
    }
}

const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The layer listings in cache repository `repo`: (manifest digest,
/// history text), one per tag.
fn listing_entries(reg: &Registry, repo: &str) -> Vec<(String, String)> {
    let agent = reg.http_agent().unwrap();
    let url = |path: &str| format!("{}/v2/{repo}/{path}", reg.url());
    let tags: serde_json::Value = serde_json::from_slice(
        &agent
            .get(url("tags/list"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for tag in tags["tags"].as_array().unwrap() {
        let mut resp = agent
            .get(url(&format!("manifests/{}", tag.as_str().unwrap())))
            .header("Accept", MANIFEST_ACCEPT)
            .call()
            .unwrap();
        let digest = resp.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        let manifest: serde_json::Value =
            serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
        let by = manifest["annotations"]["dev.kiln.cache.created-by"]
            .as_str()
            .unwrap()
            .to_string();
        if by.starts_with("listing of ") {
            out.push((digest, by));
        }
    }
    out
}

/// A big layer's listing is stored in pieces. A piece gone from the cache
/// (pruned, expired, deleted) costs a download of the layer, never the
/// build: the warm rebuild lists the layer from its blob, with a warning.
#[test]
fn a_missing_piece_of_a_cached_listing_lists_the_layer_instead() {
    let f = Fixture::new(
        "FROM REGISTRY/busybox:latest\n\
         RUN mkdir /many && cd /many && seq 1 20000 | xargs touch && \
             echo 'many:x:2000:2000::/:/bin/sh' >> /etc/passwd\n\
         COPY --chown=many src/ /many/src/\n",
    );
    f.write("src/main.sh", "echo main\n");
    f.build(&[]);
    let listings = listing_entries(&f.reg, "app/cache");
    let pieces: Vec<&(String, String)> = listings
        .iter()
        .filter(|(_, by)| by.contains(", piece "))
        .collect();
    assert!(
        pieces.iter().any(|(_, by)| by.ends_with("piece 2 of 2")),
        "the RUN layer's 20,000 paths are listed in two pieces: {listings:?}"
    );
    let agent = f.reg.http_agent().unwrap();
    for (digest, _) in &pieces {
        agent
            .delete(format!("{}/v2/app/cache/manifests/{digest}", f.reg.url()))
            .call()
            .unwrap();
    }

    f.write("src/main.sh", "echo changed\n");
    let text = f.build_output(&[]);
    assert_eq!(cached_lines(&text), BTreeSet::from([2]), "{text}");
    assert!(
        text.contains("is missing; listing the layer instead"),
        "{text}"
    );
    let img = Flattened::from_registry(&f.reg, "app:1").unwrap();
    let copied = img.get("/many/src/main.sh").unwrap();
    assert_eq!(
        copied.uid, 2000,
        "--chown read from the RUN layer's listing"
    );
    assert_eq!(
        img.text("/many/src/main.sh").as_deref(),
        Some("echo changed\n")
    );
}

/// `kiln warm` fills `--cache-dir` with the base; a build with the cache on
/// then starts from it without asking the base's registry anything.
#[test]
fn a_warmed_base_is_used_without_its_registry() {
    let base_reg = Registry::plain_with_busybox().unwrap();
    let base = format!("{}/busybox:latest", base_reg.host());
    let cache_dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["warm", "--image", &base, "--insecure-pull", "--cache-dir"])
        .arg(cache_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "warm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(base_reg);

    let f = Fixture::new(&format!("FROM {base}\nCOPY deps.txt /deps.txt\n"));
    f.write("deps.txt", "x\n");
    let dir = format!("--cache-dir={}", cache_dir.path().display());
    f.build(&[&dir]);
    let img = Flattened::from_registry(&f.reg, "app:1").unwrap();
    assert!(
        img.get("/bin/busybox").is_some(),
        "the base's layers were pushed from the warmed copy"
    );
    assert_eq!(img.text("/deps.txt").as_deref(), Some("x\n"));
}

/// The keys a real build stores are the ones pinned in kiln-build's
/// `tests/golden/cache_keys.txt`: the golden test's walk computes keys as
/// the engine does. Same Dockerfile ("copy-and-add"), same context files
/// and modes, same platform.
#[test]
fn a_build_stores_the_golden_cache_keys() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let f = Fixture::new(
        "FROM scratch\n\
         WORKDIR /srv\n\
         COPY a.txt .\n\
         COPY --chown=1000:1000 --chmod=0640 src/ /src/\n\
         COPY --chmod=u+x run.sh /bin/\n\
         COPY --parents --exclude=*_test.go src/**/*.go /tree/\n\
         COPY --link link.txt /l\n\
         ADD --chown=1:2 archive.txt /add/\n",
    );
    for (name, body, mode) in [
        ("a.txt", "A\n", 0o644),
        ("run.sh", "#!/bin/sh\necho hi\n", 0o755),
        ("archive.txt", "not an archive\n", 0o600),
        ("src/main.go", "package main\n", 0o644),
        ("src/pkg/util.go", "package pkg\n", 0o644),
        ("src/pkg/util_test.go", "package pkg\n", 0o644),
    ] {
        f.write(name, body);
        let path = f.ctx.path().join(name);
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    for dir in ["src", "src/pkg"] {
        let path = f.ctx.path().join(dir);
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    symlink("a.txt", f.ctx.path().join("link.txt")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let repo = format!("--cache-repo=oci:{}", cache.path().display());
    f.build(&[&repo, "--custom-platform=linux/amd64"]);

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(cache.path().join("index.json")).unwrap()).unwrap();
    let stored: BTreeSet<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .filter(|tag| tag.len() == 64)
        .map(str::to_string)
        .collect();
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-build/tests/golden/cache_keys.txt");
    let pinned: BTreeSet<String> = fs::read_to_string(golden)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("copy-and-add ") && !l.contains(" FROM "))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(pinned.len(), 7, "WORKDIR, five COPYs and an ADD");
    // The cache also holds layer listings under keys of their own.
    let missing: Vec<_> = pinned.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "golden keys the build did not store: {missing:?}"
    );
}
