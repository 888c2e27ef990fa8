//! The failure that motivates kiln: Python images in CI with the registry
//! cache on, on the debootstrapped Debian base.
//!
//! * Two images with different requirements, built one after the other in
//!   the same job (same `--kiln-dir` parent, same `--cache-dir`, one shared
//!   `--cache-repo`), each contain exactly their own packages.
//! * Six rebuilds after code-only changes, each on a fresh runner (new kiln
//!   dir, new cache dir): every dependency step is a cache hit every time,
//!   and every final manifest names the same digests for the dependency
//!   layers (never alternating between two versions).
//! * `--cache-run-layers=false`: RUN steps never hit, build after build.
//!
//! The packages are tiny pure-Python wheels written at test time by the
//! host's `python3` (stdlib `zipfile`, fixed timestamps, so the same bytes
//! every run) and installed with `pip install --no-index --find-links` into a
//! venv: no network.

use crate::build_common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use build_common::Kiln;
use kiln_testkit::{run_pushed_image, BaseImage, Flattened, Registry};

const SITE: &str = "/venv/lib/python3.11/site-packages";

/// Lines 3 to 6 are the dependency steps; line 7 is the code.
const DOCKERFILE: &str = "\
FROM BASE
ENV VIRTUAL_ENV=/venv PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN python3 -m venv /venv
COPY wheels/ /wheels/
COPY requirements.txt /app/requirements.txt
RUN pip install --no-index --find-links /wheels --no-cache-dir --disable-pip-version-check -r /app/requirements.txt
COPY app.py /app/app.py
CMD [\"python\", \"/app/app.py\"]
";

/// Image a's code: reports what it can import.
const APP_A: &str = "\
import tinyalpha, tinycommon
try:
    import tinybeta
except ImportError:
    print('a:', tinyalpha.VERSION + ',', tinycommon.VERSION + ', tinybeta missing')
";

/// Image b's code.
const APP_B: &str = "\
import tinybeta, tinycommon
try:
    import tinyalpha
except ImportError:
    print('b:', tinybeta.VERSION + ',', tinycommon.VERSION + ', tinyalpha missing')
";

/// Dockerfile lines of the dependency steps.
const DEP_STEPS: [usize; 4] = [3, 4, 5, 6];
/// Dockerfile lines of the RUN steps.
const RUN_STEPS: [usize; 2] = [3, 6];
/// Layers of the base and the dependency steps, in manifest order (ENV adds none).
const DEP_LAYERS: usize = 5;

/// Writes one pure-Python wheel per `(name, version)` into `dir`; each
/// package's `VERSION` is `"<name> <version>"`.
const MAKE_WHEELS: &str = r#"
import base64, hashlib, sys, zipfile

out = sys.argv[1]
for spec in sys.argv[2:]:
    name, version = spec.split("==")
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{name} {version}"\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(f"{out}/{name}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, text)
"#;

fn make_wheels(dir: &Path, specs: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    let out = StdCommand::new("python3")
        .arg("-c")
        .arg(MAKE_WHEELS)
        .arg(dir)
        .args(specs)
        .output()
        .expect("python3 on PATH, to write the test wheels");
    assert!(
        out.status.success(),
        "writing wheels failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A build context: the Dockerfile, every wheel, `requirements`, and app.py.
fn context(base: &str, requirements: &str, app: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    let p = ctx.path();
    fs::write(p.join("Dockerfile"), DOCKERFILE.replace("BASE", base)).unwrap();
    make_wheels(
        &p.join("wheels"),
        &[
            "tinyalpha==1.0",
            "tinybeta==1.0",
            "tinycommon==1.0",
            "tinycommon==2.0",
        ],
    );
    fs::write(p.join("requirements.txt"), requirements).unwrap();
    fs::write(p.join("app.py"), app).unwrap();
    ctx
}

struct Setup {
    reg: Registry,
    base: String,
}

fn setup() -> Setup {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::debian()
        .unwrap()
        .push_to(&reg, "debian:bookworm")
        .unwrap();
    Setup { reg, base }
}

struct Build {
    cached: BTreeSet<usize>,
    took: Duration,
}

/// `kiln build` with the cache on (COPY layers too) and a shared cache
/// repo; returns the Dockerfile lines reported `step N: CACHED`.
fn build(
    s: &Setup,
    ctx: &Path,
    name: &str,
    kiln_dir: &Path,
    cache_dir: &Path,
    extra: &[&str],
) -> Build {
    let start = Instant::now();
    let out = Kiln::build(ctx)
        .args(["--destination", &s.reg.image_ref(name)])
        .args(["--cache-repo", &s.reg.image_ref("python/cache")])
        .args([
            "--insecure",
            "--insecure-pull",
            "--cache=true",
            "--cache-copy-layers=true",
        ])
        .arg_path("--kiln-dir", kiln_dir)
        .arg_path("--cache-dir", cache_dir)
        .args(extra)
        .success();
    let took = start.elapsed();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Build {
        cached: cached_lines(&log),
        took,
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

/// The installed distributions of our test packages, as `name==version`.
fn tiny_packages(img: &Flattened) -> BTreeSet<String> {
    distributions(img)
        .into_iter()
        .filter(|d| d.starts_with("tiny"))
        .collect()
}

/// Every distribution installed in the venv, as `name==version`.
fn distributions(img: &Flattened) -> BTreeSet<String> {
    let prefix = format!("{SITE}/");
    img.entries
        .keys()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|p| !p.contains('/'))
        .filter_map(|p| p.strip_suffix(".dist-info"))
        .map(|d| d.replacen('-', "==", 1))
        .collect()
}

fn layer_digests(img: &Flattened) -> Vec<String> {
    img.manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// A new runner's empty `--kiln-dir` and `--cache-dir` (removed on drop).
fn fresh_runner() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let runner = tempfile::tempdir().unwrap();
    let (k, c) = (runner.path().join("kiln"), runner.path().join("cache"));
    fs::create_dir_all(&k).unwrap();
    fs::create_dir_all(&c).unwrap();
    (runner, k, c)
}

fn set(lines: &[usize]) -> BTreeSet<usize> {
    lines.iter().copied().collect()
}

#[test]
fn python_images_keep_their_own_packages_and_rebuilds_reuse_dependency_layers() {
    let s = setup();
    let (_job, kiln_dir, cache_dir) = fresh_runner();

    // Two images in one job, one after the other.
    let a = context(&s.base, "tinyalpha==1.0\ntinycommon==1.0\n", APP_A);
    let b = context(&s.base, "tinybeta==1.0\ntinycommon==2.0\n", APP_B);
    let cold = build(&s, a.path(), "app-a:1", &kiln_dir, &cache_dir, &[]);
    assert!(cold.cached.is_empty(), "cold cache hit {:?}", cold.cached);
    let second = build(&s, b.path(), "app-b:1", &kiln_dir, &cache_dir, &[]);
    // The venv and the wheels are shared; the requirements differ.
    assert_eq!(second.cached, set(&[3, 4]), "image b's hits");
    let img_a = Flattened::from_registry(&s.reg, "app-a:1").unwrap();
    let img_b = Flattened::from_registry(&s.reg, "app-b:1").unwrap();
    let pkgs = |l: &[&str]| l.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        tiny_packages(&img_a),
        pkgs(&["tinyalpha==1.0", "tinycommon==1.0"]),
        "image a's site-packages"
    );
    assert_eq!(
        tiny_packages(&img_b),
        pkgs(&["tinybeta==1.0", "tinycommon==2.0"]),
        "image b's site-packages"
    );
    let version = |img: &Flattened| img.text(&format!("{SITE}/tinycommon/__init__.py"));
    assert_eq!(
        version(&img_a).as_deref(),
        Some("VERSION = \"tinycommon 1.0\"\n")
    );
    assert_eq!(
        version(&img_b).as_deref(),
        Some("VERSION = \"tinycommon 2.0\"\n")
    );
    // The images run: the venv's python imports exactly what was installed.
    assert_eq!(
        run_pushed_image(&s.reg, "app-a:1").unwrap(),
        "a: tinyalpha 1.0, tinycommon 1.0, tinybeta missing\n"
    );
    assert_eq!(
        run_pushed_image(&s.reg, "app-b:1").unwrap(),
        "b: tinybeta 1.0, tinycommon 2.0, tinyalpha missing\n"
    );
    // Apart from the test packages, both venvs hold the same (pip's own).
    let others = |img: &Flattened| {
        let mut d = distributions(img);
        d.retain(|d| !d.starts_with("tiny"));
        d
    };
    assert_eq!(others(&img_a), others(&img_b));
    assert!(
        others(&img_a).iter().any(|d| d.starts_with("pip==")),
        "{:?}",
        others(&img_a)
    );
    let deps_a = layer_digests(&img_a)[..DEP_LAYERS].to_vec();
    // Base, venv and wheels: image b reused image a's layers.
    assert_eq!(layer_digests(&img_b)[..3], deps_a[..3]);

    // Six code-only changes to image a, each built on a fresh runner.
    let mut warm = Vec::new();
    for i in 1..=6 {
        let code = format!("{APP_A}print('change {i}')\n");
        fs::write(a.path().join("app.py"), &code).unwrap();
        let (_runner, k, c) = fresh_runner();
        let r = build(&s, a.path(), "app-a:1", &k, &c, &[]);
        assert_eq!(r.cached, set(&DEP_STEPS), "rebuild {i}: cached steps");
        let img = Flattened::from_registry(&s.reg, "app-a:1").unwrap();
        let layers = layer_digests(&img);
        assert_eq!(
            layers[..DEP_LAYERS],
            deps_a[..],
            "rebuild {i}: dependency layers differ from the first build's"
        );
        assert_eq!(layers.len(), DEP_LAYERS + 1, "rebuild {i}: layer count");
        assert_eq!(tiny_packages(&img), tiny_packages(&img_a), "rebuild {i}");
        assert_eq!(img.text("/app/app.py"), Some(code), "rebuild {i}");
        warm.push(r.took);
    }
    eprintln!(
        "python image a: cold build {:.1?}; image b (venv and wheels cached) {:.1?}; \
         warm rebuilds after a code change {}",
        cold.took,
        second.took,
        warm.iter()
            .map(|t| format!("{t:.1?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn without_run_layers_in_the_cache_run_steps_never_hit() {
    let s = setup();
    let a = context(&s.base, "tinyalpha==1.0\ntinycommon==1.0\n", APP_A);
    // Twice, so that a first build cannot have left RUN entries a second
    // one would find.
    for i in 1..=2 {
        let (_runner, k, c) = fresh_runner();
        let r = build(
            &s,
            a.path(),
            "app-a:1",
            &k,
            &c,
            &["--cache-run-layers=false"],
        );
        let hit: Vec<usize> = r.cached.intersection(&set(&RUN_STEPS)).copied().collect();
        assert!(
            hit.is_empty(),
            "run {i} with --cache-run-layers=false hit RUN steps {hit:?}"
        );
        let img = Flattened::from_registry(&s.reg, "app-a:1").unwrap();
        let expected = ["tinyalpha==1.0", "tinycommon==1.0"].map(String::from);
        assert_eq!(tiny_packages(&img), BTreeSet::from(expected), "run {i}");
    }
}
