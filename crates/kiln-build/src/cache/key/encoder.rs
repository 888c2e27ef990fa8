//! The one byte encoding every cache-key hash is written in.
//!
//! Hand-written rather than taken from a serialization crate: the bytes are
//! hashed, never read back, and must stay identical across releases of any
//! dependency; a few lines that say exactly what is written are easier to
//! keep stable than a serializer's choices.
//!
//! Every stream starts with a header: `field("kiln-cache-key")
//! u32(KEY_FORMAT_VERSION) field(domain)`. A *field* is a big-endian `u64`
//! byte length followed by the bytes, so no value can forge a boundary. A
//! *named* value is `field(name)` then a type byte then the value:
//!
//! | type | byte | value |
//! |------|------|-------|
//! | text / bytes | `s` | `field(bytes)` |
//! | absent optional | `-` | nothing |
//! | boolean | `b` | one byte, 0 or 1 |
//! | number | `n` | big-endian `u64` |
//! | list | `l` | big-endian `u64` count, then the items |
//!
//! Names make a value's role part of the hash: a `--chown` and a `--chmod`
//! with the same text, or an absent field and an empty one, never collide.

use kiln_oci::Digest;
use sha2::{Digest as _, Sha256};

use super::KEY_FORMAT_VERSION;

const MAGIC: &[u8] = b"kiln-cache-key";

/// A sha256 stream of named, length-prefixed values.
pub(crate) struct Encoder(Sha256);

impl Encoder {
    /// Starts a stream for `domain` (`"base"`, `"step"`, `"copy-inputs"`...).
    pub fn new(domain: &str) -> Encoder {
        let mut e = Encoder(Sha256::new());
        e.field(MAGIC);
        e.0.update(KEY_FORMAT_VERSION.to_be_bytes());
        e.field(domain.as_bytes());
        e
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn name(&mut self, name: &str, kind: u8) {
        self.field(name.as_bytes());
        self.0.update([kind]);
    }

    /// A text value.
    pub fn str(&mut self, name: &str, value: &str) {
        self.bytes(name, value.as_bytes());
    }

    /// A byte string.
    pub fn bytes(&mut self, name: &str, value: &[u8]) {
        self.name(name, b's');
        self.field(value);
    }

    /// An optional text value: absent differs from empty.
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(name, v),
            None => self.name(name, b'-'),
        }
    }

    /// A boolean.
    pub fn bool(&mut self, name: &str, value: bool) {
        self.name(name, b'b');
        self.0.update([u8::from(value)]);
    }

    /// A number.
    pub fn num(&mut self, name: &str, value: u64) {
        self.name(name, b'n');
        self.0.update(value.to_be_bytes());
    }

    /// An optional number: absent differs from zero.
    pub fn opt_num(&mut self, name: &str, value: Option<u64>) {
        match value {
            Some(v) => self.num(name, v),
            None => self.name(name, b'-'),
        }
    }

    /// The start of a list of `len` items; the caller writes each item.
    pub fn list(&mut self, name: &str, len: usize) {
        self.name(name, b'l');
        self.0.update((len as u64).to_be_bytes());
    }

    /// A list of text values.
    pub fn strs(&mut self, name: &str, values: &[String]) {
        self.list(name, values.len());
        for v in values {
            self.str("item", v);
        }
    }

    /// The sha256 of everything written.
    pub fn finish(self) -> Digest {
        Digest::from_sha256(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(write: impl FnOnce(&mut Encoder)) -> Digest {
        let mut e = Encoder::new("test");
        write(&mut e);
        e.finish()
    }

    #[test]
    fn names_types_and_boundaries_all_count() {
        let all = [
            digest(|e| e.str("a", "bc")),
            digest(|e| e.str("ab", "c")),
            digest(|e| e.str("a", "")),
            digest(|e| e.opt_str("a", None)),
            digest(|e| e.bool("a", false)),
            digest(|e| e.num("a", 0)),
            digest(|e| e.list("a", 0)),
            digest(|e| e.strs("a", &["b".into(), "c".into()])),
            digest(|e| e.strs("a", &["bc".into()])),
            digest(|e| {
                e.str("a", "b");
                e.str("c", "d");
            }),
            digest(|e| e.str("a", "bcd")),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // `a` absent vs present-and-empty: the case a text-only form merges.
        assert_ne!(
            digest(|e| e.opt_str("a", None)),
            digest(|e| e.opt_str("a", Some("")))
        );
        // Domains separate streams that write the same values.
        let mut other = Encoder::new("other");
        other.str("a", "bc");
        assert_ne!(other.finish(), all[0]);
    }
}
