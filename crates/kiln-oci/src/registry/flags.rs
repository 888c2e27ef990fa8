//! The grammar of the registry flags, read the same way by `kiln build`,
//! `kiln warm`, `kiln cache prune` and `kiln push`: Kaniko's
//! `--registry-map FROM=TO[;FROM=TO...]` (then `KANIKO_REGISTRY_MAP`),
//! `--registry-mirror HOST` (then `KANIKO_REGISTRY_MIRROR`, `;`-separated),
//! `--registry-certificate HOST=PATH` and `--registry-client-cert
//! HOST=CERT,KEY`. The values come in as arguments, so callers decide where
//! the environment is read.

use super::options::{ClientCert, RegistryOptions};
use crate::auth::normalize_host;
use crate::reference::DOCKER_HUB;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The environment variable that adds registry maps after the flags.
pub const REGISTRY_MAP_ENV: &str = "KANIKO_REGISTRY_MAP";
/// The environment variable that adds Docker Hub mirrors after the flags.
pub const REGISTRY_MIRROR_ENV: &str = "KANIKO_REGISTRY_MIRROR";

/// A registry flag value that does not follow its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {value:?}: expected {expected}")]
pub struct FlagError {
    /// The flag, as the user writes it (`--registry-map`).
    pub flag: &'static str,
    /// The offending value (one `FROM=TO` pair for a map).
    pub value: String,
    /// The form the value should have (`FROM=TO`).
    pub expected: &'static str,
}

/// Where pulls go before the registry an image names: each registry
/// (normalised, so `index.docker.io` is `docker.io`) with the hosts tried
/// first, in order. Docker Hub's entry holds its mirrors.
pub type PullRoutes = BTreeMap<String, Vec<String>>;

/// Reads the maps and mirrors in the order Kaniko applies them: the
/// `--registry-map` values, then `KANIKO_REGISTRY_MAP`, then the
/// `--registry-mirror`s, then `KANIKO_REGISTRY_MIRROR`. A target named
/// twice for one registry is tried once, at its first place.
///
/// # Errors
/// [`FlagError`] for a map pair without `=` or with an empty side.
pub fn parse_pull_routes(
    maps: &[String],
    env_map: Option<&str>,
    mirrors: &[String],
    env_mirror: Option<&str>,
) -> Result<PullRoutes, FlagError> {
    let mut routes = PullRoutes::new();
    let mut add = |from: &str, to: &str| {
        let targets = routes.entry(normalize_host(from)).or_default();
        if !targets.iter().any(|t| t == to) {
            targets.push(to.to_string());
        }
    };
    let map_specs = maps.iter().map(String::as_str).chain(env_map);
    for pair in map_specs
        .flat_map(|s| s.split(';'))
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                add(from, to.trim());
            }
            _ => {
                return Err(FlagError {
                    flag: "--registry-map",
                    value: pair.to_string(),
                    expected: "FROM=TO",
                })
            }
        }
    }
    let env_mirrors = env_mirror.into_iter().flat_map(|m| m.split(';'));
    for mirror in mirrors.iter().map(String::as_str).chain(env_mirrors) {
        if !mirror.trim().is_empty() {
            add(DOCKER_HUB, mirror.trim());
        }
    }
    Ok(routes)
}

impl RegistryOptions {
    /// Sets where pulls go first: Docker Hub's routes become
    /// [`RegistryOptions::mirrors`], every other registry's
    /// [`RegistryOptions::registry_maps`].
    pub fn set_pull_routes(&mut self, mut routes: PullRoutes) {
        self.mirrors = routes.remove(DOCKER_HUB).unwrap_or_default();
        self.registry_maps = routes;
    }
}

/// Parses `HOST=PATH` (`--registry-certificate`).
///
/// # Errors
/// [`FlagError`] when there is no `=` or a side is empty.
pub fn parse_host_path(value: &str) -> Result<(String, PathBuf), FlagError> {
    match value.split_once('=') {
        Some((h, p)) if !h.is_empty() && !p.is_empty() => Ok((h.to_string(), PathBuf::from(p))),
        _ => Err(FlagError {
            flag: "--registry-certificate",
            value: value.to_string(),
            expected: "HOST=PATH",
        }),
    }
}

/// Parses `HOST=CERT,KEY` (`--registry-client-cert`).
///
/// # Errors
/// [`FlagError`] when the form is wrong or a part is empty.
pub fn parse_client_cert(value: &str) -> Result<(String, ClientCert), FlagError> {
    let bad = || FlagError {
        flag: "--registry-client-cert",
        value: value.to_string(),
        expected: "HOST=CERT,KEY",
    };
    let (host, files) = value.split_once('=').ok_or_else(bad)?;
    let (cert, key) = files.split_once(',').ok_or_else(bad)?;
    if host.is_empty() || cert.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((
        host.to_string(),
        ClientCert {
            cert: cert.into(),
            key: key.into(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_then_mirrors_in_kaniko_order() {
        let routes = parse_pull_routes(
            &[
                "gcr.io=g1.local;index.docker.io=hub.local".into(),
                "gcr.io=g2.local;gcr.io=g1.local".into(),
            ],
            Some("quay.io=q.local;;docker.io=m2.io"),
            &["m1.io".into(), "hub.local".into()],
            Some("m2.io;m3.io;"),
        )
        .unwrap();
        assert_eq!(routes["gcr.io"], ["g1.local", "g2.local"]);
        assert_eq!(routes["quay.io"], ["q.local"]);
        // Kaniko's own spelling of Docker Hub, index.docker.io, is Docker Hub.
        assert_eq!(routes[DOCKER_HUB], ["hub.local", "m2.io", "m1.io", "m3.io"]);
        assert_eq!(routes.len(), 3);

        let mut options = RegistryOptions::default();
        options.set_pull_routes(routes);
        assert_eq!(options.mirrors, ["hub.local", "m2.io", "m1.io", "m3.io"]);
        assert_eq!(options.registry_maps.len(), 2);
        assert_eq!(options.registry_maps["quay.io"], ["q.local"]);
    }

    #[test]
    fn map_pairs_without_both_sides_are_refused() {
        for bad in ["gcr.io", "=x.local", "gcr.io=", "a=b;c"] {
            let err = parse_pull_routes(&[bad.into()], None, &[], None).unwrap_err();
            assert_eq!(err.flag, "--registry-map", "{bad}");
            assert!(err.to_string().ends_with(": expected FROM=TO"), "{err}");
        }
        let err = parse_pull_routes(&[], Some("nothing"), &[], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--registry-map \"nothing\": expected FROM=TO"
        );
    }

    #[test]
    fn certificates_and_client_certificates() {
        assert_eq!(
            parse_host_path("r.io=/ca.pem").unwrap(),
            ("r.io".into(), "/ca.pem".into())
        );
        assert!(parse_host_path("r.io").is_err());
        assert!(parse_host_path("r.io=").is_err());
        let (h, c) = parse_client_cert("r.io=/c.pem,/k.pem").unwrap();
        assert_eq!((h.as_str(), c.key.to_str().unwrap()), ("r.io", "/k.pem"));
        let err = parse_client_cert("r.io=/c.pem").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--registry-client-cert \"r.io=/c.pem\": expected HOST=CERT,KEY"
        );
    }
}
