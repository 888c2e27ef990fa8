//! `--context`, `--context-sub-path`, `--git` and `--dockerfile`: where the build reads from.

use std::path::{Component, Path, PathBuf};

use kiln_build::options::{ContextSource, DockerfileLocation};

use super::error::{invalid, OptionsError};

/// Schemes Kaniko reads contexts from that kiln does not.
pub(crate) fn resolve_context(
    context: &str,
    sub_path: Option<&str>,
    git: Option<&str>,
) -> Result<ContextSource, OptionsError> {
    let bad = |reason: String| OptionsError::InvalidContext {
        context: kiln_source::spec::redact(context),
        reason,
    };
    if context.is_empty() {
        return Err(bad("empty; give a directory with --context".to_string()));
    }
    let sub_path = match sub_path.filter(|s| !s.is_empty()) {
        None => None,
        Some(sub) => {
            let path = PathBuf::from(sub);
            if path
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(invalid(
                    "--context-sub-path",
                    sub,
                    "must be a relative path inside the context (no `..`, not absolute)",
                ));
            }
            Some(path)
        }
    };
    let git = match git {
        Some(value) => kiln_source::GitOptions::parse(value).map_err(|source| {
            OptionsError::InvalidGitOptions {
                value: value.to_string(),
                source,
            }
        })?,
        None => kiln_source::GitOptions::default(),
    };
    if let Some(source) =
        kiln_source::RemoteContext::parse(context).map_err(OptionsError::InvalidRemoteContext)?
    {
        return Ok(ContextSource::Remote {
            source,
            git,
            sub_path,
        });
    }
    let (scheme, rest) = match context.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, context),
    };
    match scheme.as_deref() {
        None | Some("dir") => {
            let dir = match &sub_path {
                Some(sub) => Path::new(rest).join(sub),
                None => PathBuf::from(rest),
            };
            if !dir.is_dir() {
                return Err(bad(format!("{} is not a directory", dir.display())));
            }
            Ok(ContextSource::Dir(dir))
        }
        Some("tar") => {
            if !Path::new(rest).is_file() {
                return Err(bad(format!("{rest} is not a file")));
            }
            Ok(ContextSource::Tar {
                archive: PathBuf::from(rest),
                sub_path,
            })
        }
        Some(s) => Err(bad(format!("unknown scheme {s}://"))),
    }
}

pub(crate) fn resolve_dockerfile(
    dockerfile: &str,
    context: &ContextSource,
) -> Result<DockerfileLocation, OptionsError> {
    if dockerfile.starts_with("http://") || dockerfile.starts_with("https://") {
        return Err(OptionsError::UnsupportedDockerfile {
            path: dockerfile.to_string(),
        });
    }
    if dockerfile.is_empty() {
        return Err(OptionsError::DockerfileNotFound {
            path: String::new(),
        });
    }
    let as_given = Path::new(dockerfile);
    if as_given.is_file() {
        return Ok(DockerfileLocation::File(as_given.to_path_buf()));
    }
    match context {
        ContextSource::Dir(dir) if dir.join(as_given).is_file() => {
            Ok(DockerfileLocation::File(dir.join(as_given)))
        }
        ContextSource::Tar { .. } | ContextSource::Remote { .. } if as_given.is_relative() => {
            Ok(DockerfileLocation::InContext(as_given.to_path_buf()))
        }
        _ => Err(OptionsError::DockerfileNotFound {
            path: dockerfile.to_string(),
        }),
    }
}
