//! Registry credentials from Docker's `config.json` files and credential
//! helpers.
//!
//! The file format is parsed here rather than by `docker_credential`:
//! that crate reads only one file, matches `credHelpers` keys exactly, has no
//! `registrytoken`, and its errors carry no path. Running a credential helper
//! (`docker-credential-<name> get`, server URL on stdin, JSON reply,
//! `<token>` usernames) is delegated to `docker_credential`. Lookups are
//! synchronous (helpers are processes), so async callers run them on a
//! blocking thread. After the files come the built-in sources of
//! [`crate::builtin_helpers`], when a caller selects them.

use crate::builtin_helpers::BuiltinHelper;
use crate::reference::{DOCKER_HUB, DOCKER_HUB_AUTH_KEY};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The directory Kaniko's image keeps its Docker config in.
pub const KANIKO_DOCKER_CONFIG_DIR: &str = "/kaniko/.docker";

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A config file exists but could not be read.
    #[error("cannot read Docker config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A config file is not valid JSON of the expected shape.
    #[error("invalid Docker config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` field is not base64 of `user:password`.
    #[error("invalid \"auth\" field for {key:?} in {path}: expected base64 of user:password")]
    BadAuthField {
        /// The file.
        path: PathBuf,
        /// The `auths` key.
        key: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {server}: {message}")]
    Helper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// The server URL it was asked about.
        server: String,
        /// What went wrong (never the helper's stdout, which may hold a secret).
        message: String,
    },
}

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry. `Debug` and `Display` never show secrets.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// Username and password (sent as Basic auth, or to a token server).
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token server.
    IdentityToken(Secret),
    /// A bearer token sent as is (`registrytoken`).
    RegistryToken(Secret),
}

impl Credential {
    /// A username/password credential.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// The `Authorization: Basic …` value, for Basic credentials.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            _ => None,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// Where credentials come from: explicit per-registry credentials first, then
/// the Docker config files in order (the first file with an entry for the
/// registry wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialStore {
    config_dirs: Vec<PathBuf>,
    explicit: BTreeMap<String, Credential>,
    builtin: Vec<BuiltinHelper>,
}

/// Where credentials are looked up, without any secret: the config
/// directories, the built-in sources, and the registries given explicit
/// credentials (by name only).
impl serde::Serialize for CredentialStore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("CredentialStore", 3)?;
        out.serialize_field("config_dirs", &self.config_dirs)?;
        out.serialize_field("builtin_helpers", &self.builtin)?;
        out.serialize_field("explicit", &self.explicit.keys().collect::<Vec<_>>())?;
        out.end()
    }
}

/// The directories Kaniko searches, in order: `$DOCKER_CONFIG`,
/// `$HOME/.docker`, `/kaniko/.docker`. Passed in so callers decide where
/// the values come from.
pub fn default_config_dirs(docker_config: Option<&Path>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = docker_config {
        dirs.push(d.to_path_buf());
    }
    if let Some(h) = home {
        dirs.push(h.join(".docker"));
    }
    dirs.push(PathBuf::from(KANIKO_DOCKER_CONFIG_DIR));
    dirs
}

impl CredentialStore {
    /// No credentials at all: every request is anonymous.
    pub fn anonymous() -> CredentialStore {
        CredentialStore::default()
    }

    /// Reads `config.json` from each of `dirs`, in order.
    pub fn from_config_dirs(dirs: Vec<PathBuf>) -> CredentialStore {
        CredentialStore {
            config_dirs: dirs,
            explicit: BTreeMap::new(),
            builtin: Vec::new(),
        }
    }

    /// Kaniko's search order from this process's `DOCKER_CONFIG` and `HOME`.
    pub fn from_env() -> CredentialStore {
        let docker_config = std::env::var_os("DOCKER_CONFIG").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        CredentialStore::from_config_dirs(default_config_dirs(
            docker_config.as_deref(),
            home.as_deref(),
        ))
    }

    /// Adds a credential for `registry` that wins over the config files.
    pub fn with_credential(mut self, registry: &str, credential: Credential) -> CredentialStore {
        self.explicit.insert(normalize_host(registry), credential);
        self
    }

    /// The built-in sources asked after the config files, in order.
    pub fn builtin_helpers(&self) -> &[BuiltinHelper] {
        &self.builtin
    }

    /// Also asks these built-in sources, in order, when no config file has
    /// an entry for the registry (`--credential-helpers`).
    pub fn with_builtin_helpers(mut self, helpers: Vec<BuiltinHelper>) -> CredentialStore {
        self.builtin = helpers;
        self
    }

    /// The credential for `registry` (a normalised registry name such as
    /// `docker.io` or `localhost:5000`), or `None` for anonymous access.
    /// May run a credential helper, so it blocks.
    ///
    /// # Errors
    /// [`AuthError`] when a config file is unreadable or malformed or a
    /// helper fails.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>, AuthError> {
        let host = normalize_host(registry);
        if let Some(c) = self.explicit.get(&host) {
            return Ok(Some(c.clone()));
        }
        for dir in &self.config_dirs {
            let path = dir.join("config.json");
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(AuthError::Read { path, source }),
            };
            let config: DockerConfigFile =
                serde_json::from_slice(&text).map_err(|source| AuthError::Parse {
                    path: path.clone(),
                    source,
                })?;
            if let Some(c) = config.credential_for(&host, &path)? {
                return Ok(Some(c));
            }
        }
        let env = |name: &str| std::env::var(name).ok();
        let path = std::env::var("PATH").ok();
        for helper in &self.builtin {
            if let Some(c) = helper.credential(&host, &env, path.as_deref())? {
                tracing::debug!("credentials for {host} from the {helper} credential helper");
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl DockerConfigFile {
    /// Docker's precedence: a per-registry helper, then the file's own
    /// entry, then the default store.
    fn credential_for(&self, host: &str, path: &Path) -> Result<Option<Credential>, AuthError> {
        if let Some((_, helper)) = self
            .cred_helpers
            .iter()
            .find(|(k, v)| !v.is_empty() && normalize_host(k) == host)
        {
            return run_helper(helper, host);
        }
        if let Some((key, entry)) = self.auths.iter().find(|(k, _)| normalize_host(k) == host) {
            if let Some(c) = entry.credential(key, path)? {
                return Ok(Some(c));
            }
        }
        match self.creds_store.as_deref() {
            Some(store) if !store.is_empty() => run_helper(store, host),
            _ => Ok(None),
        }
    }
}

impl AuthEntry {
    fn credential(&self, key: &str, path: &Path) -> Result<Option<Credential>, AuthError> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        if let Some(t) = nonempty(&self.registrytoken) {
            return Ok(Some(Credential::RegistryToken(Secret::new(t))));
        }
        if let Some(t) = nonempty(&self.identitytoken) {
            return Ok(Some(Credential::IdentityToken(Secret::new(t))));
        }
        if let Some(encoded) = nonempty(&self.auth) {
            let bad = || AuthError::BadAuthField {
                path: path.to_path_buf(),
                key: key.to_string(),
            };
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let raw = engine.decode(encoded.trim()).map_err(|_| bad())?;
            let text = String::from_utf8(raw).map_err(|_| bad())?;
            let (user, pass) = text.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credential::basic(user, pass)));
        }
        match (nonempty(&self.username), &self.password) {
            (Some(u), Some(p)) => Ok(Some(Credential::basic(u, p.clone()))),
            _ => Ok(None),
        }
    }
}

/// The server URL a helper is asked about: Docker Hub's legacy key, or the host.
fn helper_server_url(host: &str) -> String {
    if host == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        host.to_string()
    }
}

pub(crate) fn run_helper(helper: &str, host: &str) -> Result<Option<Credential>, AuthError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let server = helper_server_url(host);
    // docker_credential runs helpers only as part of reading a config, so it
    // gets a one-line config naming the helper for this server.
    let config = serde_json::json!({ "credHelpers": { server.clone(): helper } }).to_string();
    let fail = |message: String| AuthError::Helper {
        helper: helper.to_string(),
        server: server.clone(),
        message,
    };
    match docker_credential::get_credential_from_reader(config.as_bytes(), &server) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(Some(Credential::basic(u, p))),
        Ok(DockerCredential::IdentityToken(t)) => {
            Ok(Some(Credential::IdentityToken(Secret::new(t))))
        }
        Err(E::HelperFailure { stdout, stderr, .. }) => {
            if stdout.contains("credentials not found") || stderr.contains("credentials not found")
            {
                Ok(None)
            } else {
                Err(fail(format!("exited with an error: {}", stderr.trim())))
            }
        }
        Err(E::HelperCommunicationError) => Err(fail(format!(
            "could not run docker-credential-{helper} (is it on PATH?)"
        ))),
        Err(other) => Err(fail(other.to_string())),
    }
}

/// Reduces a `config.json` key or registry name to a comparable host:
/// drops a scheme and any path, lowercases, and maps Docker Hub's aliases to
/// `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let trimmed = key.trim();
    let no_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = no_scheme
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, json: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn normalises_keys() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("registry-1.docker.io"), "docker.io");
        assert_eq!(
            normalize_host("http://LOCALHOST:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(normalize_host("ghcr.io"), "ghcr.io");
        assert_eq!(normalize_host("quay.io/org"), "quay.io");
    }

    #[test]
    fn reads_auths_in_every_form() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        write_config(
            &dir,
            &format!(
                r#"{{"auths": {{
                  "https://index.docker.io/v1/": {{"auth": "{}"}},
                  "http://localhost:5000/v2/": {{"username": "u2", "password": "p2"}},
                  "ghcr.io": {{"identitytoken": "refresh"}},
                  "quay.io": {{"registrytoken": "bearer"}},
                  "empty.io": {{}}
                }}}}"#,
                b64("hubuser:hub:pass")
            ),
        );
        let store = CredentialStore::from_config_dirs(vec![dir]);
        assert_eq!(
            store.lookup("docker.io").unwrap(),
            Some(Credential::basic("hubuser", "hub:pass"))
        );
        assert_eq!(
            store.lookup("localhost:5000").unwrap(),
            Some(Credential::basic("u2", "p2"))
        );
        assert_eq!(
            store.lookup("ghcr.io").unwrap(),
            Some(Credential::IdentityToken(Secret::new("refresh")))
        );
        assert_eq!(
            store.lookup("quay.io").unwrap(),
            Some(Credential::RegistryToken(Secret::new("bearer")))
        );
        assert_eq!(store.lookup("empty.io").unwrap(), None);
        assert_eq!(store.lookup("other.io").unwrap(), None);
    }

    #[test]
    fn searches_dirs_in_order_and_explicit_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("first");
        let second = tmp.path().join("second");
        write_config(
            &first,
            &format!(r#"{{"auths":{{"a.io":{{"auth":"{}"}}}}}}"#, b64("one:1")),
        );
        write_config(
            &second,
            &format!(
                r#"{{"auths":{{"a.io":{{"auth":"{}"}},"b.io":{{"auth":"{}"}}}}}}"#,
                b64("two:2"),
                b64("bee:b")
            ),
        );
        let missing = tmp.path().join("missing");
        let store = CredentialStore::from_config_dirs(vec![missing, first, second]);
        assert_eq!(
            store.lookup("a.io").unwrap(),
            Some(Credential::basic("one", "1"))
        );
        assert_eq!(
            store.lookup("b.io").unwrap(),
            Some(Credential::basic("bee", "b"))
        );
        let store = store.with_credential("https://a.io/", Credential::basic("cli", "x"));
        assert_eq!(
            store.lookup("a.io").unwrap(),
            Some(Credential::basic("cli", "x"))
        );
    }

    #[test]
    fn default_dirs_follow_kaniko_order() {
        let dirs = default_config_dirs(Some(Path::new("/cfg")), Some(Path::new("/home/u")));
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/cfg"),
                PathBuf::from("/home/u/.docker"),
                PathBuf::from("/kaniko/.docker")
            ]
        );
        assert_eq!(
            default_config_dirs(None, None),
            vec![PathBuf::from("/kaniko/.docker")]
        );
    }

    #[test]
    fn bad_files_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        write_config(tmp.path(), "{not json");
        let err = CredentialStore::from_config_dirs(vec![tmp.path().into()])
            .lookup("x.io")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        write_config(tmp.path(), r#"{"auths":{"x.io":{"auth":"bm9jb2xvbg=="}}}"#);
        let err = CredentialStore::from_config_dirs(vec![tmp.path().into()])
            .lookup("x.io")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"x.io\"") && err.contains("user:password"),
            "{err}"
        );
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_config(
            tmp.path(),
            r#"{"credHelpers":{"gone.io":"kiln-no-such-helper"}}"#,
        );
        let err = CredentialStore::from_config_dirs(vec![tmp.path().into()])
            .lookup("gone.io")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-kiln-no-such-helper"),
            "{err}"
        );
        assert!(err.contains("PATH"), "{err}");
    }

    #[test]
    fn debug_and_display_hide_secrets() {
        let c = Credential::basic("user", "hunter2");
        assert!(!format!("{c:?} {c}").contains("hunter2"));
        let t = Credential::RegistryToken(Secret::new("tok-123"));
        assert!(!format!("{t:?} {t}").contains("tok-123"));
        assert_eq!(
            c.basic_header().unwrap(),
            format!("Basic {}", b64("user:hunter2"))
        );
    }
}
