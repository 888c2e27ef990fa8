//! Cache keys: a step's identity, chained from its stage's base. Every byte
//! that goes into a key is written here, and nowhere else.
//!
//! A key is the sha256 of a versioned, unambiguous encoding of everything a
//! step's result depends on (see [`crate::cache`] and ARCHITECTURE.md,
//! "Cache keys"). Its 64 hex characters are the entry's tag in the cache
//! repository.
//!
//! * `encoder`: the byte encoding (named, length-prefixed fields) that
//!   every hash below is written in.
//! * `command`: one instruction, field by field, with no catch-all.
//! * `files`: file inputs: a COPY/ADD plan's sources, a context tree
//!   bound into a RUN.
//!
//! # What goes in (format [`KEY_FORMAT_VERSION`])
//! * base (domain `base`): `parent` (base manifest digest, `scratch`, or
//!   another stage's final key), `os`, `architecture`, `variant`.
//! * step (domain `step`): the parent key, the expanded instruction
//!   (`command`), the build args the step can see, the digest of its file
//!   inputs when it has some, and its [`Upstream`] inputs (a `COPY --from`
//!   stage's key, a bind mount's source digest...).
//!
//! Build args come from a `BTreeMap`, so they are encoded sorted by name and
//! the order they were given in never matters. [`Upstream`] inputs are
//! encoded in the order given (the order of the flags and mounts).
//!
//! The keys of a fixed set of Dockerfiles are pinned by
//! `tests/cache_key_golden.rs`: a change to any key shows there, and must
//! come with a [`KEY_FORMAT_VERSION`] bump.

mod command;
mod encoder;
mod files;

use std::collections::BTreeMap;
use std::fmt;

use kiln_dockerfile::instructions::Command;
use kiln_oci::{Digest, Platform};

use encoder::Encoder;
pub use files::tree_digest;

/// Bumped whenever the encoding or what goes into it changes, so old entries
/// simply stop matching instead of being misread. 2: every instruction kind
/// encoded field by field instead of through its `Debug` text; file inputs
/// and context trees written in the same encoding.
pub const KEY_FORMAT_VERSION: u32 = 2;

/// The identity of a step's result: equal keys mean interchangeable layers.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Digest);

/// What one step's result depends on, besides its parent's key.
#[derive(Debug, Clone, Copy)]
pub struct StepInputs<'a> {
    /// The instruction after expansion (`RUN make`, `COPY a b`).
    pub command: &'a Command,
    /// The build args the step can see (name → value).
    pub args: &'a BTreeMap<String, String>,
    /// The digest of the step's file inputs: COPY/ADD sources
    /// ([`crate::copy::CopyPlan::inputs_digest`]).
    pub inputs: Option<&'a Digest>,
    /// What the step reads besides the context's files.
    pub extra: &'a [Upstream],
}

/// A step input that is not a file of the build context: what a
/// `COPY --from` or a RUN bind mount reads, named by its own identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `COPY --from=<stage>`: that stage's final key.
    CopyFromStage(CacheKey),
    /// `COPY --from=<image>`: the image's manifest digest.
    CopyFromImage(Digest),
    /// `RUN --mount=type=bind,from=<stage>`.
    MountStage {
        /// Where it is mounted.
        target: String,
        /// The stage's final key.
        key: CacheKey,
    },
    /// `RUN --mount=type=bind,from=<image>`.
    MountImage {
        /// Where it is mounted.
        target: String,
        /// The image's manifest digest.
        digest: Digest,
    },
    /// An `ADD` git source: the commit it resolved to, whatever its files.
    GitCommit {
        /// The source as written (credentials removed).
        source: String,
        /// The commit id.
        commit: String,
    },
    /// `RUN --mount=type=cache,from=`: what seeds a new cache.
    CacheSeed {
        /// Where the cache is mounted.
        target: String,
        /// The stage's final key or the image's digest.
        source: String,
    },
    /// `RUN --mount=type=bind` of the build context.
    MountContext {
        /// Where it is mounted.
        target: String,
        /// The bound tree's [`tree_digest`].
        tree: Digest,
    },
}

impl Upstream {
    /// The (name, value) pair the key encodes.
    fn pair(&self) -> (String, String) {
        match self {
            Upstream::CopyFromStage(key) => ("from-stage".into(), key.to_string()),
            Upstream::CopyFromImage(digest) => ("from-image".into(), digest.to_string()),
            Upstream::MountStage { target, key } => {
                (format!("mount-from-stage {target}"), key.to_string())
            }
            Upstream::MountImage { target, digest } => {
                (format!("mount-from-image {target}"), digest.to_string())
            }
            Upstream::GitCommit { source, commit } => (format!("git {source}"), commit.clone()),
            Upstream::CacheSeed { target, source } => {
                (format!("cache-seed {target}"), source.clone())
            }
            Upstream::MountContext { target, tree } => {
                (format!("mount-context {target}"), tree.to_string())
            }
        }
    }
}

impl CacheKey {
    /// The key a stage's chain starts from. `parent` is the base manifest
    /// digest, `"scratch"`, or another stage's final key (its string form).
    pub fn base(parent: &str, platform: &Platform) -> CacheKey {
        let mut e = Encoder::new("base");
        e.str("parent", parent);
        e.str("os", &platform.os);
        e.str("architecture", &platform.architecture);
        e.opt_str("variant", platform.variant.as_deref());
        CacheKey(e.finish())
    }

    /// The key of the step that follows this one.
    pub fn chain(&self, step: &StepInputs<'_>) -> CacheKey {
        let StepInputs {
            command: instruction,
            args,
            inputs,
            extra,
        } = step;
        let mut e = Encoder::new("step");
        e.str("parent", self.0.hex());
        command::encode(&mut e, instruction);
        e.list("args", args.len());
        for (name, value) in *args {
            e.str("name", name);
            e.str("value", value);
        }
        e.opt_str("inputs", inputs.map(|d| d.to_string()).as_deref());
        e.list("extra", extra.len());
        for upstream in *extra {
            let (name, value) = upstream.pair();
            e.str("name", &name);
            e.str("value", &value);
        }
        CacheKey(e.finish())
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

    fn command(line: &str) -> Command {
        let ast = kiln_dockerfile::parser::parse(line).expect("parses");
        kiln_dockerfile::instructions::parse_instruction(&ast.children[0])
            .expect("a valid instruction")
            .command
    }

    fn key(
        line: &str,
        a: &BTreeMap<String, String>,
        inputs: Option<&Digest>,
        extra: &[Upstream],
    ) -> CacheKey {
        CacheKey::base("scratch", &platform()).chain(&StepInputs {
            command: &command(line),
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
        let env = vec![Upstream::CopyFromImage(d1.clone())];
        let base = key("RUN make", &none, None, &[]);
        let variants = [
            key("RUN make all", &none, None, &[]),
            key("RUN [\"make\"]", &none, None, &[]),
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
            command: &command("RUN make"),
            args: &none,
            inputs: None,
            extra: &[],
        });
        assert_ne!(base, other_parent);
    }

    #[test]
    fn flags_with_the_same_text_do_not_collide() {
        let none = args(&[]);
        assert_ne!(
            key("COPY --chown=1000 a /b", &none, None, &[]),
            key("COPY --chmod=1000 a /b", &none, None, &[])
        );
        assert_ne!(
            key("COPY --chown=1 a /b", &none, None, &[]),
            key("COPY a /b", &none, None, &[])
        );
        assert_ne!(
            key("COPY a /b", &none, None, &[]),
            key("ADD a /b", &none, None, &[])
        );
    }

    #[test]
    fn mount_spellings_that_mean_the_same_share_a_key() {
        let none = args(&[]);
        assert_eq!(
            key(
                "RUN --mount=type=cache,target=/c,src=x make",
                &none,
                None,
                &[]
            ),
            key(
                "RUN --mount=source=x,dst=/c,type=cache make",
                &none,
                None,
                &[]
            )
        );
        assert_ne!(
            key("RUN --mount=type=cache,target=/c make", &none, None, &[]),
            key(
                "RUN --mount=type=cache,target=/c,sharing=locked make",
                &none,
                None,
                &[]
            )
        );
    }

    #[test]
    fn where_an_onbuild_trigger_was_written_is_not_part_of_the_key() {
        let none = args(&[]);
        let mut moved = command("ONBUILD RUN make");
        if let Command::Onbuild(o) = &mut moved {
            o.trigger.span.start += 10;
            o.trigger.span.end += 10;
        } else {
            panic!("not an ONBUILD: {moved:?}");
        }
        let chained = |c: &Command| {
            CacheKey::base("scratch", &platform()).chain(&StepInputs {
                command: c,
                args: &none,
                inputs: None,
                extra: &[],
            })
        };
        assert_eq!(chained(&command("ONBUILD RUN make")), chained(&moved));
        assert_ne!(
            chained(&command("ONBUILD RUN make")),
            chained(&command("ONBUILD RUN make all"))
        );
    }

    #[test]
    fn an_arg_contributes_its_names_only() {
        let none = args(&[]);
        assert_eq!(
            key("ARG V=1", &none, None, &[]),
            key("ARG V=2", &none, None, &[])
        );
        assert_ne!(
            key("ARG V", &none, None, &[]),
            key("ARG W", &none, None, &[])
        );
    }

    #[test]
    fn field_boundaries_cannot_be_forged() {
        let none = args(&[]);
        // The same bytes split differently between name and value.
        assert_ne!(
            key("USER x", &args(&[("AB", "C")]), None, &[]),
            key("USER x", &args(&[("A", "BC")]), None, &[])
        );
        let mount = |target: &str, tree: &str| Upstream::MountContext {
            target: target.into(),
            tree: Digest::sha256_of(tree.as_bytes()),
        };
        let e1 = vec![mount("/a", "b")];
        let e2 = vec![mount("/a b", "b")];
        assert_ne!(
            key("USER x", &none, None, &e1),
            key("USER x", &none, None, &e2)
        );
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
}
