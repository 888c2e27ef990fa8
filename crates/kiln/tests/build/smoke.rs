//! End-to-end: `kiln build` against a real registry, checked by reading the
//! pushed image back with the independent flattener.

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Flattened, Registry};
use std::fs;

#[test]
fn copy_env_workdir_build_is_pushed_and_readable() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox().unwrap();
    base.push_to(&reg, "busybox:latest").unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    fs::create_dir(ctx.path().join("src")).unwrap();
    fs::write(ctx.path().join("src/app.sh"), "#!/bin/sh\necho app\n").unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nENV GREETING=hi\nWORKDIR /app\nCOPY hello.txt .\nCOPY --chown=app:app src/ /app/src/\nCMD [\"sh\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let dest = format!("{}/app:1", reg.host());
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "--context"])
        .arg(ctx.path())
        .args([
            "--destination",
            &dest,
            "--insecure",
            "--insecure-pull",
            "--kiln-dir",
        ])
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = Flattened::from_registry(&reg, "app:1").unwrap();
    assert_eq!(img.text("/app/hello.txt").as_deref(), Some("hello\n"));
    let app = img.get("/app/src/app.sh").expect("app.sh copied");
    assert_eq!((app.uid, app.gid), (1000, 1000));
    assert!(img.get("/bin/busybox").is_some());
    let env = img.config["config"]["Env"].to_string();
    assert!(env.contains("GREETING=hi"), "{env}");
    assert_eq!(img.config["config"]["WorkingDir"], "/app");
    assert_eq!(
        fs::read_dir(work.path()).unwrap().count(),
        0,
        "the build's working directory is removed"
    );
}
