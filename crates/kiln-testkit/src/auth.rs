//! Registry credentials: the htpasswd file the registry checks and the
//! Docker `config.json` clients read.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;

/// A user name and password for basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password in clear text (test-only secrets).
    pub password: String,
}

impl Credentials {
    /// `user:pass`, the form skopeo's `--creds` / `--dest-creds` take.
    pub fn user_pass(&self) -> String {
        format!("{}:{}", self.username, self.password)
    }

    /// base64 of `user:pass`, as stored in a Docker config's `auths.<host>.auth`.
    pub fn basic_auth_token(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.user_pass())
    }
}

/// bcrypt cost for the htpasswd entry. The registry re-hashes the password on
/// every request, so the minimum cost keeps authenticated tests fast; the
/// strength of a throwaway test password does not matter.
const BCRYPT_COST: u32 = 4;

/// Writes an htpasswd file with one bcrypt entry (the only scheme the
/// distribution registry accepts).
pub(crate) fn write_htpasswd(path: &Path, creds: &Credentials) -> Result<()> {
    let hash = bcrypt::hash(&creds.password, BCRYPT_COST).context("bcrypt-hashing password")?;
    fs::write(path, format!("{}:{}\n", creds.username, hash))
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes `dir/config.json` in the Docker CLI format, with an `auths` entry
/// for `host` when credentials are given (an empty `auths` otherwise, so the
/// directory is still a valid `DOCKER_CONFIG`).
pub(crate) fn write_docker_config(
    dir: &Path,
    host: &str,
    creds: Option<&Credentials>,
) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut auths = serde_json::Map::new();
    if let Some(c) = creds {
        auths.insert(
            host.to_string(),
            serde_json::json!({ "auth": c.basic_auth_token() }),
        );
    }
    let doc = serde_json::json!({ "auths": auths });
    let path = dir.join("config.json");
    fs::write(&path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            username: "kiln".into(),
            password: "s3cret".into(),
        }
    }

    #[test]
    fn htpasswd_entry_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("htpasswd");
        write_htpasswd(&p, &creds()).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let (user, hash) = text.trim_end().split_once(':').unwrap();
        assert_eq!(user, "kiln");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
    }

    #[test]
    fn docker_config_has_auth() {
        let dir = tempfile::tempdir().unwrap();
        write_docker_config(dir.path(), "127.0.0.1:5000", Some(&creds())).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        // base64("kiln:s3cret")
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "a2lsbjpzM2NyZXQ=");
    }
}
