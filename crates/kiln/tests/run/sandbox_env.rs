//! What a RUN step sees inside its sandbox, and what of the sandbox never
//! reaches the image: `kiln build` against a real registry with a busybox
//! base, in namespace and chroot isolation, with the pushed image's layers
//! read back one by one.

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Flattened, Registry};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::time::Duration;

/// Limit for one `kiln build`.
const TIMEOUT: Duration = Duration::from_secs(300);

struct Built {
    ok: bool,
    log: String,
}

/// Builds `body` (the Dockerfile after its FROM) with `files` in the
/// context and pushes it as `tag`.
fn build(
    reg: &Registry,
    files: &[(&str, &str)],
    body: &str,
    tag: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Built {
    let ctx = tempfile::tempdir().unwrap();
    for (name, content) in files {
        fs::write(ctx.path().join(name), content).unwrap();
    }
    let dockerfile = format!("FROM {}/busybox:latest\n{body}", reg.host());
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    cmd.args(["build", "--context"])
        .arg(ctx.path())
        .args(["--destination", &reg.image_ref(tag)])
        .args(["--insecure", "--insecure-pull", "--kiln-dir"])
        .arg(work.path())
        .args(extra)
        .timeout(TIMEOUT);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Built {
        ok: out.status.success(),
        log: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

fn registry() -> Registry {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    reg
}

/// One layer of a pushed image: its digest and its uncompressed tar.
struct RawLayer {
    digest: String,
    tar: Vec<u8>,
}

impl RawLayer {
    /// Entry paths, relative (`etc/hosts`), without a trailing slash.
    fn paths(&self) -> Vec<String> {
        let mut archive = tar::Archive::new(&self.tar[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                p.trim_start_matches("./")
                    .trim_start_matches('/')
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect()
    }
}

/// The layers of `name` (`repo:tag`) on `reg`, in order, read from the
/// registry's own storage.
fn layers(reg: &Registry, name: &str) -> Vec<RawLayer> {
    let (repo, tag) = name.split_once(':').unwrap();
    let url = format!("{}/v2/{repo}/manifests/{tag}", reg.url());
    let mut resp = reg
        .http_agent()
        .unwrap()
        .get(&url)
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap().to_string();
            let hex = digest.trim_start_matches("sha256:");
            let data = reg
                .storage_dir()
                .join("docker/registry/v2/blobs/sha256")
                .join(&hex[..2])
                .join(hex)
                .join("data");
            let blob = fs::read(&data).unwrap();
            let mut tar = Vec::new();
            if blob.starts_with(&[0x1f, 0x8b]) {
                flate2::read::MultiGzDecoder::new(&blob[..])
                    .read_to_end(&mut tar)
                    .unwrap();
            } else {
                tar = blob;
            }
            RawLayer { digest, tar }
        })
        .collect()
}

/// Paths the sandbox provides that must never be in a layer kiln wrote.
fn sandbox_path(p: &str) -> bool {
    let under = |top: &str| p == top || p.starts_with(&format!("{top}/"));
    under("proc")
        || under("dev")
        || under("sys")
        || under("run")
        || ["etc/hosts", "etc/resolv.conf", "etc/hostname"].contains(&p)
}

/// Asserts that the layers kiln wrote (all but the busybox base) hold none
/// of the sandbox's own files, and that they do hold `expected`.
fn assert_no_sandbox_files(reg: &Registry, name: &str, expected: &[&str], what: &str) {
    let layers = layers(reg, name);
    assert!(layers.len() > 1, "{what}: no layer was written");
    let mut all = BTreeSet::new();
    for layer in &layers[1..] {
        for p in layer.paths() {
            assert!(
                !sandbox_path(&p),
                "{what}: layer {} holds {p}",
                layer.digest
            );
            all.insert(p);
        }
    }
    for p in expected {
        assert!(all.contains(*p), "{what}: no layer holds {p}: {all:?}");
    }
}

fn text(img: &Flattened, path: &str) -> String {
    img.text(path)
        .unwrap_or_else(|| panic!("{path} is not in the image"))
}

/// Runs in both isolations: devices, the build's /etc files, writes that
/// pull /etc into the layer.
const PROBE_COMMON: &str = r#"set -eu
mkdir -p /out
for n in null zero full random urandom tty; do
  if [ -c /dev/$n ]; then echo "$n char"; else echo "$n missing"; fi
done > /out/dev
head -c 16 /dev/zero | od -An -tx1 | tr -d ' \n' > /out/zero
head -c 32 /dev/urandom | wc -c | tr -d ' ' > /out/urandom
echo discarded > /dev/null && echo ok > /out/null
cat /etc/hostname > /out/etc-hostname
grep -c kiln /etc/hosts > /out/hosts-kiln
if [ -s /etc/resolv.conf ]; then echo present > /out/resolv; fi
echo marker > /etc/kiln-marker
"#;

/// Runs with namespace isolation only: pid namespace, /proc, the rest of
/// /dev, read-only /sys, the host name.
const PROBE_NAMESPACE: &str = r#"set -eu
mkdir -p /out
ls /proc | grep -c '^[0-9][0-9]*$' > /out/npids
if grep -q '^proc /proc proc ' /proc/mounts; then echo yes > /out/proc-mounted; fi
awk '$2 == "/proc/sys" {split($4, o, ","); print o[1]}' /proc/mounts > /out/proc-sys-mode
# The host name is the step's own (a new UTS namespace): a write that got
# through would change nothing outside.
if echo kiln 2> /out/proc-sys-write > /proc/sys/kernel/hostname; then echo written >> /out/proc-sys-write; else echo refused >> /out/proc-sys-write; fi
if [ -c /dev/ptmx ]; then echo "ptmx char" > /out/ptmx; else echo "ptmx missing" > /out/ptmx; fi
echo probe > /dev/shm/probe
if [ -d /dev/shm ] && [ -f /dev/shm/probe ]; then echo "shm dir" > /out/shm; fi
awk '$2 == "/dev/shm" {print $3}' /proc/mounts > /out/shm-fs
awk '$2 == "/sys" {split($4, o, ","); print o[1]}' /proc/mounts > /out/sys-mode
awk '$2 == "/sys" || index($2, "/sys/") == 1 {split($4, o, ","); print $2, o[1]}' /proc/mounts > /out/sys-mounts
if touch /sys/kiln-probe 2> /out/sys-write; then echo written >> /out/sys-write; else echo refused >> /out/sys-write; fi
if touch /sys/fs/cgroup/kiln-probe 2> /dev/null; then echo written > /out/cgroup-write; else echo refused > /out/cgroup-write; fi
hostname > /out/hostname
"#;

/// A host file that a test must not leave behind: removed on drop unless
/// it existed before.
struct RemoveIfNew {
    path: &'static std::path::Path,
    existed: bool,
}

impl RemoveIfNew {
    fn new(path: &'static str) -> RemoveIfNew {
        let path = std::path::Path::new(path);
        RemoveIfNew {
            path,
            existed: path.exists(),
        }
    }
}

impl Drop for RemoveIfNew {
    fn drop(&mut self) {
        if !self.existed {
            let _ = fs::remove_file(self.path);
        }
    }
}

fn host_pid_count() -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count()
}

fn check_common(img: &Flattened, isolation: &str) {
    assert_eq!(
        text(img, "/out/dev"),
        "null char\nzero char\nfull char\nrandom char\nurandom char\ntty char\n",
        "{isolation}"
    );
    assert_eq!(text(img, "/out/zero"), "0".repeat(32), "{isolation}");
    assert_eq!(text(img, "/out/urandom"), "32\n", "{isolation}");
    assert_eq!(text(img, "/out/null"), "ok\n", "{isolation}");
    assert_eq!(text(img, "/out/etc-hostname"), "kiln\n", "{isolation}");
    assert_eq!(text(img, "/out/hosts-kiln"), "1\n", "{isolation}");
    assert_eq!(text(img, "/out/resolv"), "present\n", "{isolation}");
    assert_eq!(text(img, "/etc/kiln-marker"), "marker\n", "{isolation}");
    // The build's /etc files were only bound in.
    for p in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        assert!(img.get(p).is_none(), "{isolation}: {p} is in the image");
    }
}

#[test]
fn namespace_run_sees_its_own_pids_proc_dev_sys_and_host_name() {
    // Where the host has a writable /sys/fs/cgroup, a write that got
    // through would land there; it is removed whatever the outcome.
    let _host_probe = RemoveIfNew::new("/sys/fs/cgroup/kiln-probe");
    let reg = registry();
    let built = build(
        &reg,
        &[("common.sh", PROBE_COMMON), ("ns.sh", PROBE_NAMESPACE)],
        "COPY common.sh ns.sh /probe/\nRUN echo $$ > /pid && sh /probe/ns.sh && sh /probe/common.sh\n",
        "env-ns:1",
        &["--isolation", "namespace"],
        &[],
    );
    assert!(built.ok, "{}", built.log);
    let img = Flattened::from_registry(&reg, "env-ns:1").unwrap();
    check_common(&img, "namespace");

    // A new pid namespace: the step's shell comes right after the
    // namespace's init, and only the step's few processes (init, two
    // shells, `ls | grep`) are in /proc, while the host has many more.
    let pid: u32 = text(&img, "/pid").trim().parse().unwrap();
    let npids: usize = text(&img, "/out/npids").trim().parse().unwrap();
    assert!(pid <= 3, "the step's shell is pid {pid}");
    assert!(npids <= 8, "the step sees {npids} processes");
    assert!(
        host_pid_count() > npids + 10,
        "the host has too few processes for the comparison to mean anything"
    );
    assert_eq!(text(&img, "/out/proc-mounted"), "yes\n");
    // The host kernel's settings are not the step's to change.
    assert_eq!(text(&img, "/out/proc-sys-mode"), "ro\n");
    let proc_sys_write = text(&img, "/out/proc-sys-write");
    assert!(
        proc_sys_write.contains("Read-only file system") && proc_sys_write.ends_with("refused\n"),
        "{proc_sys_write}"
    );
    assert_eq!(text(&img, "/out/ptmx"), "ptmx char\n");
    assert_eq!(text(&img, "/out/shm"), "shm dir\n");
    assert_eq!(text(&img, "/out/shm-fs"), "tmpfs\n");
    assert_eq!(text(&img, "/out/sys-mode"), "ro\n");
    let sys_write = text(&img, "/out/sys-write");
    assert!(
        sys_write.contains("Read-only file system") && sys_write.ends_with("refused\n"),
        "{sys_write}"
    );
    // Not only /sys itself: every mount under it (the host's cgroup
    // hierarchies) is read-only too.
    let sys_mounts = text(&img, "/out/sys-mounts");
    assert!(sys_mounts.starts_with("/sys "), "{sys_mounts}");
    for line in sys_mounts.lines() {
        assert!(line.ends_with(" ro"), "writable in the step: {line}");
    }
    assert_eq!(
        text(&img, "/out/cgroup-write"),
        "refused\n",
        "the step wrote to the host's /sys"
    );
    assert_eq!(text(&img, "/out/hostname"), "kiln\n");

    // None of /proc, /dev (the shm file included), /sys or the /etc files
    // reached the step's layer, though /etc itself changed in it.
    assert_no_sandbox_files(
        &reg,
        "env-ns:1",
        &["etc", "etc/kiln-marker", "pid", "out/sys-mode"],
        "namespace",
    );
}

#[test]
fn chroot_run_has_devices_and_etc_files_that_stay_out_of_the_layer() {
    let reg = registry();
    let built = build(
        &reg,
        &[("common.sh", PROBE_COMMON)],
        "COPY common.sh /probe/\nRUN sh /probe/common.sh\n",
        "env-chroot:1",
        &["--isolation", "chroot"],
        &[],
    );
    assert!(built.ok, "{}", built.log);
    let img = Flattened::from_registry(&reg, "env-chroot:1").unwrap();
    check_common(&img, "chroot");
    // The device nodes made for the step are gone again: the image's /dev
    // is the base's empty directory.
    let dev: Vec<&String> = img
        .entries
        .keys()
        .filter(|p| p.starts_with("/dev/"))
        .collect();
    assert!(dev.is_empty(), "{dev:?}");
    assert_no_sandbox_files(
        &reg,
        "env-chroot:1",
        &["etc", "etc/kiln-marker", "out/dev"],
        "chroot",
    );
}

/// Interface names in a `/proc/net/dev` listing.
fn interfaces(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

#[test]
fn network_none_sees_only_loopback_while_default_shares_the_host_network() {
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    assert!(
        host.iter().any(|i| i != "lo"),
        "the host has no interface besides lo: {host:?}"
    );
    let reg = registry();
    let built = build(
        &reg,
        &[],
        "RUN --network=none cat /proc/net/dev > /net-none\nRUN cat /proc/net/dev > /net-default\n",
        "net:1",
        &["--isolation", "namespace"],
        &[],
    );
    assert!(built.ok, "{}", built.log);
    let img = Flattened::from_registry(&reg, "net:1").unwrap();
    assert_eq!(
        interfaces(&text(&img, "/net-none")),
        BTreeSet::from(["lo".to_string()])
    );
    assert_eq!(interfaces(&text(&img, "/net-default")), host);
}

const SECRET: &str = "kiln-tok-5e8a1c9f7b";

const FORMS: &str = r#"SHELL ["/bin/sh", "-ec"]
RUN echo "$-" > /shell-flags
RUN <<EOF
#!/bin/sh
echo "$0" > /heredoc-argv0
EOF
RUN <<EOF
#!/bin/awk -f
BEGIN { print "awk ran" > "/heredoc-awk" }
EOF
RUN --mount=type=tmpfs,target=/scratch echo in-tmpfs > /scratch/f && cat /scratch/f > /tmpfs-read
RUN if [ -e /scratch ]; then echo left > /tmpfs-after; else echo gone > /tmpfs-after; fi
RUN --mount=type=secret,id=tok tr a-z A-Z < /run/secrets/tok > /secret-upper
"#;

fn check_forms(isolation: &str) {
    let reg = registry();
    let built = build(
        &reg,
        &[],
        FORMS,
        "forms:1",
        &[
            "--isolation",
            isolation,
            "--secret",
            "id=tok,env=TOKEN_VAR",
            "--verbosity",
            "debug",
        ],
        &[("TOKEN_VAR", SECRET)],
    );
    assert!(built.ok, "{isolation}: {}", built.log);
    assert!(
        !built.log.contains(SECRET),
        "{isolation}: the secret is in the log"
    );
    let img = Flattened::from_registry(&reg, "forms:1").unwrap();

    // SHELL: the step ran under `sh -ec`, and its history says so.
    assert!(
        text(&img, "/shell-flags").contains('e'),
        "{isolation}: {:?}",
        img.text("/shell-flags")
    );
    let history = img.config["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["created_by"]
            .as_str()
            .is_some_and(|c| c.starts_with("RUN /bin/sh -ec echo"))),
        "{isolation}: {history:?}"
    );

    // A heredoc with a shebang is a script run by its interpreter: `$0` is
    // the script file, not `/bin/sh`, and awk code runs as awk.
    let argv0 = text(&img, "/heredoc-argv0");
    assert!(
        argv0.trim_end().ends_with("/EOF") && argv0 != "/bin/sh\n",
        "{isolation}: {argv0}"
    );
    assert_eq!(text(&img, "/heredoc-awk"), "awk ran\n", "{isolation}");

    // tmpfs: writable during the step, absent from the image and from the
    // next step.
    assert_eq!(text(&img, "/tmpfs-read"), "in-tmpfs\n", "{isolation}");
    assert_eq!(text(&img, "/tmpfs-after"), "gone\n", "{isolation}");
    assert!(img.get("/scratch").is_none(), "{isolation}");

    // The secret was read (its upper-cased form was written) and is in no
    // layer, no history and no config.
    assert_eq!(
        text(&img, "/secret-upper"),
        SECRET.to_uppercase(),
        "{isolation}"
    );
    assert!(!img.config.to_string().contains(SECRET), "{isolation}");
    let layers = layers(&reg, "forms:1");
    for layer in &layers {
        assert!(
            !layer
                .tar
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes()),
            "{isolation}: the secret is in layer {}",
            layer.digest
        );
    }
    for layer in &layers[1..] {
        for p in layer.paths() {
            assert!(
                !p.starts_with("scratch") && !sandbox_path(&p),
                "{isolation}: layer {} holds {p}",
                layer.digest
            );
        }
    }
}

#[test]
fn shell_heredoc_tmpfs_and_env_secret_namespace() {
    check_forms("namespace");
}

#[test]
fn shell_heredoc_tmpfs_and_env_secret_chroot() {
    check_forms("chroot");
}

/// A step that rewrites a file with the same size and puts its old mtime
/// back still yields a layer with the new content: with chroot isolation
/// the change is found by comparing metadata, and ctime (which no call can
/// set) differs.
const SAME_SIZE: &str = "\
RUN printf 'old-content\\n' > /same-d && printf 'old-content\\n' > /same-r && touch -d '2020-01-02 03:04:05' /same-d /same-r
RUN stat -c '%s %Y' /same-d /same-r > /meta-before && cp -p /same-r /ref && printf 'new-content\\n' > /same-d && printf 'new-content\\n' > /same-r && touch -d '2020-01-02 03:04:05' /same-d && touch -r /ref /same-r && rm /ref && stat -c '%s %Y' /same-d /same-r > /meta-after
";

fn check_same_size_rewrite(isolation: &str) {
    let reg = registry();
    let built = build(
        &reg,
        &[],
        SAME_SIZE,
        "same:1",
        &["--isolation", isolation],
        &[],
    );
    assert!(built.ok, "{isolation}: {}", built.log);
    let img = Flattened::from_registry(&reg, "same:1").unwrap();
    // The rewrite really kept size and mtime.
    assert_eq!(
        text(&img, "/meta-before"),
        text(&img, "/meta-after"),
        "{isolation}"
    );
    assert_eq!(text(&img, "/same-d"), "new-content\n", "{isolation}");
    assert_eq!(text(&img, "/same-r"), "new-content\n", "{isolation}");
    // And the second step's own layer holds both files.
    let layers = layers(&reg, "same:1");
    let last = layers.last().unwrap().paths();
    for p in ["same-d", "same-r"] {
        assert!(last.iter().any(|l| l == p), "{isolation}: {last:?}");
    }
}

#[test]
fn same_size_rewrite_with_restored_mtime_is_a_change_chroot() {
    check_same_size_rewrite("chroot");
}

#[test]
fn same_size_rewrite_with_restored_mtime_is_a_change_namespace() {
    check_same_size_rewrite("namespace");
}
