//! `kiln login REGISTRY` (the Kaniko fork's `executor login`): stores a
//! username and password in the Docker config that later builds read
//! (`$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`).
//!
//! The file is edited as JSON so that every other field in it (other
//! registries, `credHelpers`, `credsStore`, proxies) is kept; it is written
//! to a temporary file with mode 0600 and renamed over the old one, so a
//! reader never sees half a file. Like the fork, nothing is sent to the
//! registry: a wrong password shows at the first pull or push.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use kiln_oci::auth::normalize_host;
use kiln_oci::reference::{DOCKER_HUB, DOCKER_HUB_AUTH_KEY};
use serde_json::{json, Map, Value};

use crate::exit_code::{Exit, Failure};

/// `kiln login` flags (the fork's `executor login`).
#[derive(Debug, Args)]
pub struct LoginCommand {
    /// The registry, e.g. registry.gitlab.com or localhost:5000.
    pub registry: String,

    /// Username for the registry.
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,

    /// Password or token (visible in the process list; prefer --password-stdin).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Runs `kiln login`.
pub fn run(command: &LoginCommand) -> Result<(), Failure> {
    let usage = |m: &str| Failure::new(Exit::Usage, m);
    let username = command
        .username
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| usage("login: --username is required"))?;
    let password = match (&command.password, command.password_stdin) {
        (Some(_), true) => {
            return Err(usage(
                "login: give --password or --password-stdin, not both",
            ))
        }
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| usage(&format!("login: cannot read the password from stdin: {e}")))?;
            text.trim_end_matches('\n')
                .trim_end_matches('\r')
                .to_string()
        }
        (None, false) => {
            return Err(usage(
                "login: a password is needed: --password or --password-stdin",
            ))
        }
    };
    if password.is_empty() {
        return Err(usage("login: the password is empty"));
    }
    let host = normalize_host(&command.registry);
    if host.is_empty() {
        return Err(usage(&format!(
            "login: {:?} is not a registry name",
            command.registry
        )));
    }
    let dir = config_dir()?;
    let path = dir.join("config.json");
    store(&path, &host, username, &password)?;
    super::print(&format!("Login Succeeded ({host}, {})", path.display()))
}

/// `$DOCKER_CONFIG`, else `$HOME/.docker`, as Docker and the fork use.
fn config_dir() -> Result<PathBuf, Failure> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker"))
        .ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                "login: neither DOCKER_CONFIG nor HOME is set, so there is no Docker config to write",
            )
        })
}

/// Adds (or replaces) `host`'s entry under `auths` in the config at `path`.
fn store(path: &Path, host: &str, username: &str, password: &str) -> Result<(), Failure> {
    let failed = |what: String| Failure::new(Exit::BuildFailed, format!("login: {what}"));
    let mut config: Map<String, Value> = match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(failed(format!(
                    "{} is not a JSON object; fix or remove it",
                    path.display()
                )))
            }
            Err(e) => return Err(failed(format!("{} is not valid JSON: {e}", path.display()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(failed(format!("cannot read {}: {e}", path.display()))),
    };
    // Docker Hub's entry is under its legacy URL, as `docker login` writes it.
    let key = if host == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        host.to_string()
    };
    if let Some(helper) = config
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalize_host(k) == host)
                .map(|(_, v)| v.clone())
        })
    {
        eprintln!(
            "warning: {} names the credential helper {helper} for {host}, which is asked before this entry",
            path.display()
        );
    }
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        return Err(failed(format!(
            "\"auths\" in {} is not an object",
            path.display()
        )));
    };
    // An older entry under another spelling of the same host would shadow this one.
    auths.retain(|k, _| normalize_host(k) != host);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(key, json!({ "auth": auth }));
    let text = serde_json::to_vec_pretty(&Value::Object(config))
        .map_err(|e| failed(format!("cannot serialise the config: {e}")))?;
    write_private(path, &text).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

/// Writes `bytes` to `path` through a 0600 temporary file renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_added_and_the_rest_of_the_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://Other.example/v2/":{"auth":"eDp5"},"http://reg.example:5000":{"auth":"b2xkOm9sZA=="}},"credsStore":"pass","proxies":{"default":{}}}"#,
        )
        .unwrap();
        store(&path, "reg.example:5000", "ci", "tok:en").unwrap();
        store(&path, DOCKER_HUB, "me", "hub").unwrap();
        let config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            config["auths"],
            json!({
                "https://Other.example/v2/": {"auth": "eDp5"},
                "reg.example:5000": {"auth": b64("ci:tok:en")},
                DOCKER_HUB_AUTH_KEY: {"auth": b64("me:hub")},
            })
        );
        assert_eq!(config["credsStore"], "pass");
        assert_eq!(config["proxies"], json!({"default": {}}));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_config_that_is_not_an_object_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "[1,2]").unwrap();
        let err = store(&path, "r.example", "u", "p").unwrap_err();
        assert!(
            err.lines[0].contains("not a JSON object"),
            "{:?}",
            err.lines
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1,2]");
    }
}
