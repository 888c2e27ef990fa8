//! Path resolution confined to a root directory, as if the root were `/`:
//! symlinks met on the way (absolute or with `..`) resolve inside the root,
//! so nothing an image holds can lead outside it, whatever earlier entries or
//! lower layers put there. This is the one on-disk resolver: the extractor,
//! the sandbox and the build engine all resolve through it. (Resolving in a
//! layer *listing*, where no file exists yet, is kiln-build's
//! `engine::listing`: same rules, a different store.)
//!
//! Two forms share one set of component rules (`walk`): an open `Root`
//! the extractor writes through, which lets the kernel do it race-free with
//! `openat2(RESOLVE_IN_ROOT)` (Linux 5.6) and, where that call is missing or
//! filtered (old kernels, container runtimes whose seccomp profile predates
//! it answer ENOSYS or EPERM), walks one `O_NOFOLLOW` open at a time; and
//! [`in_root`], which gives the host path a path names, for callers that
//! need a path.

mod in_root;
mod root;
mod walk;

pub use in_root::{in_root, ResolveError, ResolveOptions, MAX_SYMLINKS};
pub(crate) use root::Root;
