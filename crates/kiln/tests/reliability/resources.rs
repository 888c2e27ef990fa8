//! Resources: a `--kiln-dir` that fills up while a layer is written, and
//! several builds at once sharing one `--cache-dir` and one cache repo.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};
use std::time::Duration;

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Flattened, Registry};

const TIMEOUT: Duration = Duration::from_secs(300);

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = StdCommand::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg(self.dir.path()).status();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn a_full_kiln_dir_fails_clearly_and_leaves_nothing_behind() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    // 8 MiB that does not compress, into a 2 MiB kiln dir.
    let mut big = fs::File::create(ctx.path().join("big.bin")).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..8 {
        for b in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        big.write_all(&chunk).unwrap();
    }
    drop(big);
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nCOPY big.bin /big.bin\n",
            reg.host()
        ),
    )
    .unwrap();
    let tmpfs = Tmpfs::mount("2m");
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "--context"])
        .arg(ctx.path())
        .args(["--destination", &reg.image_ref("full:1")])
        .args(["--insecure", "--insecure-pull", "--kiln-dir"])
        .arg(tmpfs.path())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{all}");
    assert!(
        all.contains("No space left on device"),
        "the error does not say the disk is full:\n{all}"
    );
    // Nothing half-written is left, in the private dir or anywhere else.
    let left = files_under(tmpfs.path());
    assert_eq!(left, Vec::<PathBuf>::new(), "files left in the kiln dir");
    assert!(
        Flattened::from_registry(&reg, "full:1").is_err(),
        "an image was pushed"
    );
}

#[test]
fn four_builds_at_once_share_a_cache_dir_and_a_cache_repo() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_repo = format!("--cache-repo={}/cache", reg.host());
    let cache_dir_arg = format!("--cache-dir={}", cache_dir.path().display());
    let build = |i: usize| -> (usize, Output) {
        let ctx = tempfile::tempdir().unwrap();
        let kiln_dir = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("shared.txt"), "shared by all\n").unwrap();
        fs::write(ctx.path().join("own.txt"), format!("build {i}\n")).unwrap();
        fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM {}/busybox:latest\nCOPY shared.txt /shared.txt\nRUN echo shared-run > /run.txt\nCOPY own.txt /own.txt\nRUN cat /own.txt > /copy.txt\n",
                reg.host()
            ),
        )
        .unwrap();
        let out = Command::cargo_bin("kiln")
            .unwrap()
            .args(["build", "--context"])
            .arg(ctx.path())
            .args(["--destination", &reg.image_ref(&format!("load{i}:1"))])
            .args(["--insecure", "--insecure-pull", "--cache=true"])
            .args(["--cache-copy-layers=true", &cache_repo, &cache_dir_arg])
            .arg("--kiln-dir")
            .arg(kiln_dir.path())
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        (i, out)
    };
    let results: Vec<(usize, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|i| s.spawn(move || build(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in &results {
        assert!(out.status.success(), "build {i} failed:\n{}", text(out));
    }
    for i in 0..4 {
        let img = Flattened::from_registry(&reg, &format!("load{i}:1")).unwrap();
        assert_eq!(img.text("/shared.txt").as_deref(), Some("shared by all\n"));
        assert_eq!(img.text("/run.txt").as_deref(), Some("shared-run\n"));
        assert_eq!(
            img.text("/own.txt").as_deref(),
            Some(format!("build {i}\n").as_str())
        );
        assert_eq!(
            img.text("/copy.txt").as_deref(),
            Some(format!("build {i}\n").as_str())
        );
        assert!(img.get("/bin/busybox").is_some());
    }
    // A fifth build afterwards takes its shared steps from the cache.
    let (_, out) = build(4);
    assert!(out.status.success(), "{}", text(&out));
    let img = Flattened::from_registry(&reg, "load4:1").unwrap();
    assert_eq!(img.text("/copy.txt").as_deref(), Some("build 4\n"));
}
