//! The credential sources the maintained Kaniko fork builds into its executor
//! and selects with `--credential-helpers` (`env`, `google`, `ecr`, `acr`,
//! `gitlab`; all of them unless told otherwise).
//!
//! Two read the environment and are implemented here: `env` reads
//! `KANIKO_<HOST>_USER` and `KANIKO_<HOST>_PASSWORD`, and `gitlab` the
//! variables a GitLab CI job has (`CI_REGISTRY`, `CI_REGISTRY_USER`,
//! `CI_REGISTRY_PASSWORD`). The three cloud ones need each cloud's SDK to
//! mint a token; kiln runs the cloud's own Docker credential helper for
//! registries of that cloud when it is on `PATH` (as Kaniko's original image
//! did), and asks nothing when it is not.
//!
//! These sources are tried after the Docker config files, in the order
//! given, as the fork does.

use crate::auth::{normalize_host, AuthError, Credential};
use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Looks up an environment variable.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One built-in credential source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinHelper {
    /// `KANIKO_<HOST>_USER` / `KANIKO_<HOST>_PASSWORD`.
    Env,
    /// Google Container and Artifact Registry, through `docker-credential-gcr`.
    Google,
    /// Amazon ECR, through `docker-credential-ecr-login`.
    Ecr,
    /// Azure Container Registry, through `docker-credential-acr-env`.
    Acr,
    /// The GitLab CI job's registry (`CI_REGISTRY`).
    Gitlab,
}

/// Every built-in source, in the fork's order: the default selection.
pub const ALL: [BuiltinHelper; 5] = [
    BuiltinHelper::Env,
    BuiltinHelper::Google,
    BuiltinHelper::Ecr,
    BuiltinHelper::Acr,
    BuiltinHelper::Gitlab,
];

/// A `--credential-helpers` name that is not one of the built-in sources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown credential helper {name:?} (expected env, google, ecr, acr or gitlab, \
     or an empty value for none)"
)]
pub struct UnknownHelper {
    /// The name as given.
    pub name: String,
}

impl FromStr for BuiltinHelper {
    type Err = UnknownHelper;
    fn from_str(s: &str) -> Result<Self, UnknownHelper> {
        match s {
            "env" => Ok(BuiltinHelper::Env),
            "google" => Ok(BuiltinHelper::Google),
            "ecr" => Ok(BuiltinHelper::Ecr),
            "acr" => Ok(BuiltinHelper::Acr),
            "gitlab" => Ok(BuiltinHelper::Gitlab),
            _ => Err(UnknownHelper {
                name: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for BuiltinHelper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuiltinHelper::Env => "env",
            BuiltinHelper::Google => "google",
            BuiltinHelper::Ecr => "ecr",
            BuiltinHelper::Acr => "acr",
            BuiltinHelper::Gitlab => "gitlab",
        })
    }
}

impl BuiltinHelper {
    /// The credential this source has for `host` (a normalised registry
    /// host such as `registry.gitlab.com` or `127.0.0.1:5000`), if any.
    /// `env` reads the environment; `path` is the `PATH` searched for the
    /// cloud helpers. May run a helper, so it blocks.
    ///
    /// # Errors
    /// A cloud helper that is meant for `host` and fails.
    pub fn credential(
        self,
        host: &str,
        env: EnvLookup<'_>,
        path: Option<&str>,
    ) -> Result<Option<Credential>, AuthError> {
        match self {
            BuiltinHelper::Env => Ok(from_kaniko_env(host, env)),
            BuiltinHelper::Gitlab => Ok(from_gitlab_ci(host, env)),
            cloud => match cloud.external_helper(host) {
                Some(helper) if on_path(&format!("docker-credential-{helper}"), path) => {
                    crate::auth::run_helper(helper, host)
                }
                Some(helper) => {
                    tracing::debug!(
                        "credential helper {cloud}: docker-credential-{helper} is not on PATH, \
                         nothing asked for {host}"
                    );
                    Ok(None)
                }
                None => Ok(None),
            },
        }
    }

    /// The external helper (after `docker-credential-`) that serves `host`
    /// for a cloud source, when `host` is one of that cloud's registries.
    pub fn external_helper(self, host: &str) -> Option<&'static str> {
        let name = host.split(':').next().unwrap_or(host);
        match self {
            BuiltinHelper::Google
                if name == "gcr.io"
                    || name.ends_with(".gcr.io")
                    || name.ends_with("-docker.pkg.dev") =>
            {
                Some("gcr")
            }
            BuiltinHelper::Ecr if is_ecr(name) => Some("ecr-login"),
            BuiltinHelper::Acr
                if [".azurecr.io", ".azurecr.cn", ".azurecr.us", ".azurecr.de"]
                    .iter()
                    .any(|s| name.ends_with(s)) =>
            {
                Some("acr-env")
            }
            _ => None,
        }
    }
}

/// `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
fn is_ecr(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let dkr = labels.iter().position(|l| *l == "dkr");
    match dkr {
        Some(i) if i >= 1 => {
            let rest = &labels[i + 1..];
            rest.len() >= 3
                && (rest[0] == "ecr" || rest[0] == "ecr-fips")
                && (rest[2..] == ["amazonaws", "com"] || rest[2..] == ["amazonaws", "com", "cn"])
        }
        _ => false,
    }
}

/// The fork's `env` source: the host upper-cased with `-` as `_`, then
/// `KANIKO_<suffix>_USER` and `_PASSWORD` for the whole host and each
/// shorter dot-separated suffix, joined with `_` (`KANIKO_REGISTRY_EXAMPLE_COM_USER`,
/// then `KANIKO_EXAMPLE_COM_USER`, then `KANIKO_COM_USER`). A pair needs both.
fn from_kaniko_env(host: &str, env: EnvLookup<'_>) -> Option<Credential> {
    let upper = host.replace('-', "_").to_ascii_uppercase();
    let labels: Vec<&str> = upper.split('.').collect();
    (0..labels.len()).find_map(|i| {
        let name = labels[i..].join("_");
        let user = env(&format!("KANIKO_{name}_USER"))?;
        let password = env(&format!("KANIKO_{name}_PASSWORD"))?;
        Some(Credential::basic(user, password))
    })
}

/// The `gitlab` source: `CI_REGISTRY_USER` and `CI_REGISTRY_PASSWORD` for
/// the registry named by `CI_REGISTRY`. Host and port must both match (the
/// fork's helper compares host names only; a job's token is not sent to
/// another port of the same host).
fn from_gitlab_ci(host: &str, env: EnvLookup<'_>) -> Option<Credential> {
    let registry = env("CI_REGISTRY").filter(|r| !r.trim().is_empty())?;
    if normalize_host(&registry) != host {
        return None;
    }
    let user = env("CI_REGISTRY_USER")?;
    let password = env("CI_REGISTRY_PASSWORD")?;
    Some(Credential::basic(user, password))
}

/// Whether an executable called `name` is in one of `path`'s directories.
fn on_path(name: &str, path: Option<&str>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.into_iter()
        .flat_map(|p| p.split(':'))
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .any(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn user_of(c: Option<Credential>) -> Option<String> {
        match c {
            Some(Credential::Basic { username, password }) => {
                Some(format!("{username}:{}", password.expose()))
            }
            _ => None,
        }
    }

    #[test]
    fn env_source_walks_the_host_suffixes() {
        let env = env_of(&[
            ("KANIKO_MY_REGISTRY_EXAMPLE_COM_USER", "full"),
            ("KANIKO_MY_REGISTRY_EXAMPLE_COM_PASSWORD", "p1"),
            ("KANIKO_EXAMPLE_COM_USER", "domain"),
            ("KANIKO_EXAMPLE_COM_PASSWORD", "p2"),
            ("KANIKO_ORG_USER", "no password"),
        ]);
        let get = |host: &str| user_of(BuiltinHelper::Env.credential(host, &env, None).unwrap());
        assert_eq!(get("my-registry.example.com").as_deref(), Some("full:p1"));
        assert_eq!(get("other.example.com").as_deref(), Some("domain:p2"));
        assert_eq!(
            get("example.org"),
            None,
            "a user without a password is no pair"
        );
    }

    #[test]
    fn gitlab_source_answers_only_for_ci_registry() {
        let env = env_of(&[
            ("CI_REGISTRY", "registry.gitlab.example:5050"),
            ("CI_REGISTRY_USER", "gitlab-ci-token"),
            ("CI_REGISTRY_PASSWORD", "job-token"),
        ]);
        let get = |host: &str| user_of(BuiltinHelper::Gitlab.credential(host, &env, None).unwrap());
        assert_eq!(
            get("registry.gitlab.example:5050").as_deref(),
            Some("gitlab-ci-token:job-token")
        );
        assert_eq!(get("registry.gitlab.example"), None, "another port");
        assert_eq!(get("docker.io"), None);
        let no_ci = env_of(&[]);
        assert!(BuiltinHelper::Gitlab
            .credential("registry.gitlab.example:5050", &no_ci, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn cloud_sources_serve_their_own_registries() {
        use BuiltinHelper::*;
        assert_eq!(Google.external_helper("gcr.io"), Some("gcr"));
        assert_eq!(Google.external_helper("eu.gcr.io"), Some("gcr"));
        assert_eq!(
            Google.external_helper("europe-west1-docker.pkg.dev"),
            Some("gcr")
        );
        assert_eq!(
            Ecr.external_helper("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some("ecr-login")
        );
        assert_eq!(
            Ecr.external_helper("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
            Some("ecr-login")
        );
        assert_eq!(Ecr.external_helper("dkr.ecr.evil.example.com"), None);
        assert_eq!(Acr.external_helper("myreg.azurecr.io"), Some("acr-env"));
        for host in ["docker.io", "evilgcr.io", "azurecr.io.example.com"] {
            for h in ALL {
                assert_eq!(h.external_helper(host), None, "{h} for {host}");
            }
        }
    }

    #[test]
    fn a_cloud_helper_missing_from_path_asks_nothing() {
        let env = env_of(&[]);
        let empty = tempfile::tempdir().unwrap();
        let path = empty.path().display().to_string();
        let got = BuiltinHelper::Ecr
            .credential(
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                &env,
                Some(&path),
            )
            .unwrap();
        assert!(got.is_none());
    }

    #[test]
    fn names_parse_and_unknown_ones_are_named() {
        for h in ALL {
            assert_eq!(h.to_string().parse::<BuiltinHelper>().unwrap(), h);
        }
        let err = "gcr".parse::<BuiltinHelper>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown credential helper \"gcr\" (expected env, google, ecr, acr or gitlab, \
             or an empty value for none)"
        );
        assert!(err.contains("\"gcr\"") && err.contains("gitlab"), "{err}");
    }
}
