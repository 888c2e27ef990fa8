//! Parsing a remote `--context` into the kind of source it names, with
//! Kaniko's syntax (and BuildKit's `#ref:subdir` for git).
//!
//! | given | source |
//! | --- | --- |
//! | `tar://stdin`, `-` | a tar (plain or gzip) read from standard input |
//! | `git://host/repo.git#ref#commit` | git, cloned over `GIT_PULL_METHOD` (https unless `http`, or `git` for the git daemon protocol) |
//! | `https://host/repo.git#ref:subdir`, `http://…/repo.git`, `ssh://…`, `git@host:repo` | git, as given |
//! | `https://<account>.blob.core.windows.net/<container>/<path>`, `az://<container>/<path>` | Azure Blob |
//! | `s3://bucket/path`, `gs://bucket/path` | S3, GCS |
//! | any other `https://` or `http://` URL | a tarball downloaded over HTTP |
//!
//! An object-store path that is empty or ends in `/` names `context.tar.gz`
//! in that folder, as Kaniko does.

use serde::Serialize;
use std::fmt;

/// The object name Kaniko reads when a bucket path names a folder.
pub const DEFAULT_OBJECT: &str = "context.tar.gz";

/// A remote build context.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum RemoteContext {
    /// A tar archive read from standard input.
    Stdin,
    /// A tarball downloaded over HTTP(S).
    Tarball {
        /// The URL (shown without credentials).
        #[serde(serialize_with = "redacted")]
        url: String,
    },
    /// A git repository.
    Git(GitContext),
    /// An S3 (or S3-compatible) object.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
    /// A Google Cloud Storage object.
    Gcs {
        /// The bucket.
        bucket: String,
        /// The object name.
        key: String,
    },
    /// An Azure Blob Storage blob.
    Azure {
        /// The storage account, when the URL names it.
        account: Option<String>,
        /// The container.
        container: String,
        /// The blob name.
        key: String,
    },
}

/// Where a git context comes from and what to check out.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct GitContext {
    /// The repository URL as written (a `git://` URL is rewritten by
    /// [`GitContext::clone_url`]).
    #[serde(serialize_with = "redacted")]
    pub url: String,
    /// The branch, tag, full ref or commit to check out; the remote's HEAD when absent.
    pub reference: Option<String>,
    /// A commit to check out after fetching `reference` (Kaniko's second `#`).
    pub commit: Option<String>,
    /// A directory inside the repository to use as the context (BuildKit's `:subdir`).
    pub subdir: Option<String>,
}

/// Why a context location could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("build context {context}: {reason}")]
pub struct SpecError {
    /// The context, credentials removed.
    pub context: String,
    /// What is wrong.
    pub reason: String,
}

impl RemoteContext {
    /// Parses `spec`. Returns `Ok(None)` for a local directory or tar file
    /// (`DIR`, `dir://DIR`, `tar://PATH`), which are not remote.
    pub fn parse(spec: &str) -> Result<Option<RemoteContext>, SpecError> {
        let bad = |reason: &str| SpecError {
            context: redact(spec),
            reason: reason.to_string(),
        };
        if spec == "-" || spec == "tar://stdin" {
            return Ok(Some(RemoteContext::Stdin));
        }
        if is_scp_like(spec) {
            return GitContext::parse(spec).map(|g| Some(RemoteContext::Git(g)));
        }
        let Some((scheme, rest)) = spec.split_once("://") else {
            return Ok(None);
        };
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "dir" | "tar" => Ok(None),
            "git" | "ssh" | "git+ssh" => {
                GitContext::parse(spec).map(|g| Some(RemoteContext::Git(g)))
            }
            "s3" | "gs" => {
                let (bucket, key) = bucket_and_key(rest);
                if bucket.is_empty() {
                    return Err(bad("no bucket name"));
                }
                Ok(Some(if scheme == "s3" {
                    RemoteContext::S3 { bucket, key }
                } else {
                    RemoteContext::Gcs { bucket, key }
                }))
            }
            "az" | "azure" => {
                let (container, key) = bucket_and_key(rest);
                if container.is_empty() {
                    return Err(bad("no container name"));
                }
                Ok(Some(RemoteContext::Azure {
                    account: None,
                    container,
                    key,
                }))
            }
            "http" | "https" => {
                let url = url::Url::parse(spec).map_err(|e| bad(&e.to_string()))?;
                let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
                if let Some(account) = host.strip_suffix(".blob.core.windows.net") {
                    let (container, key) = bucket_and_key(url.path().trim_start_matches('/'));
                    if container.is_empty() {
                        return Err(bad("no container in the Azure Blob URL"));
                    }
                    return Ok(Some(RemoteContext::Azure {
                        account: Some(account.to_string()),
                        container,
                        key,
                    }));
                }
                let path = spec.split('#').next().unwrap_or(spec);
                let path = path.split('?').next().unwrap_or(path);
                if path.trim_end_matches('/').ends_with(".git") {
                    return GitContext::parse(spec).map(|g| Some(RemoteContext::Git(g)));
                }
                Ok(Some(RemoteContext::Tarball {
                    url: spec.to_string(),
                }))
            }
            _ => Ok(None),
        }
    }
}

impl GitContext {
    /// Parses `URL[#REF[:SUBDIR]][#COMMIT]`.
    pub fn parse(spec: &str) -> Result<GitContext, SpecError> {
        let bad = |reason: String| SpecError {
            context: redact(spec),
            reason,
        };
        let mut parts = spec.splitn(3, '#');
        let url = parts.next().unwrap_or_default().to_string();
        let fragment = parts.next().filter(|f| !f.is_empty());
        let commit = parts.next().filter(|c| !c.is_empty()).map(str::to_string);
        let (reference, subdir) = match fragment {
            None => (None, None),
            Some(f) => match f.split_once(':') {
                Some((r, s)) => (
                    Some(r).filter(|r| !r.is_empty()).map(str::to_string),
                    Some(s).filter(|s| !s.is_empty()).map(str::to_string),
                ),
                None => (Some(f.to_string()), None),
            },
        };
        if url.is_empty() {
            return Err(bad("no repository URL".into()));
        }
        if let Some(sub) = &subdir {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Err(bad(format!(
                    "sub-directory {sub:?} must be a relative path inside the repository"
                )));
            }
        }
        if let Some(c) = &commit {
            if !is_commit_id(c) {
                return Err(bad(format!("{c:?} is not a commit id (40 hex digits)")));
            }
        }
        Ok(GitContext {
            url,
            reference,
            commit,
            subdir,
        })
    }

    /// The URL to clone. `git://` contexts follow Kaniko: they are fetched
    /// over `https` unless `GIT_PULL_METHOD` is `http`; kiln also accepts
    /// `git` there to speak the git daemon protocol itself.
    pub fn clone_url(&self, pull_method: Option<&str>) -> String {
        match self.url.strip_prefix("git://") {
            Some(rest) => {
                let scheme = match pull_method {
                    Some("http") => "http",
                    Some("git") => "git",
                    _ => "https",
                };
                format!("{scheme}://{rest}")
            }
            None => self.url.clone(),
        }
    }
}

/// True for a full (40 hex digits) or abbreviated-looking commit id used as a ref.
pub fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `user@host:path`, git's scp-like syntax (no `://`, a `@` before the first `:`).
fn is_scp_like(spec: &str) -> bool {
    if spec.contains("://") {
        return false;
    }
    match (spec.find('@'), spec.find(':')) {
        (Some(at), Some(colon)) => at > 0 && at < colon && !spec[..colon].contains('/'),
        _ => false,
    }
}

fn bucket_and_key(rest: &str) -> (String, String) {
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let key = if key.is_empty() || key.ends_with('/') {
        format!("{key}{DEFAULT_OBJECT}")
    } else {
        key.to_string()
    };
    (bucket.to_string(), key)
}

/// `spec` with any password or token in a URL's user part replaced by `***`.
pub fn redact(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = &rest[..at];
            // An ssh login name (`git@`) is no secret; an http user part
            // without a password is usually a token.
            let ssh = matches!(
                scheme.to_ascii_lowercase().as_str(),
                "ssh" | "git+ssh" | "ssh+git"
            );
            let shown = match user.split_once(':') {
                Some((name, _)) => format!("{name}:***"),
                None if ssh => user.to_string(),
                None => "***".to_string(),
            };
            format!("{scheme}://{shown}@{}", &rest[at + 1..])
        }
        None => spec.to_string(),
    }
}

fn redacted<S: serde::Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact(value))
}

impl fmt::Display for RemoteContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteContext::Stdin => write!(f, "tar://stdin"),
            RemoteContext::Tarball { url } => write!(f, "{}", redact(url)),
            RemoteContext::Git(g) => {
                write!(f, "{}", redact(&g.url))?;
                if let Some(r) = &g.reference {
                    write!(f, "#{r}")?;
                }
                if let Some(s) = &g.subdir {
                    write!(f, ":{s}")?;
                }
                if let Some(c) = &g.commit {
                    write!(f, "#{c}")?;
                }
                Ok(())
            }
            RemoteContext::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            RemoteContext::Gcs { bucket, key } => write!(f, "gs://{bucket}/{key}"),
            RemoteContext::Azure {
                account: Some(account),
                container,
                key,
            } => write!(
                f,
                "https://{account}.blob.core.windows.net/{container}/{key}"
            ),
            RemoteContext::Azure {
                account: None,
                container,
                key,
            } => write!(f, "az://{container}/{key}"),
        }
    }
}

impl fmt::Debug for RemoteContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteContext({self})")
    }
}

impl fmt::Debug for GitContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitContext({})", RemoteContext::Git(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(spec: &str) -> GitContext {
        match RemoteContext::parse(spec).unwrap() {
            Some(RemoteContext::Git(g)) => g,
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn kinds_follow_kaniko() {
        assert_eq!(RemoteContext::parse("/ws").unwrap(), None);
        assert_eq!(RemoteContext::parse("dir:///ws").unwrap(), None);
        assert_eq!(RemoteContext::parse("tar:///c.tgz").unwrap(), None);
        assert_eq!(
            RemoteContext::parse("-").unwrap(),
            Some(RemoteContext::Stdin)
        );
        assert_eq!(
            RemoteContext::parse("tar://stdin").unwrap(),
            Some(RemoteContext::Stdin)
        );
        assert_eq!(
            RemoteContext::parse("s3://b/dir/").unwrap(),
            Some(RemoteContext::S3 {
                bucket: "b".into(),
                key: "dir/context.tar.gz".into()
            })
        );
        assert_eq!(
            RemoteContext::parse("gs://b").unwrap(),
            Some(RemoteContext::Gcs {
                bucket: "b".into(),
                key: "context.tar.gz".into()
            })
        );
        assert_eq!(
            RemoteContext::parse("https://acct.blob.core.windows.net/c/x/ctx.tar.gz").unwrap(),
            Some(RemoteContext::Azure {
                account: Some("acct".into()),
                container: "c".into(),
                key: "x/ctx.tar.gz".into()
            })
        );
        assert_eq!(
            RemoteContext::parse("https://h/ctx.tar.gz").unwrap(),
            Some(RemoteContext::Tarball {
                url: "https://h/ctx.tar.gz".into()
            })
        );
        assert!(RemoteContext::parse("s3:///key").is_err());
    }

    #[test]
    fn git_refs_commits_and_subdirs() {
        let g = git("git://github.com/org/repo.git#refs/heads/main#0123456789012345678901234567890123456789");
        assert_eq!(g.reference.as_deref(), Some("refs/heads/main"));
        assert_eq!(
            g.commit.as_deref(),
            Some("0123456789012345678901234567890123456789")
        );
        assert_eq!(g.clone_url(None), "https://github.com/org/repo.git");
        assert_eq!(g.clone_url(Some("http")), "http://github.com/org/repo.git");
        assert_eq!(g.clone_url(Some("git")), "git://github.com/org/repo.git");
        let g = git("https://h/org/repo.git#v1.2:app/web");
        assert_eq!(g.reference.as_deref(), Some("v1.2"));
        assert_eq!(g.subdir.as_deref(), Some("app/web"));
        assert_eq!(g.clone_url(Some("http")), "https://h/org/repo.git");
        let g = git("git@github.com:org/repo.git#:sub");
        assert_eq!(g.url, "git@github.com:org/repo.git");
        assert_eq!(g.reference, None);
        assert_eq!(g.subdir.as_deref(), Some("sub"));
        assert!(git("ssh://git@h/r.git").reference.is_none());
        assert!(RemoteContext::parse("https://h/r.git#main:../x").is_err());
        assert!(RemoteContext::parse("git://h/r.git#main#notasha").is_err());
    }

    #[test]
    fn credentials_never_shown() {
        let spec = "https://user:s3cret@h/org/repo.git#main";
        let parsed = RemoteContext::parse(spec).unwrap().unwrap();
        assert!(!parsed.to_string().contains("s3cret"), "{parsed}");
        assert!(!format!("{parsed:?}").contains("s3cret"));
        assert_eq!(redact("https://tok@h/x"), "https://***@h/x");
        assert_eq!(redact("https://h/x@y"), "https://h/x@y");
        assert_eq!(redact("ssh://git@h:22/x"), "ssh://git@h:22/x");
        assert_eq!(redact("ssh://git:pw@h/x"), "ssh://git:***@h/x");
    }
}
