//! The debootstrapped Debian base: built once per machine, cached, pushed,
//! and read back.

use std::time::Instant;

use kiln_testkit::{BaseImage, Flattened, Registry};

#[test]
fn debian_base_has_python_venv_and_pip_and_no_docs() {
    let start = Instant::now();
    let base = BaseImage::debian().unwrap();
    eprintln!("BaseImage::debian() took {:.1?}", start.elapsed());
    // A second call reuses the cache.
    let again = Instant::now();
    let same = BaseImage::debian().unwrap();
    let cached = again.elapsed();
    eprintln!("cached BaseImage::debian() took {cached:.1?}");
    assert_eq!(base.layout_dir(), same.layout_dir());
    assert!(cached.as_secs() < 5, "cached lookup took {cached:?}");

    let reg = Registry::plain().unwrap();
    base.push_to(&reg, "debian:bookworm").unwrap();
    let img = Flattened::from_registry(&reg, "debian:bookworm").unwrap();
    assert_eq!(img.config["config"]["Cmd"][0], "bash");
    assert_eq!(
        img.config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1
    );
    for p in [
        "/usr/bin/python3",
        "/usr/bin/pip3",
        "/usr/lib/python3.11/venv/__init__.py",
        "/usr/bin/apt-get",
        "/usr/bin/sh",
        "/usr/lib/os-release",
    ] {
        assert!(img.get(p).is_some(), "{p} missing from the Debian base");
    }
    assert!(
        img.text("/usr/lib/os-release")
            .unwrap()
            .contains("bookworm"),
        "{:?}",
        img.text("/usr/lib/os-release")
    );
    let docs = img
        .entries
        .keys()
        .filter(|p| p.starts_with("/usr/share/doc/") || p.starts_with("/var/lib/apt/lists/"))
        .filter(|p| !p.ends_with("/partial"))
        .cloned()
        .collect::<Vec<_>>();
    assert!(docs.is_empty(), "trimmed paths present: {docs:?}");
    assert!(img.get("/etc/resolv.conf").is_none());
}
