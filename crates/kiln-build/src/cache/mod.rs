//! The layer cache: step keys, cache entries in a registry repository or an
//! OCI layout, pruning, and the base-image warmer.
//!
//! * [`key`]: [`CacheKey`], chained per step from the stage's base: the
//!   one place a key's bytes are written (instructions, build args, file
//!   inputs).
//! * [`entry`]: the entry format, one OCI manifest per key.
//! * [`store`]: [`StepStore`], what every backend does (look up, store,
//!   prune, describe), and [`open`] / [`open_at`], the one place a backend
//!   is chosen; a build holds it as a [`LayerCache`].
//! * [`registry`] / [`layout`]: the backends, [`RegistryCache`]
//!   (`<repo>:<key>`) and [`OciLayoutCache`] (`--cache-repo oci:PATH`), each
//!   with its own prune.
//! * [`pusher`]: [`CachePusher`], background stores whose failures are
//!   warnings.
//! * [`warm`]: filling a cache directory with base images, and
//!   [`warm::cached_base`] to start from one without the network.
//!
//! A broken or unreadable entry is a cache miss with a warning, never a
//! failed build: the cache only ever saves work.
//!
//! ```
//! use std::collections::BTreeMap;
//! use kiln_build::cache::{CacheKey, StepInputs};
//! let platform = kiln_oci::Platform::new("linux", "amd64", None);
//! let base = CacheKey::base("scratch", &platform);
//! let args = BTreeMap::new();
//! let command = kiln_dockerfile::parse_onbuild_trigger("RUN make").unwrap().command;
//! let step = base.chain(&StepInputs { command: &command, args: &args, inputs: None, extra: &[] });
//! assert_eq!(step.to_string().len(), 64);
//! assert_ne!(step, base);
//! ```

pub mod entry;
pub mod key;
pub mod layout;
pub mod pusher;
pub mod registry;
pub mod store;
pub mod warm;

use std::path::PathBuf;

use kiln_oci::{Reference, RegistryError};

use crate::model::image::LayerRef;
use crate::options::{CacheOptions, CacheRepo};

pub use key::{CacheKey, StepInputs, Upstream};
pub use layout::OciLayoutCache;
pub use pusher::{CachePusher, StoreError};
pub use registry::RegistryCache;
pub use store::{open, open_at, LayerCache, PruneReport, StepStore, StoreSettings};

/// A step found in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedStep {
    /// The step's layer; `None` when the step changed nothing. Its origin
    /// says where the blob is (the cache repository, or a layout's blob
    /// file); nothing was downloaded.
    pub layer: Option<LayerRef>,
    /// The step's history text.
    pub created_by: String,
    /// When the entry was made (RFC 3339).
    pub created: String,
}

/// A cache problem. Lookups and background stores turn these into misses
/// and warnings; only `kiln cache prune` and `kiln warm` fail on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A registry request failed.
    #[error("cache repository {repo}: {source}")]
    Registry {
        /// The repository.
        repo: String,
        /// The registry's error.
        #[source]
        source: Box<RegistryError>,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The cache repository name is unusable.
    #[error("cache repository {repo:?}: {reason}")]
    InvalidRepo {
        /// As given.
        repo: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry refuses deletes.
    #[error("cache repository {repo}: the registry does not allow deleting manifests (HTTP 405 UNSUPPORTED); enable deletes (for the distribution registry: storage.delete.enabled: true, or REGISTRY_STORAGE_DELETE_ENABLED=true)")]
    DeleteUnsupported {
        /// The repository.
        repo: String,
    },
    /// A layer to store is in a registry and no client was given to fetch it.
    #[error("layer {digest} is in {reference}, and this cache has no registry client to fetch it")]
    RemoteLayer {
        /// The layer blob.
        digest: kiln_oci::Digest,
        /// Where it is.
        reference: String,
    },
    /// A file in an OCI layout is not what it should be.
    #[error("OCI layout {}: {reason}", path.display())]
    Layout {
        /// The layout directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl CacheError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CacheError {
        let path = path.into();
        move |source| CacheError::Io { path, source }
    }

    pub(crate) fn registry(repo: &str) -> impl FnOnce(RegistryError) -> CacheError + '_ {
        move |source| CacheError::Registry {
            repo: repo.to_string(),
            source: Box::new(source),
        }
    }
}

impl From<crate::layout::LayoutError> for CacheError {
    /// The cache's words for a layout problem, as before the format had a
    /// module of its own.
    fn from(e: crate::layout::LayoutError) -> CacheError {
        match e {
            crate::layout::LayoutError::Io { path, source } => CacheError::Io { path, source },
            crate::layout::LayoutError::Digest {
                path,
                actual,
                expected,
            } => CacheError::Layout {
                path,
                reason: format!("has digest {actual}, expected {expected}"),
            },
            crate::layout::LayoutError::Document { path, source } => CacheError::Layout {
                path,
                reason: source.to_string(),
            },
        }
    }
}

/// Where cache entries live, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A registry repository (its tag, if any, is not used).
    Registry(Reference),
    /// An OCI image layout directory.
    Layout(PathBuf),
}

impl CacheLocation {
    /// Where `repo` names.
    ///
    /// # Errors
    /// As [`parse_repo`].
    pub fn of(repo: &CacheRepo) -> Result<CacheLocation, CacheError> {
        match repo {
            CacheRepo::OciLayout(path) => Ok(CacheLocation::Layout(path.clone())),
            CacheRepo::Registry(repo) => parse_repo(repo).map(CacheLocation::Registry),
        }
    }
}

/// Where the cache lives for these options: `--cache-repo` when given, else
/// (as in Kaniko) `<first destination's repository>/cache`. `None` when the
/// cache is off or there is nowhere to put it.
///
/// # Errors
/// [`CacheError::InvalidRepo`] for a repository that does not parse or
/// names a digest.
pub fn cache_repo_reference(
    options: &CacheOptions,
    first_destination: Option<&Reference>,
) -> Result<Option<CacheLocation>, CacheError> {
    if !options.enabled {
        return Ok(None);
    }
    match &options.repo {
        Some(repo) => CacheLocation::of(repo).map(Some),
        None => match first_destination {
            Some(dest) => {
                let name = format!("{}/cache", dest.repository());
                dest.with_repository(&name)
                    .map(|r| Some(CacheLocation::Registry(r)))
                    .map_err(|e| CacheError::InvalidRepo {
                        repo: format!("{}/{name}", dest.registry()),
                        reason: e.to_string(),
                    })
            }
            None => Ok(None),
        },
    }
}

/// Parses a cache repository name; a tag is ignored (entries are tagged by key).
///
/// # Errors
/// [`CacheError::InvalidRepo`] when it does not parse or names a digest.
pub fn parse_repo(repo: &str) -> Result<Reference, CacheError> {
    let invalid = |reason: String| CacheError::InvalidRepo {
        repo: repo.to_string(),
        reason,
    };
    let r = Reference::parse(repo).map_err(|e| invalid(e.to_string()))?;
    if r.digest().is_some() {
        return Err(invalid("a cache repository cannot name a digest".into()));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn options(repo: Option<CacheRepo>) -> CacheOptions {
        CacheOptions {
            enabled: true,
            repo,
            push: true,
            dir: "/cache".into(),
            ttl: Duration::from_secs(60),
            copy_layers: true,
            run_layers: true,
            compressed: true,
        }
    }

    #[test]
    fn the_default_repo_is_the_first_destination_plus_cache() {
        let dest: Reference = "reg.example:5000/team/app:1".parse().unwrap();
        let got = cache_repo_reference(&options(None), Some(&dest)).unwrap();
        match got {
            Some(CacheLocation::Registry(r)) => {
                assert_eq!(r.name(), "reg.example:5000/team/app/cache")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cache_repo_reference(&options(None), None).unwrap(), None);
        let mut off = options(None);
        off.enabled = false;
        assert_eq!(cache_repo_reference(&off, Some(&dest)).unwrap(), None);
    }

    #[test]
    fn explicit_repos_win() {
        let dest: Reference = "reg.example/app".parse().unwrap();
        let r = cache_repo_reference(
            &options(Some(CacheRepo::Registry("other.example/c".into()))),
            Some(&dest),
        )
        .unwrap();
        assert!(matches!(r, Some(CacheLocation::Registry(r)) if r.name() == "other.example/c"));
        let l =
            cache_repo_reference(&options(Some(CacheRepo::OciLayout("/x".into()))), None).unwrap();
        assert_eq!(l, Some(CacheLocation::Layout("/x".into())));
        let bad = options(Some(CacheRepo::Registry(format!(
            "r.example/c@{}",
            kiln_oci::Digest::sha256_of(b"")
        ))));
        assert!(cache_repo_reference(&bad, None).is_err());
    }
}
