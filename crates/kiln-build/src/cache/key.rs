//! Cache keys: a step's identity, chained from its stage's base.
//!
//! A key is the sha256 of a versioned, unambiguous byte encoding of
//! everything a step's result depends on (see [`crate::cache`] and
//! DESIGN.md, "Cache keys"). Its 64 hex characters are the entry's tag in
//! the cache repository.
//!
//! # Encoding (format [`KEY_FORMAT_VERSION`])
//! Every field is written as a big-endian `u64` byte length followed by the
//! bytes, so no two different inputs encode alike (no separator can be
//! forged by a value). Counts are big-endian `u64`s.
//!
//! * base: `field("kiln-cache-key") u32(version) field("base") field(parent)
//!   field(os) field(architecture) field(variant or "")`
//! * step: `field("kiln-cache-key") u32(version) field("step")
//!   field(parent key hex) field(instruction) u64(#args) (field(name)
//!   field(value))* u8(inputs present) [field(inputs digest)] u64(#extra)
//!   (field(name) field(value))*`
//!
//! Build args come from a `BTreeMap`, so they are encoded sorted by name and
//! the order they were given in never matters. `extra` pairs are encoded in
//! the order given: the caller decides their meaning.

use std::collections::BTreeMap;
use std::fmt;

use kiln_oci::{Digest, Platform};
use sha2::{Digest as _, Sha256};

/// Bumped whenever the encoding or what goes into it changes, so old entries
/// simply stop matching instead of being misread.
pub const KEY_FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8] = b"kiln-cache-key";

/// The identity of a step's result: equal keys mean interchangeable layers.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Digest);

/// What one step's result depends on, besides its parent's key.
#[derive(Debug, Clone, Copy)]
pub struct StepInputs<'a> {
    /// The canonical instruction after expansion (`RUN make`, `COPY a b`).
    pub instruction: &'a str,
    /// The build args the step can see (name → value).
    pub args: &'a BTreeMap<String, String>,
    /// The digest of the step's file inputs: COPY/ADD sources, the result of
    /// a `COPY --from` stage, RUN mount sources.
    pub inputs: Option<&'a Digest>,
    /// Anything else the result depends on, e.g. `("env", ...)`.
    pub extra: &'a [(String, String)],
}

/// Incremental encoder for the format described in the module docs.
struct Encoder(Sha256);

impl Encoder {
    fn new(kind: &str) -> Encoder {
        let mut e = Encoder(Sha256::new());
        e.field(MAGIC);
        e.0.update(KEY_FORMAT_VERSION.to_be_bytes());
        e.field(kind.as_bytes());
        e
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    fn finish(self) -> CacheKey {
        CacheKey(Digest::from_sha256(self.0.finalize().into()))
    }
}

impl CacheKey {
    /// The key a stage's chain starts from. `parent` is the base manifest
    /// digest, `"scratch"`, or another stage's final key (its string form).
    pub fn base(parent: &str, platform: &Platform) -> CacheKey {
        let mut e = Encoder::new("base");
        e.field(parent.as_bytes());
        e.field(platform.os.as_bytes());
        e.field(platform.architecture.as_bytes());
        e.field(platform.variant.as_deref().unwrap_or("").as_bytes());
        e.finish()
    }

    /// The key of the step that follows this one.
    pub fn chain(&self, step: &StepInputs<'_>) -> CacheKey {
        let mut e = Encoder::new("step");
        e.field(self.0.hex().as_bytes());
        e.field(step.instruction.as_bytes());
        e.count(step.args.len());
        for (name, value) in step.args {
            e.field(name.as_bytes());
            e.field(value.as_bytes());
        }
        match step.inputs {
            Some(d) => {
                e.0.update([1u8]);
                e.field(d.to_string().as_bytes());
            }
            None => e.0.update([0u8]),
        }
        e.count(step.extra.len());
        for (name, value) in step.extra {
            e.field(name.as_bytes());
            e.field(value.as_bytes());
        }
        e.finish()
    }

    /// The key a cache tag names, when `tag` is one (64 lowercase hex).
    pub fn from_tag(tag: &str) -> Option<CacheKey> {
        format!("sha256:{tag}").parse().ok().map(CacheKey)
    }

    /// The key as a digest.
    pub fn digest(&self) -> &Digest {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    /// The 64 hex characters, used as the registry tag.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key(
        instruction: &str,
        a: &BTreeMap<String, String>,
        inputs: Option<&Digest>,
        extra: &[(String, String)],
    ) -> CacheKey {
        CacheKey::base("scratch", &platform()).chain(&StepInputs {
            instruction,
            args: a,
            inputs,
            extra,
        })
    }

    #[test]
    fn display_is_a_valid_tag_and_round_trips() {
        let k = CacheKey::base("scratch", &platform());
        let tag = k.to_string();
        assert_eq!(tag.len(), 64);
        assert_eq!(CacheKey::from_tag(&tag), Some(k));
        assert_eq!(CacheKey::from_tag("latest"), None);
    }

    #[test]
    fn base_depends_on_parent_and_platform() {
        let a = CacheKey::base("scratch", &platform());
        assert_ne!(a, CacheKey::base("sha256:00", &platform()));
        assert_ne!(
            a,
            CacheKey::base("scratch", &Platform::new("linux", "arm64", None))
        );
        assert_ne!(
            CacheKey::base("scratch", &Platform::new("linux", "arm", Some("v7"))),
            CacheKey::base("scratch", &Platform::new("linux", "arm", Some("v6")))
        );
        assert_eq!(a, CacheKey::base("scratch", &platform()));
    }

    #[test]
    fn every_field_changes_the_key() {
        let none = args(&[]);
        let d1 = Digest::sha256_of(b"1");
        let d2 = Digest::sha256_of(b"2");
        let env = vec![("env".to_string(), "A=1".to_string())];
        let base = key("RUN make", &none, None, &[]);
        let variants = [
            key("RUN make all", &none, None, &[]),
            key("RUN make", &args(&[("V", "1")]), None, &[]),
            key("RUN make", &none, Some(&d1), &[]),
            key("RUN make", &none, None, &env),
        ];
        for v in &variants {
            assert_ne!(&base, v);
        }
        assert_ne!(
            key("RUN make", &none, Some(&d1), &[]),
            key("RUN make", &none, Some(&d2), &[])
        );
        assert_ne!(
            key("RUN make", &args(&[("V", "1")]), None, &[]),
            key("RUN make", &args(&[("V", "2")]), None, &[])
        );
        // The parent is part of the key.
        let other_parent = CacheKey::base("sha256:ab", &platform()).chain(&StepInputs {
            instruction: "RUN make",
            args: &none,
            inputs: None,
            extra: &[],
        });
        assert_ne!(base, other_parent);
    }

    #[test]
    fn field_boundaries_cannot_be_forged() {
        let none = args(&[]);
        // The same bytes split differently between name and value.
        assert_ne!(
            key("X", &args(&[("AB", "C")]), None, &[]),
            key("X", &args(&[("A", "BC")]), None, &[])
        );
        let e1 = vec![("ab".to_string(), "c".to_string())];
        let e2 = vec![("a".to_string(), "bc".to_string())];
        assert_ne!(key("X", &none, None, &e1), key("X", &none, None, &e2));
    }

    #[test]
    fn build_arg_insertion_order_does_not_matter() {
        let mut a = BTreeMap::new();
        a.insert("B".to_string(), "2".to_string());
        a.insert("A".to_string(), "1".to_string());
        let mut b = BTreeMap::new();
        b.insert("A".to_string(), "1".to_string());
        b.insert("B".to_string(), "2".to_string());
        assert_eq!(key("RUN x", &a, None, &[]), key("RUN x", &b, None, &[]));
    }

    #[test]
    fn the_encoding_is_stable() {
        // Computed independently from the documented encoding. A change here
        // means every existing cache entry stops matching: bump
        // KEY_FORMAT_VERSION when that is intended.
        let k = CacheKey::base("scratch", &platform());
        assert_eq!(
            k.to_string(),
            "c917d776a31e777c41ed17bd0bfe9a537f0e033e1af57f4eb494b97a4fca082f"
        );
    }
}
