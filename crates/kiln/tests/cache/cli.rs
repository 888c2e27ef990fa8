//! `kiln warm` and `kiln cache prune`, run as a user would, against a real registry.

use std::collections::BTreeMap;
use std::time::Duration;

use assert_cmd::Command;
use kiln_build::cache::entry::Entry;
use kiln_build::cache::{CacheKey, OciLayoutCache, RegistryCache, StepInputs, StepStore};
use kiln_oci::{media, Access, BlobSource, Platform, Reference, RegistryClient, RegistryOptions};
use kiln_testkit::{BaseImage, Registry};

fn client(reg: &Registry) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        insecure_registries: vec![reg.host()],
        ..Default::default()
    })
    .unwrap()
}

fn key(step: &str) -> CacheKey {
    let command = kiln_dockerfile::parse_onbuild_trigger(step)
        .expect("an instruction")
        .command;
    let args = BTreeMap::new();
    CacheKey::base("scratch", &Platform::host()).chain(&StepInputs {
        command: &command,
        args: &args,
        inputs: None,
        extra: &[],
    })
}

fn tags(rt: &tokio::runtime::Runtime, reg: &Registry, repo: &Reference) -> Vec<String> {
    let mut t = rt
        .block_on(client(reg).repository(repo, Access::Pull).list_tags())
        .unwrap();
    t.sort();
    t
}

/// Runs `kiln cache prune --older-than 168h` on `cache_repo` with `flags`;
/// its stdout, once it has succeeded.
fn prune_ok(cache_repo: &str, flags: &[&str]) -> String {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["cache", "prune", "--cache-repo", cache_repo])
        .args(["--older-than", "168h"])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cache_prune_deletes_expired_entries() {
    let reg = Registry::plain().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let repo: Reference = format!("{}/app/cache", reg.host()).parse().unwrap();
    let cache = RegistryCache::new(client(&reg), repo.clone(), Duration::from_secs(3600), true);
    let fresh = key("RUN fresh");
    let old = key("RUN old");
    rt.block_on(cache.store(&fresh, None, "RUN fresh")).unwrap();
    // An entry made a year ago.
    let mut entry = Entry::new(None, "RUN old");
    entry.created = "2001-01-01T00:00:00Z".into();
    let config = entry.config_bytes();
    let manifest = entry.manifest(&config);
    let r = client(&reg).repository(&repo, Access::Push);
    rt.block_on(r.push_blob(
        &BlobSource::Bytes(config.into()),
        &manifest.config.digest,
        manifest.config.size,
        None,
    ))
    .unwrap();
    rt.block_on(r.put_manifest(
        &old.to_string(),
        manifest.to_vec().into(),
        media::OCI_MANIFEST,
    ))
    .unwrap();

    let stdout = prune_ok(&repo.name(), &["--insecure-registry", &reg.host()]);
    assert!(
        stdout.contains("examined 2 entries, deleted 1, kept 1"),
        "{stdout}"
    );
    assert_eq!(tags(&rt, &reg, &repo), vec![fresh.to_string()]);
}

/// Pruning an `oci:` layout reaches no registry, so the registry flags are
/// not even read: a malformed one does not stop it.
#[test]
fn cache_prune_of_a_layout_makes_no_registry_client() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("cache");
    let cache = OciLayoutCache::new(layout.clone(), Duration::from_secs(3600), true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(cache.store(&key("RUN fresh"), None, "RUN fresh"))
        .unwrap();

    let repo = format!("oci:{}", layout.display());
    let stdout = prune_ok(&repo, &["--registry-certificate", "no-host"]);
    assert_eq!(
        stdout.trim(),
        format!(
            "oci:{}: examined 1 entries, deleted 0, kept 1; skipped 0 other tags",
            layout.display()
        )
    );
    let kept = rt.block_on(cache.lookup(&key("RUN fresh"))).unwrap();
    assert!(kept.is_some());
}

#[test]
fn cache_prune_rejects_a_bad_duration() {
    Command::cargo_bin("kiln")
        .unwrap()
        .args([
            "cache",
            "prune",
            "--cache-repo",
            "r.example/c",
            "--older-than",
            "a week",
        ])
        .assert()
        .code(2);
}

#[test]
fn warm_caches_the_dockerfile_base_images() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:1.36")
        .unwrap();
    BaseImage::busybox_two_layers()
        .unwrap()
        .push_to(&reg, "tools:2")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "ARG REG\nARG V=0\nFROM $REG/busybox:$V AS base\nFROM base\nRUN true\n",
    )
    .unwrap();
    let cache_dir = dir.path().join("cache");
    let warm = |force: bool| {
        let mut cmd = Command::cargo_bin("kiln").unwrap();
        cmd.args(["warm", "--dockerfile"])
            .arg(&dockerfile)
            .arg("--build-arg")
            .arg(format!("REG={}", reg.host()))
            .args(["--build-arg", "V=1.36", "--image"])
            .arg(format!("{}/tools:2", reg.host()))
            .arg("--cache-dir")
            .arg(&cache_dir)
            .args(["--insecure-pull", "--custom-platform", "linux/amd64"]);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let out = warm(false);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" cached as sha256:"))
            .count(),
        2,
        "{stdout}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let platform = Platform::new("linux", "amd64", None);
    for name in ["busybox:1.36", "tools:2"] {
        let r: Reference = format!("{}/{name}", reg.host()).parse().unwrap();
        let found = rt.block_on(kiln_build::cache::warm::cached_base(
            &cache_dir,
            &r,
            &platform,
            Duration::from_secs(3600),
        ));
        let pulled = rt.block_on(client(&reg).pull_image(&r, &platform)).unwrap();
        assert_eq!(found.expect(name).manifest_digest, pulled.digest);
    }

    // A second run finds both fresh; --force pulls again.
    let out = warm(false);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(stdout.matches("already cached").count(), 2, "{stdout}");
    let out = warm(true);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success());
    assert_eq!(stdout.matches("already cached").count(), 0, "{stdout}");
}

#[test]
fn warm_without_images_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("kiln")
        .unwrap()
        .args(["warm", "--cache-dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("nothing to warm"));
}

/// `KANIKO_REGISTRY_MIRROR` reaches `kiln warm` as it reaches `kiln build`:
/// a Docker Hub image is cached from the mirrors it names, in order (the
/// first listens nowhere), without Docker Hub as a fallback. Without the
/// variable the same command has no mirror and is refused.
#[test]
fn warm_pulls_docker_hub_images_from_the_kaniko_mirror_variable() {
    let mirror = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&mirror, "library/busybox:1.36")
        .unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let warm = || {
        let mut cmd = Command::cargo_bin("kiln").unwrap();
        cmd.args(["warm", "--image", "busybox:1.36", "--cache-dir"])
            .arg(&cache_dir)
            .arg(format!("--insecure-registry={}", mirror.host()))
            .arg(format!("--insecure-registry={dead}"))
            .args([
                "--skip-default-registry-fallback",
                "--custom-platform",
                "linux/amd64",
            ])
            .env_remove("KANIKO_REGISTRY_MAP")
            .env_remove("KANIKO_REGISTRY_MIRROR");
        cmd
    };

    let out = warm()
        .env(
            "KANIKO_REGISTRY_MIRROR",
            format!("{dead};{}", mirror.host()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" cached as sha256:"), "{stdout}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let platform = Platform::new("linux", "amd64", None);
    let hub: Reference = "busybox:1.36".parse().unwrap();
    let found = rt
        .block_on(kiln_build::cache::warm::cached_base(
            &cache_dir,
            &hub,
            &platform,
            Duration::from_secs(3600),
        ))
        .expect("busybox:1.36 cached");
    let on_mirror: Reference = format!("{}/library/busybox:1.36", mirror.host())
        .parse()
        .unwrap();
    let pulled = rt
        .block_on(client(&mirror).pull_image(&on_mirror, &platform))
        .unwrap();
    assert_eq!(found.manifest_digest, pulled.digest);

    let out = warm().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs at least one mirror"), "{stderr}");
}

/// `kiln cache prune` reads `KANIKO_REGISTRY_MAP` with the build's grammar:
/// a malformed value is the same usage error for both.
#[test]
fn cache_prune_reads_the_kaniko_registry_variables_as_build_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let context = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        Command::cargo_bin("kiln")
            .unwrap()
            .args(args)
            .env("KANIKO_REGISTRY_MAP", "gcr.io=g.local;nothing")
            .env("KANIKO_REGISTRY_MIRROR", "m.local")
            .output()
            .unwrap()
    };
    let pruned = run(&[
        "cache",
        "prune",
        "--cache-repo",
        "r.example/c",
        "--older-than",
        "1h",
    ]);
    let built = run(&["build", "--context", context, "--no-push"]);
    for out in [pruned, built] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("error: --registry-map \"nothing\": expected FROM=TO"),
            "{stderr}"
        );
    }
}
