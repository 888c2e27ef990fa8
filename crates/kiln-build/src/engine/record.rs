//! What the build read and did, as it happens, for the provenance: every
//! image pulled (base, `COPY --from`, `RUN --mount from=`) by manifest
//! digest, every `ADD <url>` body by sha256, and every step with the cache
//! it came from. Recording is a few pushes under a lock per step, so it is
//! always on; only writing the provenance is asked for.

use kiln_attest::provenance::{Material, StepRecord};
use kiln_oci::{Digest, Platform, Reference};
use std::sync::Mutex;

/// The facts of one build, shared by its stages.
#[derive(Debug, Default)]
pub(crate) struct BuildRecorder {
    inner: Mutex<Recorded>,
}

/// What [`BuildRecorder`] holds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorded {
    pub materials: Vec<Material>,
    pub steps: Vec<StepRecord>,
}

impl BuildRecorder {
    /// An image the build read, resolved to `digest`.
    pub(crate) fn image(&self, reference: &Reference, digest: &Digest, platform: &Platform) {
        let version = reference
            .tag()
            .map(str::to_string)
            .unwrap_or_else(|| digest.to_string());
        let uri = kiln_attest::purl::docker(
            &familiar_name(reference),
            &version,
            Some(&platform.to_string()),
        );
        self.lock().materials.push(Material {
            uri,
            sha256: digest.hex().to_string(),
            sha1: None,
        });
    }

    /// A file `ADD` downloaded from `url`, whose body hashed to `digest`.
    pub(crate) fn download(&self, url: &str, digest: &Digest) {
        self.lock().materials.push(Material {
            uri: url.to_string(),
            sha256: digest.hex().to_string(),
            sha1: None,
        });
    }

    /// A git source `ADD` checked out at `commit` (pinned by sha1, as
    /// BuildKit records git materials).
    pub(crate) fn git(&self, source: &str, commit: &str) {
        self.lock().materials.push(Material {
            uri: source.to_string(),
            sha256: String::new(),
            sha1: Some(commit.to_string()),
        });
    }

    /// A step that ran (`cache_origin` `None`) or came from that cache.
    pub(crate) fn step(&self, step: StepRecord) {
        self.lock().steps.push(step);
    }

    /// Everything so far, steps in stage order (each stage's in the order
    /// they ran; stages of one level run concurrently).
    pub(crate) fn snapshot(&self) -> Recorded {
        let mut out = self.lock().clone();
        out.steps.sort_by_key(|s| s.stage);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The repository as Docker prints it, without tag or digest.
pub(crate) fn familiar_name(r: &Reference) -> String {
    if r.registry() == kiln_oci::reference::DOCKER_HUB {
        r.repository()
            .strip_prefix("library/")
            .unwrap_or(r.repository())
            .to_string()
    } else {
        r.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_named_as_buildkit_names_them() {
        let rec = BuildRecorder::default();
        let d = Digest::sha256_of(b"m");
        let amd64 = Platform::new("linux", "amd64", None);
        rec.image(&Reference::parse("alpine:3.19").unwrap(), &d, &amd64);
        rec.image(
            &Reference::parse("localhost:5000/base").unwrap(),
            &d,
            &amd64,
        );
        let uris: Vec<String> = rec
            .snapshot()
            .materials
            .into_iter()
            .map(|m| m.uri)
            .collect();
        assert_eq!(
            uris,
            [
                "pkg:docker/alpine@3.19?platform=linux%2Famd64",
                "pkg:docker/localhost%3A5000/base@latest?platform=linux%2Famd64"
            ]
        );
    }
}
