//! The files in examples/ work as written: each is read as YAML, its
//! structure is checked against what its platform (GitLab CI, Kubernetes,
//! GitHub Actions) needs, and the kiln command lines it holds are run
//! unchanged against a real registry with TLS and a password, as the
//! platform would run them: GitLab job scripts under busybox's shell in a
//! copy of kiln's debug image layout, the Job's container args passed to
//! `executor` with the secret and the workspace where the Job mounts them,
//! and the workflow's `run:` steps under bash.
//!
//! The platform's own variables (CI_REGISTRY_IMAGE, GITHUB_SHA, ...) are
//! set to test values pointing at the test registry; nothing in a command
//! line is edited except the absolute paths of kiln's image (`/kaniko`,
//! `/kiln`, `/busybox`, `/workspace`, ...), which are rebased into a temp
//! directory standing in for the container (the test cannot own `/` on a
//! shared machine), and the example hosts (`ghcr.io`, `registry.example.com`),
//! which become the test registry. The registry's certificate is signed by a
//! test CA that the stand-in image's CA bundle holds, so kiln verifies TLS
//! as it would against a public registry. Steps that cannot run here are
//! skipped by name, each with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin;
use assert_cmd::Command;
use kiln_testkit::{skopeo_inspect_with, Access, BaseImage, Flattened, InspectKind, Registry};
use serde_json::Value;
use tempfile::TempDir;

/// The registry account the examples log in with.
const USER: &str = "ci-builder";
const PASSWORD: &str = "examples-registry-secret-3c91";

/// Time limit for one job, step or Job container: a few small builds.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// The top-level names of kiln's image (see the repository's Dockerfile)
/// that the examples' absolute paths start with, rebased into the stand-in.
const IMAGE_ROOTS: &[&str] = &["kaniko", "kiln", "busybox", "workspace", "etc", "root"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An example file parsed as YAML, as JSON values (every key in these
/// files is a string).
fn example(rel: &str) -> Value {
    let path = repo().join("examples").join(rel);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: serde_norway::Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    serde_json::to_value(doc).unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

// ---------------------------------------------------------------------------
// kiln's image, as its Dockerfile lays it out.

/// One stage of the repository's Dockerfile: what a container of that
/// target gets.
#[derive(Default, Clone)]
struct Stage {
    env: Vec<(String, String)>,
    entrypoint: Option<Vec<String>>,
    workdir: Option<String>,
}

impl Stage {
    /// The value this image gives `name`.
    fn env_value(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("kiln's image sets no {name}"))
    }
}

/// The environment, entrypoint and working directory of kiln's image for
/// `target`, read from the repository's Dockerfile (ENV, ENTRYPOINT and
/// WORKDIR along the chain of stages), so the examples are checked against
/// the image they name, not against a copy of its layout in this file.
fn image_config(target: &str) -> Stage {
    let dockerfile = fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut stages: BTreeMap<String, Stage> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut logical = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (logical.is_empty() && line.is_empty()) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let words: Vec<&str> = logical.split_whitespace().collect();
        match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("FROM") if words.len() == 4 && words[2].eq_ignore_ascii_case("AS") => {
                // A stage FROM another stage inherits its settings.
                let stage = stages.get(words[1]).cloned().unwrap_or_default();
                stages.insert(words[3].to_string(), stage);
                current = Some(words[3].to_string());
            }
            Some("ENV") => {
                let stage = stages.get_mut(current.as_ref().unwrap()).unwrap();
                for kv in &words[1..] {
                    let (k, v) = kv.split_once('=').expect("ENV K=V");
                    stage.env.retain(|(old, _)| old != k);
                    stage.env.push((k.to_string(), v.to_string()));
                }
            }
            Some("ENTRYPOINT") => {
                let json = logical["ENTRYPOINT".len()..].trim();
                stages
                    .get_mut(current.as_ref().unwrap())
                    .unwrap()
                    .entrypoint =
                    Some(serde_json::from_str(json).expect("ENTRYPOINT in exec form"));
            }
            Some("WORKDIR") => {
                stages.get_mut(current.as_ref().unwrap()).unwrap().workdir =
                    Some(words[1].to_string());
            }
            _ => {}
        }
        logical.clear();
    }
    stages
        .remove(target)
        .unwrap_or_else(|| panic!("the Dockerfile has no stage {target}"))
}

/// A stand-in for a container of kiln's image: a temp directory holding the
/// image's layout (`/kiln`, `/kaniko/executor` and `/kaniko/warmer` as
/// symlinks to the kiln binary under test, `/kaniko/.docker`, `/workspace`,
/// a CA bundle, and for the debug target busybox in `/busybox`), into which
/// the examples' absolute paths are rebased.
struct Container {
    root: TempDir,
    image: Stage,
}

impl Container {
    fn new(target: &str, reg: &Registry) -> Self {
        let root = tempfile::Builder::new()
            .prefix("kiln-example-")
            .tempdir()
            .unwrap();
        let c = Container {
            root,
            image: image_config(target),
        };
        let kiln = cargo_bin("kiln");
        for d in ["kaniko/.docker", "workspace", "etc/ssl/certs", "root"] {
            fs::create_dir_all(c.path(&format!("/{d}"))).unwrap();
        }
        symlink(&kiln, c.path("/kiln")).unwrap();
        // kiln is Kaniko's executor and warmer when called by those names.
        symlink(&kiln, c.path("/kaniko/executor")).unwrap();
        symlink(&kiln, c.path("/kaniko/warmer")).unwrap();
        // The image's CA bundle trusts the test registry's CA, as a real one
        // trusts the CA of a registry with a public certificate.
        fs::copy(
            reg.ca_cert_path().unwrap(),
            c.path("/etc/ssl/certs/ca-certificates.crt"),
        )
        .unwrap();
        if target == "debug" {
            // busybox with one symlink per applet, as the debug stage makes it.
            let dir = c.path("/busybox");
            fs::create_dir_all(&dir).unwrap();
            let busybox = kiln_testkit::find_in_path("busybox").expect("busybox on PATH");
            symlink(&busybox, dir.join("busybox")).unwrap();
            let list = std::process::Command::new(&busybox)
                .arg("--list")
                .output()
                .unwrap();
            for applet in String::from_utf8(list.stdout).unwrap().lines() {
                if applet != "busybox" && !applet.is_empty() {
                    symlink("busybox", dir.join(applet)).unwrap();
                }
            }
        }
        c
    }

    /// Where the image's absolute `path` is in the stand-in.
    fn path(&self, abs: &str) -> PathBuf {
        self.root.path().join(abs.trim_start_matches('/'))
    }

    /// `text` with every absolute path into the image (see [`IMAGE_ROOTS`])
    /// rebased into the stand-in. A path starts after a blank, a quote, `=`,
    /// `:`, `(` or a URL's `://` (`dir:///workspace`).
    fn rebase(&self, text: &str) -> String {
        let root = self.root.path().display().to_string();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            let before = &text[..i];
            let starts_path = rest.starts_with('/')
                && (before.is_empty()
                    || before.ends_with("://")
                    || before.ends_with([' ', '\t', '\n', '"', '\'', '=', ':', '(']));
            if starts_path {
                let hit = IMAGE_ROOTS.iter().find(|name| {
                    rest[1..].starts_with(*name)
                        && rest[1 + name.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| "/ \t\n\"':;".contains(c))
                });
                if hit.is_some() {
                    out.push_str(&root);
                }
            }
            let ch = rest.chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
        out
    }

    /// The environment the image gives its processes, its paths rebased.
    /// `KANIKO_DIR` is added: in the real image kiln works under `/kaniko`
    /// because that directory exists and is writable, a default the
    /// stand-in can only give by naming it.
    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .image
            .env
            .iter()
            .map(|(k, v)| (k.clone(), self.rebase(v)))
            .collect();
        env.push((
            "KANIKO_DIR".into(),
            self.path("/kaniko").display().to_string(),
        ));
        env
    }

    /// Private build directories left in `/kaniko`: builds remove theirs.
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.path("/kaniko"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("build-"))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Checks shared by the three examples.

/// The registry every example pushes to, with the busybox base the test
/// Dockerfiles start from.
fn registry() -> Registry {
    let reg = Registry::tls_with_auth(USER, PASSWORD).unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    reg
}

/// A context whose image has a file of its own (`/srv/NAME.txt`, copied) and
/// one made by a RUN step (`/srv/NAME.built`, the step the cache serves).
fn write_context(dir: &Path, reg: &Registry, name: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(format!("{name}.txt")), format!("{name} source\n")).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {host}/busybox:latest\n\
             COPY {name}.txt /srv/{name}.txt\n\
             RUN echo \"{name} built from $(cat /srv/{name}.txt)\" > /srv/{name}.built\n",
            host = reg.host()
        ),
    )
    .unwrap();
}

/// skopeo's summary of `reference` (`HOST/repo:tag`) on `reg`.
fn inspect(reg: &Registry, reference: &str) -> Value {
    skopeo_inspect_with(reference, &Access::for_registry(reg), InspectKind::Summary)
        .unwrap_or_else(|e| panic!("{reference} is not in the registry: {e:#}"))
}

fn layers(summary: &Value) -> Vec<String> {
    summary["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| s(l).to_string())
        .collect()
}

/// Checks that `reference` holds the base's layers plus the two of
/// [`write_context`]'s `name`, with its own files and none of `others`',
/// and returns its layers.
fn assert_image(reg: &Registry, reference: &str, name: &str, others: &[&str]) -> Vec<String> {
    let base = layers(&inspect(reg, &reg.image_ref("busybox:latest")));
    let own = layers(&inspect(reg, reference));
    assert_eq!(
        own.len(),
        base.len() + 2,
        "{reference}: the base's layers, then one for COPY and one for RUN: {own:?}"
    );
    assert_eq!(
        own[..base.len()],
        base[..],
        "{reference} starts with the base"
    );
    let host = reg.host();
    let name_on_reg = reference
        .strip_prefix(&format!("{host}/"))
        .expect("a reference on the test registry");
    let img = Flattened::from_registry(reg, name_on_reg).unwrap();
    assert_eq!(
        img.text(&format!("/srv/{name}.txt")).as_deref(),
        Some(format!("{name} source\n").as_str()),
        "{reference}"
    );
    assert_eq!(
        img.text(&format!("/srv/{name}.built")).as_deref(),
        Some(format!("{name} built from {name} source\n").as_str()),
        "{reference}"
    );
    assert!(img.get("/bin/busybox").is_some(), "{reference}: base files");
    for other in others.iter().filter(|o| **o != name) {
        for file in [format!("/srv/{other}.txt"), format!("/srv/{other}.built")] {
            assert!(
                img.get(&file).is_none(),
                "{reference} has {file}, a file of another build"
            );
        }
    }
    own
}

/// Checks that a rebuild with the cache on (`after`) has every layer the
/// first build (`before`) had: the same base layers and the same RUN layer,
/// taken from the cache. The COPY layer is made again (kiln caches COPY
/// layers only with --cache-copy-layers), so its timestamps may differ.
fn assert_same_from_cache(before: &[String], after: &[String], what: &str) {
    assert_eq!(
        before.len(),
        after.len(),
        "{what}: {before:?} then {after:?}"
    );
    let (base, run) = (before.len() - 2, before.len() - 1);
    assert_eq!(before[..base], after[..base], "{what}: the base layers");
    assert_eq!(
        before[run], after[run],
        "{what}: the RUN layer from the cache"
    );
}

/// Steps reported as served by the cache in a text log.
fn cached_steps(log: &str) -> usize {
    log.lines().filter(|l| l.ends_with(": CACHED")).count()
}

/// The `--flags` that `help` (a command's `--help` output) lists.
fn flags_in_help(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if let Some(name) = word.strip_prefix("--") {
            if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                flags.insert(format!("--{name}"));
            }
        }
    }
    flags
}

/// `--help` of kiln called as `program` (a path whose file name is
/// `executor` or `kiln`) with `subcommand`.
fn help_of(program: &Path, subcommand: &[&str]) -> BTreeSet<String> {
    let out = Command::new(program)
        .args(subcommand)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let flags = flags_in_help(&String::from_utf8_lossy(&out.stdout));
    assert!(flags.contains("--help"), "{flags:?}");
    flags
}

/// Every kiln command line in `script` (a shell script), as the words after
/// the program: commands whose program is `.../executor` or `.../kiln`.
fn kiln_commands(script: &str) -> Vec<(String, Vec<String>)> {
    let joined = script.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_string())
            .collect();
        if let Some(i) = words
            .iter()
            .position(|w| w.ends_with("/executor") || w.ends_with("/kiln"))
        {
            found.push((words[i].clone(), words[i + 1..].to_vec()));
        }
    }
    found
}

/// Fails unless every flag in `args` is one `kiln` (called as `name`, with
/// the leading non-flag words of `args` as the subcommand) takes.
fn assert_known_flags(name: &str, args: &[String], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join(name);
    symlink(cargo_bin("kiln"), &program).unwrap();
    let subcommand: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let known = help_of(&program, &subcommand);
    let given: Vec<&String> = args.iter().filter(|a| a.starts_with("--")).collect();
    assert!(!given.is_empty(), "{what}: no flags in {args:?}");
    for flag in given {
        let name = flag.split('=').next().unwrap();
        assert!(
            known.contains(name),
            "{what}: `{name}` is not a flag of `{}`",
            [program.file_name().unwrap().to_string_lossy().as_ref()]
                .into_iter()
                .chain(subcommand.iter().copied())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// The shell variables `script` reads (`$NAME`, `${NAME...}`) that it does
/// not set itself (`NAME=...`, `for NAME in`) and `defined` lacks: a
/// misspelt CI variable expands to nothing in a shell, silently.
fn undefined_vars(script: &str, defined: &BTreeSet<String>) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut assigned: BTreeSet<String> = BTreeSet::new();
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || c == ';')
        .collect();
    for (i, w) in words.iter().enumerate() {
        if *w == "for" {
            if let Some(n) = words.get(i + 1) {
                assigned.insert(n.to_string());
            }
        }
        if let Some((n, _)) = w.split_once('=') {
            if !n.is_empty()
                && n.chars().all(is_name)
                && n.starts_with(|c: char| !c.is_ascii_digit())
            {
                assigned.insert(n.to_string());
            }
        }
    }
    let mut missing = BTreeSet::new();
    let mut rest = script;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name_part = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = name_part.chars().take_while(|c| is_name(*c)).collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if !assigned.contains(&name) && !defined.contains(&name) {
            missing.insert(name);
        }
    }
    missing.into_iter().collect()
}

fn names(pairs: &[(String, String)]) -> BTreeSet<String> {
    pairs.iter().map(|(k, _)| k.clone()).collect()
}

// ---------------------------------------------------------------------------
// GitLab CI: examples/gitlab-ci/.gitlab-ci.yml

const GITLAB_CI: &str = "gitlab-ci/.gitlab-ci.yml";

/// Top-level keys of a .gitlab-ci.yml that are not jobs.
const GITLAB_KEYWORDS: &[&str] = &[
    "stages",
    "variables",
    "default",
    "include",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

/// The short commit id the pipelines build.
const SHORT_SHA: &str = "1a2b3c4d";

/// `over` merged onto `base` as GitLab's `extends` does: maps deeply, every
/// other value replaced.
fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut m = b.clone();
            for (k, v) in o {
                let merged = match m.get(k) {
                    Some(old) => merge(old, v),
                    None => v.clone(),
                };
                m.insert(k.clone(), merged);
            }
            Value::Object(m)
        }
        _ => over.clone(),
    }
}

/// The pipeline's jobs (hidden `.templates` left out), `extends` resolved.
fn gitlab_jobs(doc: &Value) -> BTreeMap<String, Value> {
    fn resolve(doc: &Value, job: &Value) -> Value {
        let parents: Vec<&str> = match &job["extends"] {
            Value::Null => vec![],
            Value::String(p) => vec![p],
            Value::Array(ps) => ps.iter().map(s).collect(),
            other => panic!("extends: {other}"),
        };
        let mut out = Value::Object(Default::default());
        for p in parents {
            let parent = doc
                .get(p)
                .unwrap_or_else(|| panic!("extends names {p}, which is not in the file"));
            out = merge(&out, &resolve(doc, parent));
        }
        let mut out = merge(&out, job);
        out.as_object_mut().unwrap().remove("extends");
        out
    }
    doc.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('.') && !GITLAB_KEYWORDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), resolve(doc, v)))
        .collect()
}

fn string_list(v: &Value, what: &str) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::String(x) => vec![x.clone()],
        Value::Array(xs) => xs.iter().map(|x| s(x).to_string()).collect(),
        other => panic!("{what}: {other}"),
    }
}

/// The job's shell script as GitLab's runner runs it: `before_script` then
/// `script`, one command per entry, stopping at the first that fails.
fn gitlab_script(job: &Value, name: &str) -> String {
    let mut lines = vec!["set -eo pipefail".to_string()];
    lines.extend(string_list(&job["before_script"], name));
    lines.extend(string_list(&job["script"], name));
    lines.join("\n")
}

/// The pipeline's and the job's `variables:`.
fn gitlab_variables(doc: &Value, job: &Value) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for block in [&doc["variables"], &job["variables"]] {
        if let Some(m) = block.as_object() {
            for (k, v) in m {
                let v = match v {
                    Value::String(x) => x.clone(),
                    Value::Object(o) => s(&o["value"]).to_string(),
                    other => other.to_string(),
                };
                vars.retain(|(old, _): &(String, String)| old != k);
                vars.push((k.clone(), v));
            }
        }
    }
    vars
}

/// The variables GitLab gives every job, for a project `group/project` on
/// the container registry at `host`, checked out at `project_dir`, in a
/// pipeline started by `source` (`push`, `schedule`, ...).
fn gitlab_predefined(host: &str, project_dir: &Path, source: &str) -> Vec<(String, String)> {
    [
        ("CI", "true".to_string()),
        ("GITLAB_CI", "true".to_string()),
        ("CI_REGISTRY", host.to_string()),
        ("CI_REGISTRY_IMAGE", format!("{host}/group/project")),
        ("CI_REGISTRY_USER", USER.to_string()),
        ("CI_REGISTRY_PASSWORD", PASSWORD.to_string()),
        ("CI_COMMIT_SHA", format!("{SHORT_SHA}{}", "0".repeat(32))),
        ("CI_COMMIT_SHORT_SHA", SHORT_SHA.to_string()),
        ("CI_PROJECT_DIR", project_dir.display().to_string()),
        ("CI_PIPELINE_SOURCE", source.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs job `name` as GitLab's runner would in a fresh container of kiln's
/// debug image: the script under the image's shell, in the project
/// directory, with the image's environment plus the job's variables.
fn run_gitlab_job(
    doc: &Value,
    name: &str,
    reg: &Registry,
    project: &Path,
    source: &str,
) -> (Output, Container) {
    let job = &gitlab_jobs(doc)[name];
    let c = Container::new("debug", reg);
    let script = c.rebase(&gitlab_script(job, name));
    let out = Command::new(c.path("/busybox/sh"))
        .arg("-c")
        .arg(&script)
        .env_clear()
        .envs(c.env())
        .envs(gitlab_variables(doc, job))
        .envs(gitlab_predefined(&reg.host(), project, source))
        .current_dir(project)
        .timeout(JOB_TIMEOUT)
        .output()
        .unwrap();
    (out, c)
}

#[test]
fn gitlab_ci_jobs_use_the_debug_image_and_known_flags() {
    let doc = example(GITLAB_CI);
    let stages = string_list(&doc["stages"], "stages");
    let jobs = gitlab_jobs(&doc);
    for expected in ["app", "images", "prune-cache"] {
        assert!(jobs.contains_key(expected), "no job {expected}");
    }
    // Every variable a script reads is GitLab's, the file's, or the image's.
    let predefined = names(&gitlab_predefined(
        "registry.example.com",
        Path::new("/builds/group/project"),
        "push",
    ));
    let image = image_config("debug");
    for (name, job) in &jobs {
        assert!(
            stages.contains(&s(&job["stage"]).to_string()),
            "{name}: stage {} is not in stages {stages:?}",
            job["stage"]
        );
        // A `script:` needs a shell: the debug image, entered with the
        // entrypoint cleared so the runner's shell starts instead of the
        // executor.
        let image_name = s(&job["image"]["name"]);
        assert!(image_name.ends_with(":debug"), "{name}: {image_name}");
        assert_eq!(
            job["image"]["entrypoint"],
            serde_json::json!([""]),
            "{name}"
        );
        let script = string_list(&job["script"], name);
        assert!(!script.is_empty(), "{name} has no script");

        let full = gitlab_script(job, name);
        let mut defined = predefined.clone();
        defined.extend(names(&gitlab_variables(&doc, job)));
        defined.extend(image.env.iter().map(|(k, _)| k.clone()));
        let missing = undefined_vars(&full, &defined);
        assert!(
            missing.is_empty(),
            "{name} reads unset {missing:?}:\n{full}"
        );

        let commands = kiln_commands(&full);
        assert!(!commands.is_empty(), "{name} runs no kiln command");
        for (program, args) in commands {
            // The image has kiln at exactly these paths.
            assert!(
                program == "/kaniko/executor" || program == "/kiln",
                "{name}: {program}"
            );
            let called = Path::new(&program).file_name().unwrap().to_string_lossy();
            assert_known_flags(&called, &args, name);
        }
    }
    // The login writes where kiln's image points DOCKER_CONFIG.
    let docker_config = image.env_value("DOCKER_CONFIG").trim_end_matches('/');
    let login = string_list(&jobs["app"]["before_script"], "before_script").join("\n");
    assert!(
        login.contains(&format!("> {docker_config}/config.json")),
        "{login}"
    );
    // The prune job runs only from scheduled pipelines.
    let rules = jobs["prune-cache"]["rules"].to_string();
    assert!(
        rules.contains("$CI_PIPELINE_SOURCE == \\\"schedule\\\""),
        "{rules}"
    );
}

#[test]
fn gitlab_ci_job_per_image_pushes_both_tags_and_the_next_pipeline_hits_the_cache() {
    let doc = example(GITLAB_CI);
    let reg = registry();
    let project = tempfile::tempdir().unwrap();
    write_context(project.path(), &reg, "app");
    let repo = format!("{}/group/project", reg.host());

    let (cold, c) = run_gitlab_job(&doc, "app", &reg, project.path(), "push");
    let log = text(&cold);
    assert!(cold.status.success(), "app job failed:\n{log}");
    assert_eq!(cached_steps(&log), 0, "nothing cached yet:\n{log}");
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
    assert!(!log.contains(PASSWORD), "the password was printed:\n{log}");
    let first = assert_image(&reg, &format!("{repo}:{SHORT_SHA}"), "app", &[]);
    let digest = s(&inspect(&reg, &format!("{repo}:{SHORT_SHA}"))["Digest"]).to_string();
    assert_eq!(
        s(&inspect(&reg, &format!("{repo}:latest"))["Digest"]),
        digest,
        "both destinations are the same image"
    );
    // The job's artifact names the pushed image.
    let artifact = fs::read_to_string(project.path().join("app.digest")).unwrap();
    assert_eq!(artifact.trim(), digest);

    // The next pipeline, in a fresh container, takes the RUN from the cache
    // and pushes the same layers.
    let (warm, _) = run_gitlab_job(&doc, "app", &reg, project.path(), "push");
    let log = text(&warm);
    assert!(warm.status.success(), "app job failed:\n{log}");
    assert_eq!(cached_steps(&log), 1, "the RUN step is cached:\n{log}");
    let second = assert_image(&reg, &format!("{repo}:{SHORT_SHA}"), "app", &[]);
    assert_same_from_cache(&first, &second, "app");
}

#[test]
fn gitlab_ci_several_images_in_one_job_keep_their_own_files_and_layers_with_the_cache() {
    let doc = example(GITLAB_CI);
    let reg = registry();
    let images: Vec<String> = s(&doc["variables"]["IMAGES"])
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(images.len() >= 2, "several images: {images:?}");
    let all: Vec<&str> = images.iter().map(String::as_str).collect();
    let project = tempfile::tempdir().unwrap();
    for name in &images {
        write_context(&project.path().join(name), &reg, name);
    }
    let reference = |name: &str| format!("{}/group/project/{name}:{SHORT_SHA}", reg.host());

    let (cold, c) = run_gitlab_job(&doc, "images", &reg, project.path(), "push");
    let log = text(&cold);
    assert!(cold.status.success(), "images job failed:\n{log}");
    assert_eq!(cached_steps(&log), 0, "nothing cached yet:\n{log}");
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
    let first: Vec<Vec<String>> = images
        .iter()
        .map(|name| assert_image(&reg, &reference(name), name, &all))
        .collect();

    // The scheduled prune goes through every image's cache repository and
    // keeps the entries, which are younger than two weeks.
    let (prune, _) = run_gitlab_job(&doc, "prune-cache", &reg, project.path(), "schedule");
    let log = text(&prune);
    assert!(prune.status.success(), "prune-cache failed:\n{log}");
    for name in &images {
        let repo = format!("{}/group/project/{name}/cache: ", reg.host());
        let line = log
            .lines()
            .find_map(|l| l.strip_prefix(&repo))
            .unwrap_or_else(|| panic!("prune-cache does not prune {repo}\n{log}"));
        let counts: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        // examined N entries, deleted 0, kept N; skipped 0 other tags
        assert!(
            counts.len() == 4 && counts[0] > 0 && counts[1] == 0 && counts[2] == counts[0],
            "{repo}{line}"
        );
    }

    // Again, cache on: every image's RUN comes from its cache repository,
    // and every image still has all of its layers, the later ones too.
    let (warm, _) = run_gitlab_job(&doc, "images", &reg, project.path(), "push");
    let log = text(&warm);
    assert!(warm.status.success(), "images job failed:\n{log}");
    assert_eq!(cached_steps(&log), images.len(), "one RUN each:\n{log}");
    for (name, before) in images.iter().zip(&first) {
        let after = assert_image(&reg, &reference(name), name, &all);
        assert_same_from_cache(before, &after, name);
    }
}

// ---------------------------------------------------------------------------
// Kubernetes: examples/kubernetes/job.yaml

/// What `kubectl create secret docker-registry regcred --docker-server=HOST
/// --docker-username=U --docker-password=P` stores under `.dockerconfigjson`.
fn dockerconfigjson(reg: &Registry) -> String {
    let creds = reg.credentials().unwrap();
    serde_json::json!({
        "auths": { reg.host(): {
            "username": creds.username,
            "password": creds.password,
            "auth": creds.basic_auth_token(),
        } }
    })
    .to_string()
}

/// The Job's `kiln` container and its pod spec.
fn kiln_container(doc: &Value) -> (&Value, &Value) {
    let pod = &doc["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container builds");
    (&containers[0], pod)
}

#[test]
fn kubernetes_job_runs_the_executor_with_the_secret_where_docker_config_points() {
    let doc = example("kubernetes/job.yaml");
    assert_eq!(doc["apiVersion"], "batch/v1");
    assert_eq!(doc["kind"], "Job");
    assert!(doc["metadata"]["name"].is_string());
    let (container, pod) = kiln_container(&doc);
    // A Job's pods must not restart in place.
    assert!(
        ["Never", "OnFailure"].contains(&s(&pod["restartPolicy"])),
        "{}",
        pod["restartPolicy"]
    );
    assert!(s(&container["image"]).contains("/kiln:"), "kiln's image");
    // No `command`: the image's entrypoint runs, which is the executor.
    assert!(container.get("command").is_none());
    let image = image_config("release");
    assert_eq!(
        image.entrypoint.as_deref(),
        Some(&["/kaniko/executor".to_string()][..])
    );
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| s(a).to_string())
        .collect();
    assert!(
        args.iter().all(|a| a.starts_with("--")),
        "only flags: {args:?}"
    );
    assert_known_flags("executor", &args, "job.yaml args");
    for needed in ["--cache=true", "--cache-repo="] {
        assert!(
            args.iter().any(|a| a.starts_with(needed)),
            "{needed}: {args:?}"
        );
    }

    // Where each volume is mounted in the kiln container.
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let mounts: Vec<(&str, &str, bool)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                s(&m["name"]),
                s(&m["mountPath"]),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    // The secret's .dockerconfigjson lands as config.json in DOCKER_CONFIG.
    let docker_config = image.env_value("DOCKER_CONFIG").trim_end_matches('/');
    let (secret_name, secret_path, read_only) = mounts
        .iter()
        .copied()
        .find(|(n, _, _)| volumes[n].get("secret").is_some())
        .expect("a secret volume mounted in the kiln container");
    assert_eq!(secret_path.trim_end_matches('/'), docker_config);
    assert!(read_only, "credentials are mounted read-only");
    let secret = &volumes[secret_name]["secret"];
    assert!(secret["secretName"].is_string());
    let items = secret["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["key"] == ".dockerconfigjson" && i["path"] == "config.json"),
        "{items:?}"
    );
    // The checkout goes to the volume the context is read from.
    let context = args
        .iter()
        .find_map(|a| a.strip_prefix("--context="))
        .unwrap();
    let context_dir = context.strip_prefix("dir://").unwrap_or(context);
    let (workspace, _, _) = mounts
        .iter()
        .copied()
        .find(|(_, p, _)| *p == context_dir)
        .expect("the context is a mounted volume");
    let init = &pod["initContainers"][0];
    assert!(
        init["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == workspace && m["mountPath"] == context_dir),
        "the init container fills the context volume"
    );

    // Now the Job itself, twice, each time in a fresh pod.
    let reg = registry();
    let run = || {
        let c = Container::new("release", &reg);
        for (name, path, _) in &mounts {
            let dir = c.path(path);
            fs::create_dir_all(&dir).unwrap();
            if let Some(secret) = volumes[name].get("secret") {
                for item in secret["items"].as_array().unwrap() {
                    assert_eq!(item["key"], ".dockerconfigjson", "regcred's only key");
                    fs::write(dir.join(s(&item["path"])), dockerconfigjson(&reg)).unwrap();
                }
            }
        }
        // Skipped: the `checkout` init container clones the project from a
        // git server that does not exist here; the test writes the project
        // where the clone would land.
        write_context(&c.path(context_dir), &reg, "app");
        let args: Vec<String> = args
            .iter()
            .map(|a| c.rebase(&a.replace("registry.example.com", &reg.host())))
            .collect();
        let entrypoint = image.entrypoint.as_ref().unwrap();
        let out = Command::new(c.path(&entrypoint[0]))
            .args(&args)
            .env_clear()
            .envs(c.env())
            .current_dir(c.path(image.workdir.as_deref().unwrap_or("/")))
            .timeout(JOB_TIMEOUT)
            .output()
            .unwrap();
        assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
        out
    };
    let destination = args
        .iter()
        .find_map(|a| a.strip_prefix("--destination="))
        .unwrap()
        .replace("registry.example.com", &reg.host());
    // `--log-format=json`: every line is an event; count the cache hits.
    let step_cached = |out: &Output| {
        let log = text(out);
        log.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}"))
            })
            .filter(|e| e["event"] == "step_cached")
            .count()
    };

    let cold = run();
    assert!(cold.status.success(), "the Job failed:\n{}", text(&cold));
    assert_eq!(step_cached(&cold), 0, "{}", text(&cold));
    let first = assert_image(&reg, &destination, "app", &[]);
    let warm = run();
    assert!(warm.status.success(), "the Job failed:\n{}", text(&warm));
    assert_eq!(
        step_cached(&warm),
        1,
        "the RUN from the cache:\n{}",
        text(&warm)
    );
    let second = assert_image(&reg, &destination, "app", &[]);
    assert_same_from_cache(&first, &second, "the Job's image");
}

// ---------------------------------------------------------------------------
// GitHub Actions: examples/github-actions/build.yml

/// Steps that cannot run here, by `uses:` action or `name:`, and why. The
/// test does what each would have left behind.
const ACTIONS_SKIPPED: &[(&str, &str)] = &[
    (
        "actions/checkout",
        "clones from GitHub; the test writes the project into GITHUB_WORKSPACE",
    ),
    (
        "actions/cache",
        "needs the Actions cache service; the test puts kiln where a restore puts it, \
         and checks the key names the resolved commit",
    ),
    (
        "Install kiln",
        "`cargo install --git` builds kiln from GitHub for minutes; the test checks it \
         installs the commit the cache key names",
    ),
];

/// The repository the workflow runs in: capitals on purpose, which GHCR
/// refuses and the workflow lowers.
const GITHUB_REPOSITORY: &str = "Kiln-Test/App";
const GITHUB_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// The values `${{ ... }}` expressions in the workflow can name here.
struct Expressions {
    env: BTreeMap<String, String>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
}

impl Expressions {
    fn eval(&self, expr: &str) -> Option<String> {
        let parts: Vec<&str> = expr.split('.').collect();
        match parts.as_slice() {
            ["secrets", "GITHUB_TOKEN"] => Some(PASSWORD.to_string()),
            ["github", "sha"] => Some(GITHUB_SHA.to_string()),
            ["github", "repository"] => Some(GITHUB_REPOSITORY.to_string()),
            ["runner", "os"] => Some("Linux".to_string()),
            ["runner", "arch"] => Some("X64".to_string()),
            ["env", name] => self.env.get(*name).cloned(),
            ["steps", id, "outputs", name] => self.outputs.get(*id)?.get(*name).cloned(),
            _ => None,
        }
    }

    /// `text` with every `${{ expr }}` replaced by its value; an expression
    /// this test cannot evaluate fails it.
    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("unclosed ${{") + start;
            let expr = rest[start + 3..end].trim();
            out.push_str(
                &self
                    .eval(expr)
                    .unwrap_or_else(|| panic!("unknown expression {expr:?} in {text:?}")),
            );
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

fn steps(doc: &Value) -> &Vec<Value> {
    doc["jobs"]["image"]["steps"].as_array().expect("steps")
}

/// Why a step is skipped, if it is.
fn skipped(step: &Value) -> Option<&'static str> {
    ACTIONS_SKIPPED.iter().find_map(|(key, why)| {
        let uses = step["uses"].as_str().unwrap_or_default();
        let hit = uses.split('@').next() == Some(*key) || step["name"].as_str() == Some(*key);
        hit.then_some(*why)
    })
}

/// The variables GitHub gives every step, for `dirs`.
fn github_defaults(dirs: &ActionsDirs) -> Vec<(String, String)> {
    let p = |p: &Path| p.display().to_string();
    vec![
        ("CI".into(), "true".into()),
        ("GITHUB_ACTIONS".into(), "true".into()),
        ("GITHUB_ACTOR".into(), USER.into()),
        ("GITHUB_REPOSITORY".into(), GITHUB_REPOSITORY.into()),
        ("GITHUB_SHA".into(), GITHUB_SHA.into()),
        ("GITHUB_WORKSPACE".into(), p(dirs.workspace.path())),
        ("GITHUB_STEP_SUMMARY".into(), p(&dirs.summary())),
        ("RUNNER_TEMP".into(), p(dirs.temp.path())),
        ("RUNNER_OS".into(), "Linux".into()),
        ("HOME".into(), p(dirs.home.path())),
    ]
}

/// One runner: the checkout, `RUNNER_TEMP`, the runner user's home (where
/// the cache restores kiln), root's home, and a `sudo` on PATH.
struct ActionsDirs {
    workspace: TempDir,
    temp: TempDir,
    home: TempDir,
    root_home: TempDir,
    bin: TempDir,
}

impl ActionsDirs {
    fn new(reg: &Registry) -> Self {
        let d = ActionsDirs {
            workspace: tempfile::tempdir().unwrap(),
            temp: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            root_home: tempfile::tempdir().unwrap(),
            bin: tempfile::tempdir().unwrap(),
        };
        // What actions/checkout leaves: the project.
        write_context(d.workspace.path(), reg, "app");
        // What actions/cache restores (or Install kiln makes): kiln in
        // ~/.cargo/bin.
        let cargo_bin_dir = d.home.path().join(".cargo/bin");
        fs::create_dir_all(&cargo_bin_dir).unwrap();
        symlink(cargo_bin("kiln"), cargo_bin_dir.join("kiln")).unwrap();
        // The test already runs as root, so `sudo` only has to reset the
        // environment as the runner's sudo does (env_reset: root's HOME, and
        // nothing of the caller's but what the command line sets), so that
        // a variable the step forgets to hand over is missing here too.
        // SSL_CERT_FILE stands in for the runner's system CA store, which
        // root trusts as well; TMPDIR keeps kiln's working directory in the
        // test's temp space.
        let sudo = d.bin.path().join("sudo");
        fs::write(
            &sudo,
            format!(
                "#!/bin/sh\nexec env -i PATH=\"$PATH\" HOME='{}' SSL_CERT_FILE=\"$SSL_CERT_FILE\" \
                 TMPDIR=\"$TMPDIR\" \"$@\"\n",
                d.root_home.path().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&sudo, fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn summary(&self) -> PathBuf {
        self.temp.path().join("step-summary.md")
    }
}

/// A local git repository with one commit on `branch`, and that commit.
fn kiln_source(branch: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.com"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q", "-b", branch]);
    git(&["commit", "-q", "--allow-empty", "-m", "kiln"]);
    let sha = git(&["rev-parse", "HEAD"]);
    (dir, sha)
}

#[test]
fn github_actions_workflow_caches_kiln_by_commit_and_builds_and_pushes() {
    let doc = example("github-actions/build.yml");
    assert!(doc["on"]["push"].is_object(), "runs on push: {}", doc["on"]);
    assert_eq!(
        doc["permissions"]["packages"], "write",
        "GHCR pushes need it"
    );
    assert!(s(&doc["jobs"]["image"]["runs-on"]).starts_with("ubuntu-"));
    let steps = steps(&doc);
    for (key, _) in ACTIONS_SKIPPED {
        assert!(
            steps.iter().any(|st| skipped(st).is_some()
                && (st["name"] == *key
                    || st["uses"].as_str().unwrap_or_default().starts_with(key))),
            "the skip list names {key}, which the workflow no longer has"
        );
    }
    let workflow_env: BTreeMap<String, String> = doc["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), s(v).to_string()))
        .collect();

    let reg = registry();
    let (kiln_src, kiln_sha) = kiln_source(&workflow_env["KILN_BRANCH"]);
    let run_workflow = || {
        let dirs = ActionsDirs::new(&reg);
        let mut exprs = Expressions {
            env: workflow_env.clone(),
            outputs: BTreeMap::new(),
        };
        let path = format!(
            "{}:{}",
            dirs.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut logs = String::new();
        for (i, step) in steps.iter().enumerate() {
            let label = step["name"]
                .as_str()
                .or(step["uses"].as_str())
                .unwrap()
                .to_string();
            if let Some(why) = skipped(step) {
                logs.push_str(&format!("skipped {label}: {why}\n"));
                continue;
            }
            let run = s(&step["run"]);
            let step_env: Vec<(String, String)> = step["env"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), exprs.expand(s(v))))
                        .collect()
                })
                .unwrap_or_default();
            let output_file = dirs.temp.path().join(format!("output-{i}"));
            fs::write(&output_file, "").unwrap();
            let script = dirs.temp.path().join(format!("step-{i}.sh"));
            let body = exprs
                .expand(run)
                .replace("ghcr.io", &reg.host())
                .to_string();
            fs::write(&script, &body).unwrap();
            // `git ls-remote https://github.com/KILN_REPO` reaches the local
            // repository instead, through git's own URL rewriting.
            let github_url = format!("https://github.com/{}", workflow_env["KILN_REPO"]);
            let mut defined = names(&github_defaults(&dirs));
            defined.insert("GITHUB_OUTPUT".into());
            defined.extend(workflow_env.keys().cloned());
            defined.extend(names(&step_env));
            let missing = undefined_vars(&body, &defined);
            assert!(
                missing.is_empty(),
                "{label} reads unset {missing:?}:\n{body}"
            );
            // GitHub's default shell for `run` on Linux: `bash -e {0}`.
            let out = Command::new("bash")
                .arg("-e")
                .arg(&script)
                .env_clear()
                .env("PATH", &path)
                .env("SSL_CERT_FILE", reg.ca_cert_path().unwrap())
                .env("TMPDIR", dirs.temp.path())
                .envs(github_defaults(&dirs))
                .env("GITHUB_OUTPUT", &output_file)
                .envs(&workflow_env)
                .envs(step_env)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_COUNT", "1")
                .env(
                    "GIT_CONFIG_KEY_0",
                    format!("url.{}.insteadOf", kiln_src.path().display()),
                )
                .env("GIT_CONFIG_VALUE_0", github_url)
                .current_dir(dirs.workspace.path())
                .timeout(JOB_TIMEOUT)
                .output()
                .unwrap();
            let log = text(&out);
            assert!(out.status.success(), "step {label} failed:\n{log}");
            logs.push_str(&log);
            if let Some(id) = step["id"].as_str() {
                let outputs = fs::read_to_string(&output_file)
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                exprs.outputs.insert(id.to_string(), outputs);
            }
        }
        (dirs, exprs, logs)
    };

    let (dirs, exprs, log) = run_workflow();
    assert_eq!(cached_steps(&log), 0, "nothing cached yet:\n{log}");
    // The base's one layer, downloaded once and told once (the registry
    // speaks HTTP/2 over TLS, whose bodies end with an empty frame).
    assert_eq!(log.matches("pulled sha256:").count(), 1, "{log}");

    // The kiln in the Actions cache is keyed on the commit the branch
    // resolved to, and that commit is what gets installed.
    let cache = steps
        .iter()
        .find(|st| {
            st["uses"]
                .as_str()
                .unwrap_or_default()
                .starts_with("actions/cache@")
        })
        .unwrap();
    let key = exprs.expand(s(&cache["with"]["key"]));
    assert!(
        key.contains(&kiln_sha),
        "the cache key {key:?} does not name the resolved commit {kiln_sha}"
    );
    assert!(
        !key.contains(&workflow_env["KILN_BRANCH"]),
        "the key {key:?} does not name the branch"
    );
    assert_eq!(s(&cache["with"]["path"]), "~/.cargo/bin/kiln");
    let install = steps
        .iter()
        .find(|st| st["name"] == "Install kiln")
        .unwrap();
    assert_eq!(
        s(&install["if"]),
        format!("steps.{}.outputs.cache-hit != 'true'", s(&cache["id"]))
    );
    let install_run = s(&install["run"]);
    let words: Vec<&str> = install_run.split_whitespace().collect();
    let rev = words
        .iter()
        .position(|w| *w == "--rev")
        .map(|i| words[i + 1].trim_matches('"'))
        .expect("cargo install --rev COMMIT");
    let rev_var = rev.trim_start_matches('$').trim_matches(['{', '}']);
    let rev_value = exprs.expand(s(&install["env"][rev_var]));
    assert_eq!(rev_value, kiln_sha, "installs the commit the key names");
    assert!(install_run.contains("--locked"));

    // The image, under both tags, lower-cased, with its digest reported.
    let repo = format!("{}/{}", reg.host(), GITHUB_REPOSITORY.to_lowercase());
    let first = assert_image(&reg, &format!("{repo}:{GITHUB_SHA}"), "app", &[]);
    let digest = s(&inspect(&reg, &format!("{repo}:{GITHUB_SHA}"))["Digest"]).to_string();
    assert_eq!(
        s(&inspect(&reg, &format!("{repo}:latest"))["Digest"]),
        digest
    );
    let summary = fs::read_to_string(dirs.summary()).unwrap();
    assert_eq!(summary.trim(), format!("digest: {digest}"));
    assert!(!log.contains(PASSWORD), "the token was printed:\n{log}");

    // The next push, on a fresh runner: the RUN comes from the cache in GHCR.
    let (_, _, log) = run_workflow();
    assert_eq!(cached_steps(&log), 1, "the RUN step is cached:\n{log}");
    let second = assert_image(&reg, &format!("{repo}:{GITHUB_SHA}"), "app", &[]);
    assert_same_from_cache(&first, &second, "the workflow's image");
}
