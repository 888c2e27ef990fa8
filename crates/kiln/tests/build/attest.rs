//! Provenance and SBOM statements end to end against a real registry: the
//! image index BuildKit's form uses (image manifest + attestation manifest),
//! found by following the tag with skopeo and the blobs with curl; the
//! statements validated against the in-toto and SLSA v1 JSON schemas
//! (tests/fixtures/schemas) and the SPDX validator (`pyspdxtools`); the
//! SBOM's packages against `dpkg-query` and `pip list --path` on the
//! unpacked image; and an image built without the flags unchanged.

use crate::build_common;

use assert_cmd::cargo::cargo_bin;
use build_common::Kiln;
use kiln_testkit::{skopeo_inspect_raw, Registry};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// `kiln build` of `ctx` with an empty Docker config, plus `args`.
fn kiln(ctx: &Path, args: &[&str]) -> Output {
    Kiln::build(ctx)
        .empty_docker_config()
        .args(["--log-format=text", "--insecure", "--insecure-pull"])
        .args(args)
        .output()
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

/// An HTTP server on 127.0.0.1 answering every request with `body`.
fn serve(body: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}/tool.txt")
}

/// A blob of `name` (a `repo:tag` on `reg`) by digest, with curl.
fn blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("{}/v2/{repo}/blobs/{digest}", reg.url());
    let out = Command::new("curl").args(["-fsS", &url]).output().unwrap();
    assert!(out.status.success(), "curl {url}: {}", text(&out));
    out.stdout
}

/// The statements attached to `name` on `reg`, found by following the tag:
/// the index, its attestation manifest, its layers. Also returns the index.
fn attached(reg: &Registry, repo: &str, tag: &str) -> (Value, Vec<(String, Value)>) {
    let index = skopeo_inspect_raw(&reg.image_ref(&format!("{repo}:{tag}")), false).unwrap();
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{index}");
    let image = &manifests[0];
    let att = &manifests[1];
    assert_eq!(att["platform"]["os"], "unknown");
    assert_eq!(att["platform"]["architecture"], "unknown");
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        image["digest"]
    );
    let att_ref = format!(
        "{}@{}",
        reg.image_ref(repo),
        att["digest"].as_str().unwrap()
    );
    let manifest = skopeo_inspect_raw(&att_ref, false).unwrap();
    let mut out = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
        let predicate = layer["annotations"]["in-toto.io/predicate-type"]
            .as_str()
            .unwrap()
            .to_string();
        let bytes = blob(reg, repo, layer["digest"].as_str().unwrap());
        let statement: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(statement["predicateType"], predicate.as_str());
        assert_eq!(
            format!(
                "sha256:{}",
                statement["subject"][0]["digest"]["sha256"]
                    .as_str()
                    .unwrap()
            ),
            image["digest"].as_str().unwrap(),
            "the statement is about the image manifest"
        );
        out.push((predicate, statement));
    }
    (index, out)
}

/// Every regular file of a tarball, by name.
fn tar_entries(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    let mut out = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(name, bytes);
    }
    out
}

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemas")
}

/// Validates a statement with the in-toto (and SLSA v1) JSON schemas.
fn validate_schema(statement: &Value) {
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), serde_json::to_vec(statement).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(schemas().join("validate.py"))
        .arg(file.path())
        .output()
        .expect("python3 with jsonschema (scripts/install-deps) is needed");
    assert!(out.status.success(), "schema validation: {}", text(&out));
}

/// `pyspdxtools`: from PATH, or where `pip install --user` puts it.
fn pyspdxtools() -> PathBuf {
    if let Some(p) = kiln_testkit::find_in_path("pyspdxtools") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let user = Path::new(&home).join(".local/bin/pyspdxtools");
    assert!(
        user.exists(),
        "pyspdxtools (PyPI spdx-tools) is needed: run scripts/install-deps"
    );
    user
}

/// Validates an SPDX document with the SPDX project's own validator.
fn validate_spdx(document: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sbom.spdx.json");
    fs::write(&file, serde_json::to_vec(document).unwrap()).unwrap();
    let out = Command::new(pyspdxtools())
        .arg("-i")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "pyspdxtools: {}", text(&out));
    let said = text(&out).to_lowercase();
    assert!(
        !said.contains("error") && !said.contains("invalid"),
        "{said}"
    );
}

fn manifest_digest(reg: &Registry, name: &str) -> String {
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}", reg.image_ref(name)))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", text(&raw));
    kiln_testkit::layout::sha256_digest(&raw.stdout)
}

#[test]
fn provenance_and_sbom_are_attached_as_buildkit_attaches_them() {
    let reg = Registry::plain_with_busybox().unwrap();
    let url = serve(b"tool v1\n");
    let dockerfile = format!(
        "FROM {}\nARG VERSION\nARG GITHUB_TOKEN\nADD {url} /tool.txt\n\
         RUN echo $VERSION > /version\n",
        reg.image_ref("busybox:latest")
    );
    let ctx = context(&dockerfile);
    // The context is a git checkout: the provenance names its commit.
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(ctx.path())
            .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.org"])
            .args(args)
            .output()
            .expect("git is needed");
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://ci:t0ken@git.example/app.git",
    ]);
    git(&["add", "Dockerfile"]);
    git(&["commit", "-q", "-m", "app"]);
    let revision = git(&["rev-parse", "HEAD"]);
    let files = tempfile::tempdir().unwrap();
    let prov_file = files.path().join("out/provenance.json");
    let digest_file = files.path().join("digest");
    let tar_path = files.path().join("image.tar");
    let secret = files.path().join("npmrc");
    fs::write(
        &secret,
        "//registry.npmjs.org/:_authToken=npm_secretfilecontent\n",
    )
    .unwrap();
    let app = reg.image_ref("app:1");
    let out = kiln(
        ctx.path(),
        &[
            "-d",
            &app,
            "--build-arg=VERSION=1.2",
            "--build-arg=GITHUB_TOKEN=ghp_s3cr3tvalue",
            &format!("--secret=id=npmrc,src={}", secret.display()),
            "--provenance",
            "--sbom",
            "--provenance-file",
            prov_file.to_str().unwrap(),
            "--digest-file",
            digest_file.to_str().unwrap(),
            "--tar-path",
            tar_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("ghp_s3cr3tvalue"), "{}", text(&out));

    let (index, statements) = attached(&reg, "app", "1");
    // The digest file names what the tag names: the index.
    assert_eq!(
        fs::read_to_string(&digest_file).unwrap(),
        manifest_digest(&reg, "app:1")
    );
    assert_eq!(index["manifests"][0]["platform"]["os"], "linux");
    // The tarball holds the same index, named by its index.json, and every
    // blob the index leads to.
    let entries = tar_entries(&tar_path);
    let tar_index: Value = serde_json::from_slice(&entries["index.json"]).unwrap();
    let top = &tar_index["manifests"][0];
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(top["digest"], manifest_digest(&reg, "app:1").as_str());
    let in_tar = |d: &Value| {
        let name = format!("blobs/sha256/{}", &d["digest"].as_str().unwrap()[7..]);
        serde_json::from_slice::<Value>(&entries[&name]).unwrap()
    };
    assert_eq!(in_tar(top), index);
    let att_manifest = in_tar(&index["manifests"][1]);
    for layer in att_manifest["layers"].as_array().unwrap() {
        let statement = in_tar(layer);
        assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    }
    let predicates: Vec<&str> = statements.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        predicates,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );

    let prov = &statements[0].1;
    validate_schema(prov);
    validate_schema(&statements[1].1);
    validate_spdx(&statements[1].1["predicate"]);
    // The file holds the very statement that is attached.
    let from_file: Value = serde_json::from_slice(&fs::read(&prov_file).unwrap()).unwrap();
    assert_eq!(&from_file, prov);
    let all = prov.to_string();
    assert!(!all.contains("ghp_s3cr3tvalue"), "{all}");
    // A secret is named by its id, never by its content.
    assert!(!all.contains("npm_secretfilecontent"), "{all}");
    assert_eq!(
        prov["predicate"]["buildDefinition"]["externalParameters"]["request"]["secrets"],
        serde_json::json!([{"id": "npmrc"}])
    );

    let def = &prov["predicate"]["buildDefinition"];
    assert_eq!(
        def["buildType"],
        "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
    );
    let params = &def["externalParameters"];
    let sha = kiln_testkit::layout::sha256_digest(dockerfile.as_bytes());
    assert_eq!(
        format!(
            "sha256:{}",
            params["configSource"]["digest"]["sha256"].as_str().unwrap()
        ),
        sha
    );
    assert_eq!(params["request"]["args"]["build-arg:VERSION"], "1.2");
    assert_eq!(
        params["request"]["args"]["build-arg:GITHUB_TOKEN"],
        "[REDACTED]"
    );
    // Every material, pinned: the base by its manifest digest, the download by its body's.
    let busybox = manifest_digest(&reg, "busybox:latest");
    let deps = def["resolvedDependencies"].as_array().unwrap();
    let base = deps
        .iter()
        .find(|d| d["uri"].as_str().unwrap().starts_with("pkg:docker/"))
        .unwrap_or_else(|| panic!("no base image in {deps:?}"));
    assert!(
        base["uri"]
            .as_str()
            .unwrap()
            .contains("busybox@latest?platform="),
        "{base}"
    );
    assert_eq!(
        format!("sha256:{}", base["digest"]["sha256"].as_str().unwrap()),
        busybox
    );
    let download = deps.iter().find(|d| d["uri"] == url.as_str()).unwrap();
    assert_eq!(
        format!("sha256:{}", download["digest"]["sha256"].as_str().unwrap()),
        kiln_testkit::layout::sha256_digest(b"tool v1\n")
    );
    assert_eq!(
        prov["predicate"]["runDetails"]["builder"]["version"]["kiln"],
        env!("CARGO_PKG_VERSION")
    );
    let vcs = &prov["predicate"]["runDetails"]["metadata"]["buildkit_metadata"]["vcs"];
    assert_eq!(vcs["revision"], revision.as_str());
    assert_eq!(vcs["source"], "https://git.example/app.git");
    assert!(!all.contains("t0ken"), "{all}");
    // min mode: no steps.
    assert!(
        def["internalParameters"].get("buildConfig").is_none(),
        "{def}"
    );
}

#[test]
fn an_image_built_without_the_flags_is_unchanged_and_attaching_keeps_its_manifest() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&format!(
        "FROM {}\nRUN echo hello > /hello\n",
        reg.image_ref("busybox:latest")
    ));
    let plain = reg.image_ref("plain:1");
    let out = kiln(ctx.path(), &["-d", &plain, "--reproducible"]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest = skopeo_inspect_raw(&plain, false).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(manifest.get("manifests").is_none());

    let files = tempfile::tempdir().unwrap();
    let prov = files.path().join("p.json");
    let sbom = files.path().join("s.json");
    let file_only = reg.image_ref("fileonly:1");
    let out = kiln(
        ctx.path(),
        &[
            "-d",
            &file_only,
            "--reproducible",
            "--provenance-file",
            prov.to_str().unwrap(),
            "--sbom-file",
            sbom.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // Files only: nothing attached, the same manifest bytes.
    assert_eq!(
        manifest_digest(&reg, "fileonly:1"),
        manifest_digest(&reg, "plain:1")
    );
    validate_schema(&serde_json::from_slice(&fs::read(&prov).unwrap()).unwrap());
    let sbom: Value = serde_json::from_slice(&fs::read(&sbom).unwrap()).unwrap();
    validate_schema(&sbom);
    validate_spdx(&sbom["predicate"]);

    let attached_ref = reg.image_ref("attached:1");
    let out = kiln(
        ctx.path(),
        &[
            "-d",
            &attached_ref,
            "--reproducible",
            "--provenance=mode=max",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (index, _) = attached(&reg, "attached", "1");
    // The index holds the very image manifest a build without the flags pushes.
    assert_eq!(
        index["manifests"][0]["digest"],
        manifest_digest(&reg, "plain:1").as_str()
    );
}

#[test]
fn cache_hits_keep_the_provenance_true_in_max_mode() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&format!(
        "FROM {}\nRUN echo one > /one\nRUN echo two > /two\n",
        reg.image_ref("busybox:latest")
    ));
    let cache = reg.image_ref("cache");
    let build = |tag: &str| {
        let dest = reg.image_ref(&format!("app:{tag}"));
        let out = kiln(
            ctx.path(),
            &[
                "-d",
                &dest,
                "--cache",
                "--cache-repo",
                &cache,
                "--provenance=mode=max",
                "--sbom",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let (_, statements) = attached(&reg, "app", tag);
        let prov = statements[0].1.clone();
        validate_schema(&prov);
        let log = text(&out);
        let made = log.lines().find(|l| l.contains("SBOM of")).unwrap();
        (prov, statements[1].1.clone(), made.to_string())
    };
    let steps = |prov: &Value| {
        prov["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["steps"]
            .as_array()
            .unwrap()
            .clone()
    };
    let (cold, cold_sbom, cold_made) = build("cold");
    let cold_steps = steps(&cold);
    assert_eq!(cold_steps.len(), 2, "{cold_steps:?}");
    assert!(
        cold_steps.iter().all(|s| s["cached"] == false),
        "{cold_steps:?}"
    );
    let (warm, warm_sbom, warm_made) = build("warm");
    let warm_steps = steps(&warm);
    assert_eq!(warm_steps.len(), 2, "every step is recorded, cached or not");
    for (cold, warm) in cold_steps.iter().zip(&warm_steps) {
        assert_eq!(cold["line"], warm["line"]);
        assert_eq!(cold["instruction"], warm["instruction"]);
        assert_eq!(warm["cached"], true, "{warm}");
        assert!(
            warm["cacheOrigin"].as_str().unwrap().ends_with("/cache"),
            "{warm}"
        );
    }
    // The materials do not change with the cache.
    assert_eq!(
        cold["predicate"]["buildDefinition"]["resolvedDependencies"],
        warm["predicate"]["buildDefinition"]["resolvedDependencies"]
    );
    // Nor does the SBOM: the cold build scanned its layers as they streamed
    // (busybox unpacked under the first RUN, the RUN layers written), the
    // warm one, which streamed none, read them.
    assert!(
        cold_made.ends_with("(3 of 3 layers scanned as the build streamed them)"),
        "{cold_made}"
    );
    assert!(
        warm_made.ends_with("(0 of 3 layers scanned as the build streamed them)"),
        "{warm_made}"
    );
    let files = &cold_sbom["predicate"]["files"];
    assert!(files.as_array().unwrap().len() > 2, "{files}");
    assert_eq!(files, &warm_sbom["predicate"]["files"]);
}

#[test]
fn bad_provenance_values_and_docker_format_are_refused() {
    let ctx = context("FROM scratch\n");
    let out = kiln(ctx.path(), &["--no-push", "--provenance=mode=full"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("mode=full: the mode is min or max"),
        "{}",
        text(&out)
    );
    let tar = tempfile::tempdir().unwrap();
    let path = tar.path().join("i.tar");
    let out = kiln(
        ctx.path(),
        &[
            "--no-push",
            "--tar-path",
            path.to_str().unwrap(),
            "--sbom",
            "--image-format=docker",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--image-format=docker"),
        "{}",
        text(&out)
    );
}

/// `(name, version)` of each package `ecosystem`'s cataloguer found.
fn sbom_packages(sbom: &Value, ecosystem: &str, under: &str) -> BTreeSet<(String, String)> {
    sbom["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["sourceInfo"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{ecosystem} database: {under}")))
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Unpacks the image that `tag` names in the OCI layout `layout` (an index
/// with attestations: its image manifest) with umoci; returns the rootfs.
fn unpack(layout: &Path, tag: &str, into: &Path) -> PathBuf {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let blob = |d: &Value| {
        let hex = d["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()
            .to_string();
        serde_json::from_slice::<Value>(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let mut image = blob(&entry)["manifests"][0].clone();
    // umoci wants the image manifest itself under a tag.
    image["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "unpack"});
    let own = serde_json::json!({"schemaVersion": 2, "manifests": [image]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&own).unwrap()).unwrap();
    kiln_testkit::umoci_unpack(layout, "unpack", into).unwrap()
}

#[test]
fn the_sbom_lists_exactly_what_dpkg_and_pip_report_for_a_debian_image() {
    let reg = Registry::plain().unwrap();
    let base = kiln_testkit::BaseImage::debian()
        .unwrap()
        .push_to(&reg, "debian:bookworm")
        .unwrap();
    // A later layer changes both databases: a package added to dpkg's
    // status, one removed (config files kept), a Python distribution deleted
    // (a whiteout over the base layer), and an npm package copied in.
    let ctx = context(&format!(
        "FROM {base}\n\
         RUN printf '\\nPackage: kiln-extra\\nStatus: install ok installed\\nPriority: optional\\n\
         Architecture: all\\nVersion: 1.0-1\\nMaintainer: kiln <kiln@example.org>\\n\
         Description: test package\\n' >> /var/lib/dpkg/status \
         && sed -i '/^Package: e2fsprogs$/,/^$/ s/^Status: install ok installed$/Status: deinstall ok config-files/' /var/lib/dpkg/status \
         && rm -rf /usr/lib/python3/dist-packages/wheel-*.dist-info /usr/lib/python3/dist-packages/wheel-*.egg-info \
         && echo changed > /etc/debian_version && rm /etc/issue.net\n\
         COPY left-pad /app/node_modules/left-pad\n\
         COPY demo /usr/local/lib/python3.11/dist-packages\n"
    ));
    // A pip-installed distribution, with its RECORD naming its files
    // (one outside the packages directory).
    let demo = ctx.path().join("demo");
    fs::create_dir_all(demo.join("demo-1.0.dist-info")).unwrap();
    fs::write(demo.join("demo.py"), "print('demo')\n").unwrap();
    fs::write(
        demo.join("demo-1.0.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    )
    .unwrap();
    fs::write(
        demo.join("demo-1.0.dist-info/RECORD"),
        "demo.py,sha256=x,14\ndemo-1.0.dist-info/METADATA,,\n\
         demo-1.0.dist-info/RECORD,,\n../../../bin/missing,,\n",
    )
    .unwrap();
    fs::create_dir_all(ctx.path().join("left-pad/test")).unwrap();
    fs::write(
        ctx.path().join("left-pad/package.json"),
        r#"{"name":"left-pad","version":"1.3.0","license":"WTFPL"}"#,
    )
    .unwrap();
    fs::write(
        ctx.path().join("left-pad/test/package.json"),
        r#"{"name":"fixture","version":"0.0.0"}"#,
    )
    .unwrap();
    let files = tempfile::tempdir().unwrap();
    let sbom_file = files.path().join("sbom.json");
    let layout = files.path().join("layout");
    let out = kiln(
        ctx.path(),
        &[
            "-d",
            &reg.image_ref("app:1"),
            "--sbom",
            "--provenance",
            "--sbom-file",
            sbom_file.to_str().unwrap(),
            "--oci-layout-path",
            layout.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for line in text(&out).lines().filter(|l| l.contains("made in")) {
        eprintln!("{line}");
    }
    // The base was scanned as it was unpacked under the RUN, the other
    // layers as they were written: no layer was read again.
    let made = text(&out);
    let made = made.lines().find(|l| l.contains("SBOM of")).unwrap();
    assert!(
        made.ends_with("(4 of 4 layers scanned as the build streamed them)"),
        "{made}"
    );
    let sbom: Value = serde_json::from_slice(&fs::read(&sbom_file).unwrap()).unwrap();
    validate_schema(&sbom);
    validate_spdx(&sbom["predicate"]);
    // What is attached is what was written.
    let (_, statements) = attached(&reg, "app", "1");
    assert_eq!(statements[1].1, sbom);

    let rootfs = unpack(&layout, "1", &files.path().join("bundle"));
    let dpkg = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            rootfs.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${db:Status-Status}\t${Package}\t${Version}\n"])
        .output()
        .unwrap();
    assert!(dpkg.status.success(), "{}", text(&dpkg));
    let listed = String::from_utf8(dpkg.stdout).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("config-files\te2fsprogs\t")),
        "{listed}"
    );
    let expected: BTreeSet<(String, String)> = listed
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (status, name, version) = (f.next()?, f.next()?, f.next()?);
            (!matches!(status, "not-installed" | "config-files"))
                .then(|| (name.to_string(), version.to_string()))
        })
        .collect();
    assert!(expected.len() > 50, "{expected:?}");
    assert!(expected.contains(&("kiln-extra".into(), "1.0-1".into())));
    assert!(!expected.iter().any(|(n, _)| n == "e2fsprogs"));
    assert_eq!(
        sbom_packages(&sbom, "dpkg", "/var/lib/dpkg/status"),
        expected
    );

    let site = rootfs.join("usr/lib/python3/dist-packages");
    let pip = Command::new("python3")
        .args(["-m", "pip", "list", "--format=json", "--path"])
        .arg(&site)
        .output()
        .unwrap();
    assert!(pip.status.success(), "{}", text(&pip));
    let listed: Vec<Value> = serde_json::from_slice(&pip.stdout).unwrap();
    let expected: BTreeSet<(String, String)> = listed
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(expected.iter().any(|(n, _)| n == "pip"), "{expected:?}");
    assert!(!expected.iter().any(|(n, _)| n == "wheel"), "{expected:?}");
    assert_eq!(
        sbom_packages(&sbom, "python", "/usr/lib/python3/dist-packages/"),
        expected
    );

    assert_eq!(
        sbom_packages(&sbom, "npm", "/app/"),
        BTreeSet::from([("left-pad".to_string(), "1.3.0".to_string())])
    );

    // Files: exactly the regular files of the unpacked image (the base
    // layer's copies replaced or deleted by the upper layer gone).
    let spdx = &sbom["predicate"];
    let files = spdx["files"].as_array().unwrap();
    let listed: BTreeSet<String> = files
        .iter()
        .map(|f| f["fileName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), files.len(), "each file once");
    let on_disk: BTreeSet<String> = walkdir::WalkDir::new(&rootfs)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(&rootfs).unwrap();
            format!("./{}", rel.display())
        })
        .collect();
    assert!(on_disk.len() > 1000, "{}", on_disk.len());
    assert_eq!(listed, on_disk);
    assert!(!listed.contains("./etc/issue.net"));
    assert!(!listed.iter().any(|f| f.contains("/wheel-")));
    // Every file's checksums as sha1sum and sha256sum compute them on the
    // unpacked image (among them files the upper layer replaced, the
    // changed dpkg database, large binaries and hard links such as
    // /usr/bin/uncompress to /usr/bin/gunzip in the base layer's tar).
    for (i, (algorithm, tool)) in [("SHA1", "sha1sum"), ("SHA256", "sha256sum")]
        .into_iter()
        .enumerate()
    {
        let out = Command::new("find")
            .current_dir(&rootfs)
            .args([".", "-type", "f", "-exec", tool, "--zero", "{}", "+"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let sums: std::collections::BTreeMap<&str, &str> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|r| !r.is_empty())
            .map(|r| {
                let r = std::str::from_utf8(r).unwrap();
                let (sum, name) = r.split_once("  ").unwrap();
                (name, sum)
            })
            .collect();
        assert_eq!(sums.len(), files.len());
        for file in files {
            let name = file["fileName"].as_str().unwrap();
            assert_eq!(file["checksums"][i]["algorithm"], algorithm);
            assert_eq!(
                file["checksums"][i]["checksumValue"].as_str(),
                Some(sums[name]),
                "{name}"
            );
        }
    }
    // Who contains each file: the package whose database lists it (dpkg's
    // lists name /bin/bash, found at /usr/bin/bash through the merged-/usr
    // link; the RECORD of a Python distribution), else the image.
    let names: std::collections::BTreeMap<&str, &str> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["SPDXID"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut contained_by: std::collections::BTreeMap<&str, BTreeSet<&str>> = Default::default();
    for r in spdx["relationships"].as_array().unwrap() {
        if r["relationshipType"] == "CONTAINS" {
            let from = r["spdxElementId"].as_str().unwrap();
            if let Some(name) = names.get(from) {
                contained_by
                    .entry(r["relatedSpdxElement"].as_str().unwrap())
                    .or_default()
                    .insert(*name);
            }
        }
    }
    let by_name = |name: &str| {
        files
            .iter()
            .find(|f| f["fileName"] == name)
            .unwrap_or_else(|| panic!("{name} is listed"))
    };
    let containers = |name: &str| -> BTreeSet<&str> {
        let id = by_name(name)["SPDXID"].as_str().unwrap();
        contained_by.get(id).cloned().unwrap_or_default()
    };
    assert_eq!(containers("./usr/bin/bash"), BTreeSet::from(["bash"]));
    assert_eq!(containers("./usr/bin/dpkg"), BTreeSet::from(["dpkg"]));
    assert_eq!(
        containers("./usr/local/lib/python3.11/dist-packages/demo.py"),
        BTreeSet::from(["demo"])
    );
    let image = spdx["packages"][0]["name"].as_str().unwrap();
    assert_eq!(
        containers("./app/node_modules/left-pad/package.json"),
        BTreeSet::from([image])
    );
    for f in files {
        assert!(
            !containers(f["fileName"].as_str().unwrap()).is_empty(),
            "{f}"
        );
    }
}

#[test]
fn the_sbom_names_a_go_binarys_main_package_and_go_release() {
    // umoci is a Go program (a required test tool, Debian's build).
    let umoci = kiln_testkit::find_in_path("umoci").expect("umoci is needed: scripts/install-deps");
    let ctx =
        context("FROM scratch\nCOPY umoci /usr/local/bin/umoci\nCOPY notes /usr/local/bin/notes\n");
    fs::copy(&umoci, ctx.path().join("umoci")).unwrap();
    fs::write(ctx.path().join("notes"), "#!/bin/sh\n").unwrap();
    let files = tempfile::tempdir().unwrap();
    let sbom_file = files.path().join("sbom.json");
    let out = kiln(
        ctx.path(),
        &["--no-push", "--sbom-file", sbom_file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let sbom: Value = serde_json::from_slice(&fs::read(&sbom_file).unwrap()).unwrap();
    validate_spdx(&sbom["predicate"]);
    let go = sbom_packages(&sbom, "go", "/usr/local/bin/umoci");
    let names: Vec<&str> = go.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"github.com/opencontainers/umoci/cmd/umoci"),
        "{go:?}"
    );
    let stdlib = go.iter().find(|(n, _)| n == "stdlib").unwrap();
    assert!(stdlib.1.starts_with("go1."), "{stdlib:?}");
    assert_eq!(
        sbom["predicate"]["packages"].as_array().unwrap().len(),
        1 + go.len(),
        "the image, then only umoci's packages"
    );
}

#[test]
fn kiln_push_sends_a_saved_image_with_its_attestations() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&format!(
        "FROM {}\nRUN echo saved > /saved\n",
        reg.image_ref("busybox:latest")
    ));
    let saved = tempfile::tempdir().unwrap();
    let tar = saved.path().join("image.tar");
    let layout = saved.path().join("layout");
    let built_digest = saved.path().join("built-digest");
    let out = kiln(
        ctx.path(),
        &[
            "--no-push",
            "--provenance=mode=max",
            "--sbom",
            "--tar-path",
            tar.to_str().unwrap(),
            "--oci-layout-path",
            layout.to_str().unwrap(),
            "--digest-file",
            built_digest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for (path, tag) in [(&tar, "from-tar"), (&layout, "from-layout")] {
        let pushed_digest = saved.path().join(format!("{tag}-digest"));
        let out = Command::new(cargo_bin("kiln"))
            .arg("push")
            .arg(path)
            .args(["-d", &reg.image_ref(&format!("app:{tag}")), "--insecure"])
            .arg("--digest-file")
            .arg(&pushed_digest)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        // The very index the build made, with the image and its statements.
        let digest = fs::read_to_string(&pushed_digest).unwrap();
        assert_eq!(digest, fs::read_to_string(&built_digest).unwrap());
        assert_eq!(manifest_digest(&reg, &format!("app:{tag}")), digest);
        let (_, statements) = attached(&reg, "app", tag);
        assert_eq!(statements.len(), 2);
        validate_schema(&statements[0].1);
    }
}

#[test]
fn the_flags_take_buildxs_spellings() {
    let ctx = context("FROM scratch\n");
    let options = |args: &[&str]| -> Value {
        let out = Command::new(cargo_bin("kiln"))
            .args(["debug", "options", "--no-push", "-c"])
            .arg(ctx.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["output"]["attest"].clone()
    };
    assert_eq!(options(&[])["provenance"], Value::Null);
    assert_eq!(options(&[])["sbom"], false);
    assert_eq!(options(&["--provenance"])["provenance"], "mode=min");
    assert_eq!(options(&["--provenance=true"])["provenance"], "mode=min");
    assert_eq!(options(&["--provenance=1"])["provenance"], "mode=min");
    assert_eq!(
        options(&["--provenance=mode=max"])["provenance"],
        "mode=max"
    );
    assert_eq!(options(&["--provenance=false"])["provenance"], Value::Null);
    assert_eq!(options(&["--sbom"])["sbom"], true);
    assert_eq!(options(&["--sbom=false"])["sbom"], false);
    let with_file = options(&["--provenance-file", "p.json"]);
    assert_eq!(
        with_file["provenance"],
        Value::Null,
        "written, not attached"
    );
    assert_eq!(with_file["provenance_file"], "p.json");
    // As every boolean flag: a separate word is never taken as the value.
    let out = Command::new(cargo_bin("kiln"))
        .args(["build", "--no-push", "-c"])
        .arg(ctx.path())
        .args(["--sbom", "false"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_package_database_that_is_a_symlink_never_reads_the_builders_files() {
    // The image's dpkg status is a link to the status file of the machine
    // kiln runs on, which lists this machine's packages.
    let host_status = Path::new("/var/lib/dpkg/status");
    assert!(
        fs::read_to_string(host_status)
            .unwrap()
            .contains("Package: "),
        "this test needs the Debian host's dpkg database"
    );
    let ctx = context("FROM scratch\nCOPY root/ /\n");
    let dpkg = ctx.path().join("root/var/lib/dpkg");
    fs::create_dir_all(&dpkg).unwrap();
    std::os::unix::fs::symlink(host_status, dpkg.join("status")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/python3/dist-packages",
        ctx.path().join("root/site"),
    )
    .unwrap();
    let files = tempfile::tempdir().unwrap();
    let sbom_file = files.path().join("sbom.json");
    let out = kiln(
        ctx.path(),
        &["--no-push", "--sbom-file", sbom_file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let sbom: Value = serde_json::from_slice(&fs::read(&sbom_file).unwrap()).unwrap();
    let packages = sbom["predicate"]["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 1, "only the image itself: {packages:?}");
}

#[test]
fn referrers_format_pushes_oci_artifacts_and_the_fallback_tag() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&format!(
        "FROM {}\nRUN echo referred > /referred\n",
        reg.image_ref("busybox:latest")
    ));
    let files = tempfile::tempdir().unwrap();
    let digest_file = files.path().join("digest");
    let dest = reg.image_ref("app:1");
    let build = || {
        let out = kiln(
            ctx.path(),
            &[
                "-d",
                &dest,
                "--reproducible",
                "--provenance=mode=max",
                "--sbom",
                "--attestation-format=referrers",
                "--digest-file",
                digest_file.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    };
    build();
    // The tag names the image manifest itself, as without statements.
    let image = skopeo_inspect_raw(&dest, false).unwrap();
    assert_eq!(
        image["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let image_digest = manifest_digest(&reg, "app:1");
    assert_eq!(fs::read_to_string(&digest_file).unwrap(), image_digest);

    // This registry (distribution 2.8) has no referrers API: the fallback
    // tag sha256-<hex> holds the index of the artifacts.
    let fallback = format!("app:sha256-{}", &image_digest[7..]);
    let referrers = skopeo_inspect_raw(&reg.image_ref(&fallback), false).unwrap();
    assert_eq!(
        referrers["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = referrers["manifests"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2, "{referrers}");
    let mut predicates = Vec::new();
    for entry in &entries {
        assert_eq!(entry["artifactType"], "application/vnd.in-toto+json");
        let artifact = skopeo_inspect_raw(
            &format!(
                "{}@{}",
                reg.image_ref("app"),
                entry["digest"].as_str().unwrap()
            ),
            false,
        )
        .unwrap();
        assert_eq!(artifact["subject"]["digest"], image_digest.as_str());
        assert_eq!(
            artifact["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        let layer = &artifact["layers"][0];
        let statement: Value =
            serde_json::from_slice(&blob(&reg, "app", layer["digest"].as_str().unwrap())).unwrap();
        validate_schema(&statement);
        assert_eq!(
            format!(
                "sha256:{}",
                statement["subject"][0]["digest"]["sha256"]
                    .as_str()
                    .unwrap()
            ),
            image_digest
        );
        predicates.push(entry["annotations"]["in-toto.io/predicate-type"].clone());
    }
    assert_eq!(
        predicates,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );

    // A second build of the same image adds its statements to the
    // fallback index, keeping the first build's. Both are new: the SBOM's
    // namespace names the build, so a second build within the same second
    // (same image, same `created`) still writes a document of its own
    // rather than the first one again, which the index would hold once.
    build();
    assert_eq!(manifest_digest(&reg, "app:1"), image_digest);
    let referrers = skopeo_inspect_raw(&reg.image_ref(&fallback), false).unwrap();
    let again = referrers["manifests"].as_array().unwrap();
    assert_eq!(again.len(), 4, "{referrers}");
    assert_eq!(again[..2], entries[..]);
}

/// tests/fixtures/referrers_registry.py, a loopback stand-in for an OCI 1.1
/// registry (Debian's distribution 2.8 has no referrers API, and no
/// registry that has one is packaged), killed when dropped.
struct ReferrersRegistry {
    child: std::process::Child,
    port: u16,
}

impl ReferrersRegistry {
    fn start(extra: &[&str]) -> ReferrersRegistry {
        let mut child = Command::new("python3")
            .arg(build_common::fixture("referrers_registry.py"))
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the referrers registry");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().expect("the registry prints its port");
        ReferrersRegistry { child, port }
    }

    /// `GET path` on the registry, as JSON.
    fn get(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let out = Command::new("curl").args(["-fsS", &url]).output().unwrap();
        assert!(out.status.success(), "curl {url}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn get_bytes(&self, path: &str) -> Vec<u8> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let out = Command::new("curl").args(["-fsS", &url]).output().unwrap();
        assert!(out.status.success(), "curl {url}: {}", text(&out));
        out.stdout
    }

    /// Builds a one-file image to `app:1` with both statements as
    /// referrers; returns the image manifest's digest.
    fn build(&self) -> String {
        let ctx = context("FROM scratch\nCOPY hello /hello\n");
        fs::write(ctx.path().join("hello"), "referred\n").unwrap();
        let files = tempfile::tempdir().unwrap();
        let digest_file = files.path().join("digest");
        let out = kiln(
            ctx.path(),
            &[
                "-d",
                &format!("127.0.0.1:{}/app:1", self.port),
                "--provenance=mode=max",
                "--sbom",
                "--attestation-format=referrers",
                "--digest-file",
                digest_file.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        fs::read_to_string(&digest_file).unwrap()
    }
}

impl Drop for ReferrersRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Against a registry with the referrers API (the loopback stand-in of
/// tests/fixtures/referrers_registry.py, which answers the `OCI-Subject`
/// header of distribution spec 1.1): the artifacts name the image as their
/// subject, the registry's referrers API lists them, and no fallback tag
/// is written. The same stand-in without the API gets the tag.
#[test]
fn referrers_format_uses_the_referrers_api_where_the_registry_has_it() {
    let reg = ReferrersRegistry::start(&[]);
    let image_digest = reg.build();
    let tags = reg.get("/v2/app/tags/list");
    assert_eq!(tags["tags"], serde_json::json!(["1"]), "no fallback tag");
    let image = reg.get("/v2/app/manifests/1");
    assert_eq!(
        image["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let referrers = reg.get(&format!("/v2/app/referrers/{image_digest}"));
    let entries = referrers["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{referrers}");
    let mut predicates = BTreeSet::new();
    for entry in entries {
        assert_eq!(entry["artifactType"], "application/vnd.in-toto+json");
        let artifact = reg.get(&format!(
            "/v2/app/manifests/{}",
            entry["digest"].as_str().unwrap()
        ));
        assert_eq!(artifact["subject"]["digest"], image_digest.as_str());
        let layer = &artifact["layers"][0];
        let statement: Value = serde_json::from_slice(&reg.get_bytes(&format!(
            "/v2/app/blobs/{}",
            layer["digest"].as_str().unwrap()
        )))
        .unwrap();
        validate_schema(&statement);
        assert_eq!(
            format!(
                "sha256:{}",
                statement["subject"][0]["digest"]["sha256"]
                    .as_str()
                    .unwrap()
            ),
            image_digest
        );
        predicates.insert(statement["predicateType"].as_str().unwrap().to_string());
    }
    assert_eq!(
        predicates,
        BTreeSet::from([
            "https://slsa.dev/provenance/v1".to_string(),
            "https://spdx.dev/Document".to_string()
        ])
    );

    let old = ReferrersRegistry::start(&["--no-referrers"]);
    let image_digest = old.build();
    let fallback = format!("sha256-{}", &image_digest[7..]);
    let tags = old.get("/v2/app/tags/list");
    assert_eq!(tags["tags"], serde_json::json!(["1", fallback]));
    let index = old.get(&format!("/v2/app/manifests/{fallback}"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
}
