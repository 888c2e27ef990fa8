//! SLSA provenance v1 in BuildKit's build type: the fields BuildKit's
//! "SLSA definitions" document describes, filled from what kiln recorded.
//!
//! - `buildDefinition.externalParameters.configSource`: the Dockerfile's
//!   path and sha256; `.request`: the frontend, build args (`build-arg:K`),
//!   the target, the platform, and the ids of secrets and SSH sockets.
//! - `buildDefinition.resolvedDependencies`: every image pulled (base or
//!   `COPY --from`/`RUN --mount from=`), by manifest digest, and every
//!   `ADD <url>` body by sha256.
//! - `runDetails.builder`: the builder id and kiln's version;
//!   `runDetails.metadata`: invocation id, start and end, completeness.
//! - `mode=max` adds `buildDefinition.internalParameters.buildConfig`: each
//!   step run, in order, with whether its result came from the cache and
//!   from which cache.
//!
//! Build arg values that look secret are replaced by [`REDACTED`]: the
//! name test is BuildKit's `SecretsUsedInArgOrEnv` rule, and credentials in
//! a URL's user-info are cut as BuildKit cuts them from context URLs.

use crate::{statement, Subject, SLSA_PROVENANCE_V1};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The build type: BuildKit's, whose document describes every field kiln writes.
pub const BUILD_TYPE: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";
/// What a redacted value reads.
pub const REDACTED: &str = "[REDACTED]";
/// The builder id when `builder-id=` is not given.
pub const DEFAULT_BUILDER_ID: &str = "https://github.com/kiln-build/kiln";

/// How much the provenance says (`--provenance=mode=min|max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Inputs and materials only.
    #[default]
    Min,
    /// Also each step and its cache origin.
    Max,
}

/// `--provenance` as buildx spells it: `true`/`false` (and Go's other
/// boolean spellings), or `mode=min|max` with an optional `builder-id=URI`,
/// comma-separated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvenanceRequest {
    /// Whether provenance is written at all.
    pub enabled: bool,
    /// How much it says.
    pub mode: Mode,
    /// `builder-id=`: overrides [`DEFAULT_BUILDER_ID`].
    pub builder_id: Option<String>,
}

/// Why a `--provenance` value is not one buildx accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvenanceRequestError {
    /// An item that is neither a boolean nor `KEY=VALUE`.
    #[error("{0:?}: expected true, false, mode=min or mode=max")]
    NotKeyValue(String),
    /// `mode=` with something other than `min` or `max`.
    #[error("mode={0}: the mode is min or max")]
    UnknownMode(String),
    /// A key buildx does not know.
    #[error("{0:?}: unknown provenance option (mode=min|max, builder-id=URI)")]
    UnknownOption(String),
}

impl FromStr for ProvenanceRequest {
    type Err = ProvenanceRequestError;
    fn from_str(s: &str) -> Result<Self, ProvenanceRequestError> {
        let s = s.trim();
        match s {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => {
                return Ok(ProvenanceRequest {
                    enabled: true,
                    ..Default::default()
                })
            }
            "0" | "f" | "F" | "false" | "FALSE" | "False" => {
                return Ok(ProvenanceRequest::default())
            }
            _ => {}
        }
        let mut out = ProvenanceRequest {
            enabled: true,
            ..Default::default()
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ProvenanceRequestError::NotKeyValue(part.to_string()))?;
            match (key.trim(), value.trim()) {
                ("mode", "min") => out.mode = Mode::Min,
                ("mode", "max") => out.mode = Mode::Max,
                ("mode", other) => {
                    return Err(ProvenanceRequestError::UnknownMode(other.to_string()));
                }
                ("builder-id", id) if !id.is_empty() => out.builder_id = Some(id.to_string()),
                ("disabled", v) => {
                    out.enabled = !matches!(v, "true" | "1");
                }
                (other, _) => return Err(ProvenanceRequestError::UnknownOption(other.to_string())),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Min => "min",
            Mode::Max => "max",
        })
    }
}

/// Something the build read that is not in its context: an image or a
/// downloaded file, named by URI and pinned by sha256, or a git source pinned
/// by its commit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Material {
    /// `pkg:docker/…` for images, the URL for downloads.
    pub uri: String,
    /// sha256, hex; empty for a git source, which only has a commit.
    pub sha256: String,
    /// A git source's commit id (git names commits by sha1).
    pub sha1: Option<String>,
}

/// One step the build ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Stage index in the Dockerfile.
    pub stage: usize,
    /// Stage name (or index as text).
    pub stage_name: String,
    /// The instruction's line in the Dockerfile.
    pub line: usize,
    /// The instruction as written (on one line).
    pub instruction: String,
    /// Where its result came from when it was a cache hit (the cache's
    /// description); `None` when it ran.
    pub cache_origin: Option<String>,
}

/// Everything a build knows about itself, for the provenance.
#[derive(Debug, Clone, Default)]
pub struct BuildRecord {
    /// The Dockerfile as the user named it.
    pub dockerfile_path: String,
    /// Its sha256, hex.
    pub dockerfile_sha256: String,
    /// The build context as given (`dir://…`, `tar://…`), credentials cut.
    pub context: Option<String>,
    /// `--build-arg`s as given (values redacted when written).
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// The platform built for.
    pub platform: String,
    /// The platform kiln ran on.
    pub builder_platform: String,
    /// `--secret` ids.
    pub secrets: Vec<String>,
    /// `--ssh` ids.
    pub ssh: Vec<String>,
    /// Images and downloads the build read.
    pub materials: Vec<Material>,
    /// Steps in the order they ran.
    pub steps: Vec<StepRecord>,
    /// kiln's version.
    pub kiln_version: String,
    /// A unique id of this build.
    pub invocation_id: String,
    /// RFC 3339 start and end.
    pub started_on: String,
    /// RFC 3339.
    pub finished_on: String,
    /// `--reproducible`.
    pub reproducible: bool,
    /// The git checkout the context is in.
    pub vcs: Option<crate::vcs::Vcs>,
}

/// Whether a build arg's name says it carries a secret: BuildKit's
/// `SecretsUsedInArgOrEnv` rule (a word of the name, split at `_`, is one
/// of these, and the name does not say `public`).
pub fn secret_looking_name(name: &str) -> bool {
    static DENY: OnceLock<regex::Regex> = OnceLock::new();
    static ALLOW: OnceLock<regex::Regex> = OnceLock::new();
    let deny = DENY.get_or_init(|| {
        regex::Regex::new(
            r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)",
        )
        .expect("valid regex")
    });
    let allow =
        ALLOW.get_or_init(|| regex::Regex::new(r"(?i)(?:_|^)public(?:_|$)").expect("valid"));
    deny.is_match(name) && !allow.is_match(name)
}

/// `value` with the user-info of any URL in it cut (`https://u:p@h/` →
/// `https://h/`).
pub fn redact_url_credentials(value: &str) -> String {
    static USERINFO: OnceLock<regex::Regex> = OnceLock::new();
    let re = USERINFO.get_or_init(|| {
        regex::Regex::new(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]+@").expect("valid regex")
    });
    re.replace_all(value, "$1").into_owned()
}

/// A build arg's value as the provenance shows it.
pub fn redact_arg(name: &str, value: &str) -> String {
    if secret_looking_name(name) {
        REDACTED.to_string()
    } else {
        redact_url_credentials(value)
    }
}

/// The provenance predicate for `record` in `mode`.
pub fn predicate(record: &BuildRecord, mode: Mode, builder_id: &str) -> Value {
    let mut args = Map::new();
    for (k, v) in &record.build_args {
        args.insert(format!("build-arg:{k}"), Value::String(redact_arg(k, v)));
    }
    if let Some(target) = &record.target {
        args.insert("target".into(), Value::String(target.clone()));
    }
    args.insert("platform".into(), Value::String(record.platform.clone()));
    let mut request = json!({
        "frontend": "dockerfile.v0",
        "args": args,
    });
    if !record.secrets.is_empty() {
        request["secrets"] = record.secrets.iter().map(|id| json!({"id": id})).collect();
    }
    if !record.ssh.is_empty() {
        request["ssh"] = record.ssh.iter().map(|id| json!({"id": id})).collect();
    }
    let mut config_source = json!({
        "path": record.dockerfile_path,
        "digest": {"sha256": record.dockerfile_sha256},
    });
    if let Some(context) = &record.context {
        config_source["uri"] = Value::String(redact_url_credentials(context));
    }
    let mut materials = record.materials.clone();
    materials.sort();
    materials.dedup();
    let resolved: Vec<Value> = materials
        .iter()
        .map(|m| {
            let mut digest = Map::new();
            if !m.sha256.is_empty() {
                digest.insert("sha256".into(), Value::String(m.sha256.clone()));
            }
            if let Some(sha1) = &m.sha1 {
                digest.insert("sha1".into(), Value::String(sha1.clone()));
            }
            json!({"uri": redact_url_credentials(&m.uri), "digest": digest})
        })
        .collect();
    let mut internal = json!({"builderPlatform": record.builder_platform});
    if mode == Mode::Max {
        let steps: Vec<Value> = record
            .steps
            .iter()
            .map(|s| {
                let mut step = json!({
                    "stage": s.stage,
                    "stageName": s.stage_name,
                    "line": s.line,
                    "instruction": redact_url_credentials(&s.instruction),
                    "cached": s.cache_origin.is_some(),
                });
                if let Some(origin) = &s.cache_origin {
                    step["cacheOrigin"] = Value::String(redact_url_credentials(origin));
                }
                step
            })
            .collect();
        internal["buildConfig"] = json!({ "steps": steps });
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "configSource": config_source,
                "request": request,
            },
            "internalParameters": internal,
            "resolvedDependencies": resolved,
        },
        "runDetails": {
            "builder": {
                "id": builder_id,
                "version": {"kiln": record.kiln_version},
            },
            "metadata": {
                "invocationId": record.invocation_id,
                "startedOn": record.started_on,
                "finishedOn": record.finished_on,
                "buildkit_completeness": {
                    "request": true,
                    "resolvedDependencies": true,
                },
                "buildkit_reproducible": record.reproducible,
                "buildkit_metadata": metadata_vcs(record),
                "kiln_mode": mode.to_string(),
            },
        },
    })
}

/// `buildkit_metadata.vcs`, as buildx fills it for a context in a git
/// checkout: its `origin` and the commit checked out.
fn metadata_vcs(record: &BuildRecord) -> Value {
    match &record.vcs {
        None => json!({}),
        Some(v) => {
            let mut vcs = json!({"revision": v.revision});
            if let Some(source) = &v.source {
                vcs["source"] = Value::String(source.clone());
            }
            json!({"vcs": vcs})
        }
    }
}

/// The in-toto statement carrying the provenance of `record` about `subjects`.
pub fn provenance_statement(
    record: &BuildRecord,
    request: &ProvenanceRequest,
    subjects: &[Subject],
) -> Value {
    let builder = request.builder_id.as_deref().unwrap_or(DEFAULT_BUILDER_ID);
    statement(
        subjects,
        SLSA_PROVENANCE_V1,
        predicate(record, request.mode, builder),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_spellings_parse() {
        let p = |s: &str| s.parse::<ProvenanceRequest>();
        assert_eq!(p("true").unwrap().mode, Mode::Min);
        assert!(p("true").unwrap().enabled);
        assert!(!p("false").unwrap().enabled);
        assert!(!p("0").unwrap().enabled);
        assert_eq!(p("mode=max").unwrap().mode, Mode::Max);
        assert_eq!(p("mode=min").unwrap().mode, Mode::Min);
        let with_id = p("mode=max,builder-id=https://ci.example/run/7").unwrap();
        assert_eq!(
            with_id.builder_id.as_deref(),
            Some("https://ci.example/run/7")
        );
        let rejected = |s: &str| p(s).unwrap_err().to_string();
        assert_eq!(rejected("mode=full"), "mode=full: the mode is min or max");
        assert_eq!(
            rejected("maximal"),
            "\"maximal\": expected true, false, mode=min or mode=max"
        );
        assert_eq!(
            rejected("colour=red"),
            "\"colour\": unknown provenance option (mode=min|max, builder-id=URI)"
        );
    }

    #[test]
    fn secret_looking_args_are_redacted() {
        for name in [
            "GITHUB_TOKEN",
            "password",
            "AWS_SECRET_ACCESS_KEY",
            "API_KEY",
            "NPM_AUTH",
        ] {
            assert_eq!(redact_arg(name, "s3cr3t"), REDACTED, "{name}");
        }
        for name in ["VERSION", "TOKENIZER", "KEYBOARD", "PUBLIC_KEY", "MONKEY"] {
            assert_eq!(redact_arg(name, "v"), "v", "{name}");
        }
        assert_eq!(
            redact_arg("PIP_INDEX_URL", "https://user:pw@pypi.example/simple"),
            "https://pypi.example/simple"
        );
    }

    #[test]
    fn max_mode_lists_steps_and_their_cache_origin() {
        let record = BuildRecord {
            dockerfile_path: "Dockerfile".into(),
            dockerfile_sha256: "ab".repeat(32),
            build_args: BTreeMap::from([("TOKEN".into(), "t0p".into()), ("V".into(), "1".into())]),
            steps: vec![
                StepRecord {
                    stage: 0,
                    stage_name: "0".into(),
                    line: 2,
                    instruction: "RUN make".into(),
                    cache_origin: Some("registry r/cache".into()),
                },
                StepRecord {
                    stage: 0,
                    stage_name: "0".into(),
                    line: 3,
                    instruction: "COPY . /".into(),
                    cache_origin: None,
                },
            ],
            materials: vec![Material {
                uri: "https://deploy:hunter2@files.example/tool.tgz".into(),
                sha256: "cd".repeat(32),
                sha1: None,
            }],
            ..Default::default()
        };
        let min = predicate(&record, Mode::Min, "b");
        assert_eq!(
            min["buildDefinition"]["resolvedDependencies"][0]["uri"],
            "https://files.example/tool.tgz",
            "a download's credentials never reach the provenance"
        );
        assert!(!min.to_string().contains("hunter2"));
        assert!(min["buildDefinition"]["internalParameters"]
            .get("buildConfig")
            .is_none());
        let args = &min["buildDefinition"]["externalParameters"]["request"]["args"];
        assert_eq!(args["build-arg:TOKEN"], REDACTED);
        assert_eq!(args["build-arg:V"], "1");
        assert!(!min.to_string().contains("t0p"));
        let max = predicate(&record, Mode::Max, "b");
        let steps = &max["buildDefinition"]["internalParameters"]["buildConfig"]["steps"];
        assert_eq!(steps[0]["cached"], true);
        assert_eq!(steps[0]["cacheOrigin"], "registry r/cache");
        assert_eq!(steps[1]["cached"], false);
        assert!(steps[1].get("cacheOrigin").is_none());
    }
}
