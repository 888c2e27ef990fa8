//! Image references (`busybox`, `ghcr.io/org/app:1.0`, `repo@sha256:…`) with
//! Docker's normalisation rules.
//!
//! Hand-written rather than taken from a crate: the grammar is small, and the
//! crates that exist either skip Docker's normalisation (`library/`, the
//! `index.docker.io` alias, the `latest` default) or reject forms Docker
//! accepts. The rules follow Docker's `distribution/reference` package.

use crate::digest::Digest;
use std::fmt;
use std::str::FromStr;

/// The registry Docker Hub references normalise to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The key Docker writes for Docker Hub in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    input: String,
    reason: String,
}

impl ReferenceError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        ReferenceError {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// The text that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// A normalised image reference: registry, repository path, and a tag and/or
/// digest. A reference parsed without either gets the tag `latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input` the way `docker pull` does.
    ///
    /// # Errors
    /// A [`ReferenceError`] naming the input and what is wrong with it.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::new(input, "empty reference"));
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ReferenceError::new(
                input,
                "a 64-character hex string is an image ID, not a repository name",
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|e| ReferenceError::new(input, format!("bad digest: {e}")))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A tag is the part after the last ':' unless that ':' is followed by
        // a '/' (then it is a registry port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(input, tag)?;
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::new(
                input,
                "repository name longer than 255 characters",
            ));
        }
        let (registry, repository) = split_registry(name);
        check_registry(input, &registry)?;
        check_repository(input, &repository)?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry, normalised (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to send registry API calls to (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        api_host_for(&self.registry)
    }

    /// The repository path used in API calls (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put after `/manifests/` in an API call: the digest when
    /// present (it pins the content), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with `tag` and no digest.
    ///
    /// # Errors
    /// When `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag, tag)?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Another repository on the same registry, tagged `latest`.
    ///
    /// # Errors
    /// When `repository` is not a valid repository path.
    pub fn with_repository(&self, repository: &str) -> Result<Reference, ReferenceError> {
        check_repository(repository, repository)?;
        Ok(Reference {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            tag: Some(DEFAULT_TAG.to_string()),
            digest: None,
        })
    }

    /// The short form Docker prints: `busybox:latest`, `user/app:1`, or the
    /// full form for other registries.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        let mut out = name;
        push_suffix(&mut out, self.tag.as_deref(), self.digest.as_ref());
        out
    }
}

/// The API host for a normalised registry name.
pub fn api_host_for(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

fn push_suffix(out: &mut String, tag: Option<&str>, digest: Option<&Digest>) {
    if let Some(t) = tag {
        out.push(':');
        out.push_str(t);
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(&d.to_string());
    }
}

/// Splits a name into (registry, repository) by Docker's rule: the first
/// component is a registry when it contains `.` or `:`, is `localhost`, or
/// has uppercase letters (repositories are lowercase).
fn split_registry(name: &str) -> (String, String) {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    (registry, repository)
}

fn check_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let valid = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ReferenceError::new(
            input,
            format!("bad tag {tag:?} (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"),
        ))
    }
}

fn check_registry(input: &str, registry: &str) -> Result<(), ReferenceError> {
    let bad = |why: &str| ReferenceError::new(input, format!("bad registry {registry:?}: {why}"));
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // IPv6 literal: [::1]:5000
        let (addr, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad("bad IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => (
                None,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("port must be digits"));
        }
    }
    if let Some(host) = host {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(component_ok) {
            return Err(bad(
                "host names are letters, digits and '-' separated by '.'",
            ));
        }
    }
    Ok(())
}

fn check_repository(input: &str, repository: &str) -> Result<(), ReferenceError> {
    if repository.is_empty() {
        return Err(ReferenceError::new(input, "empty repository name"));
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::new(
            input,
            "repository name must be lowercase",
        ));
    }
    for component in repository.split('/') {
        if !path_component_ok(component) {
            return Err(ReferenceError::new(
                input,
                format!(
                    "bad path component {component:?} (lowercase letters and digits, \
                     separated by '.', '_', '__' or '-')"
                ),
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// The full form: `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        push_suffix(&mut out, self.tag.as_deref(), self.digest.as_ref());
        f.write_str(&out)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// (input, full form, familiar form), mostly from Docker's normalisation tests.
    #[test]
    fn normalises_like_docker() {
        let dd = format!("busybox@{D}");
        let dd_full = format!("docker.io/library/busybox@{D}");
        let td = format!("ghcr.io/o/app:v1@{D}");
        let cases: Vec<(&str, String, String)> = vec![
            (
                "busybox",
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36".into(),
                "busybox:1.36".into(),
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "index.docker.io/foo/bar",
                "docker.io/foo/bar:latest".into(),
                "foo/bar:latest".into(),
            ),
            (
                "foo/bar/baz",
                "docker.io/foo/bar/baz:latest".into(),
                "foo/bar/baz:latest".into(),
            ),
            (
                "localhost/app",
                "localhost/app:latest".into(),
                "localhost/app:latest".into(),
            ),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t".into(),
                "localhost:5000/a/b:t".into(),
            ),
            (
                "127.0.0.1:5000/x",
                "127.0.0.1:5000/x:latest".into(),
                "127.0.0.1:5000/x:latest".into(),
            ),
            (
                "[::1]:5000/x:y",
                "[::1]:5000/x:y".into(),
                "[::1]:5000/x:y".into(),
            ),
            (
                "Foo.com/app",
                "Foo.com/app:latest".into(),
                "Foo.com/app:latest".into(),
            ),
            (
                "a.b/c__d/e-f--g.h_i",
                "a.b/c__d/e-f--g.h_i:latest".into(),
                "a.b/c__d/e-f--g.h_i:latest".into(),
            ),
            (&dd, dd_full, dd.clone()),
            (&td, td.clone(), td.clone()),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "full form of {input}");
            assert_eq!(r.familiar(), familiar, "familiar form of {input}");
            assert_eq!(
                r.to_string().parse::<Reference>().unwrap(),
                r,
                "round trip of {input}"
            );
        }
    }

    #[test]
    fn rejects_bad_references() {
        let long_tag = format!("a:{}", "t".repeat(129));
        let hex_name = "a".repeat(64);
        let long_name = format!("a/{}", "b".repeat(256));
        let bad = [
            ("", "empty"),
            ("Uppercase", "lowercase"),
            ("docker.io/Upper/x", "lowercase"),
            ("a:", "bad tag"),
            ("a:-x", "bad tag"),
            (long_tag.as_str(), "bad tag"),
            ("a@sha256:abc", "bad digest"),
            ("a@", "bad digest"),
            ("a//b", "bad path component"),
            ("a/b/", "bad path component"),
            ("a/.b", "bad path component"),
            ("a/b...c", "bad path component"),
            ("a/b___c", "bad path component"),
            ("host:port/x", "port must be digits"),
            ("-host.com/x", "bad registry"),
            ("[::1/x", "unclosed"),
            (hex_name.as_str(), "image ID"),
            (long_name.as_str(), "255"),
            ("a b", "bad"),
        ];
        for (input, why) in bad {
            let err = Reference::parse(input).expect_err(input).to_string();
            assert!(err.contains(why), "{input}: {err} should mention {why}");
        }
    }

    #[test]
    fn api_parts() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.manifest_reference(), "latest");
        let pinned = r.with_digest(D.parse().unwrap());
        assert_eq!(pinned.manifest_reference(), D);
        assert_eq!(pinned.tag(), Some("latest"));
        let q = Reference::parse("quay.io/o/x:1").unwrap();
        assert_eq!(q.api_host(), "quay.io");
        assert_eq!(q.with_tag("2").unwrap().to_string(), "quay.io/o/x:2");
        assert!(q.with_tag("bad tag").is_err());
        assert_eq!(
            q.with_repository("o/cache").unwrap().to_string(),
            "quay.io/o/cache:latest"
        );
    }
}
