//! ARG and ENV scoping, and word expansion per instruction, with BuildKit's
//! rules. Two scopes exist:
//!
//! - [`GlobalScope`]: the ARGs written before the first FROM ("meta args"),
//!   the automatic platform ARGs and the `--build-arg` values. FROM lines
//!   (image and `--platform`) and `COPY --from` are expanded here.
//! - [`StageEnv`]: one stage while it is built. It starts from the base
//!   image's config `Env` (which is why it only exists at build time), and is
//!   advanced one instruction at a time with [`StageEnv::apply`], which hands
//!   back the instruction with every word expanded and the build args the
//!   step used (for its cache key).
//!
//! The rules, all from BuildKit:
//! - A global ARG is visible in a stage only when the stage re-declares it
//!   with `ARG name` (no default); it then takes the global value.
//! - `--build-arg name=v` overrides the default of any ARG named `name`
//!   (global or stage); an ARG with neither default nor build arg is unset.
//! - ENV (from the image or an ENV instruction) wins over an ARG of the same
//!   name, both for expansion and for what RUN sees.
//! - The platform ARGs (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`,
//!   `TARGETVARIANT`, `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`,
//!   `BUILDVARIANT`) are predefined in the global scope and visible in a
//!   stage once declared with `ARG`.
//! - The proxy ARGs (`HTTP_PROXY`, `https_proxy`, `NO_PROXY`, ... in both
//!   cases) given as build args reach RUN without being declared, and never
//!   enter history or cache keys.
//! - Expanded (single word each): ADD, COPY (sources, destination, `--chown`,
//!   `--chmod`, `--checksum`, `--exclude`; heredoc bodies only when the
//!   delimiter was unquoted, with quotes kept literally), ENV and LABEL (keys
//!   and values), ARG defaults, STOPSIGNAL, USER, VOLUME, WORKDIR, RUN
//!   `--mount` values. EXPOSE is expanded and split on white space. FROM is
//!   expanded in the global scope. RUN, CMD, ENTRYPOINT, HEALTHCHECK and
//!   SHELL are never expanded (the shell does it at run time); ONBUILD
//!   triggers are expanded by the image that runs them.

mod global;
mod stage;

pub use global::{GlobalScope, PlatformArgs};
pub use stage::{Expanded, StageEnv};

/// Proxy build args: usable by RUN without an ARG, kept out of history and
/// cache keys.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The automatic platform ARGs of the global scope.
pub const PLATFORM_ARGS: &[&str] = &[
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// True for a proxy ARG name.
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// True for an automatic platform ARG name.
pub fn is_platform_arg(name: &str) -> bool {
    PLATFORM_ARGS.contains(&name)
}
