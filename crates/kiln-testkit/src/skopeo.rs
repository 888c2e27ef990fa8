//! skopeo: copying images between registries and OCI layouts, inspecting them.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::auth::Credentials;
use crate::cmd::run_stdout;
use crate::registry::Registry;

/// How to reach a registry: TLS verification, the CA to trust, credentials.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Verify the server certificate (needs `cert_dir` for test CAs).
    /// `false` also lets skopeo fall back to plain HTTP.
    pub tls_verify: bool,
    /// A directory with the CA certificate as `ca.crt`.
    pub cert_dir: Option<PathBuf>,
    /// Basic-auth credentials.
    pub creds: Option<Credentials>,
}

impl Access {
    /// No verification, no credentials: fine for a plain HTTP test registry.
    pub fn insecure() -> Self {
        Self::default()
    }

    /// Everything needed to talk to `reg`: its CA (verification on) when it
    /// serves TLS, plain HTTP otherwise, and its credentials if it has any.
    pub fn for_registry(reg: &Registry) -> Self {
        Self {
            tls_verify: reg.is_tls(),
            cert_dir: reg.cert_dir().map(PathBuf::from),
            creds: reg.credentials().cloned(),
        }
    }

    /// skopeo flags for this access; `side` is `src-`, `dest-` or `` (inspect).
    fn args(&self, side: &str) -> Vec<String> {
        let mut a = vec![format!("--{side}tls-verify={}", self.tls_verify)];
        if let Some(d) = &self.cert_dir {
            a.push(format!("--{side}cert-dir={}", d.display()));
        }
        if let Some(c) = &self.creds {
            a.push(format!("--{side}creds={}", c.user_pass()));
        }
        a
    }
}

/// Options for [`skopeo_copy_with`].
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// How to reach the source when it is `docker://`.
    pub src: Access,
    /// How to reach the destination when it is `docker://`.
    pub dest: Access,
    /// Copy every image of an index (`--all`), not just the host's.
    pub all: bool,
    /// Keep layer blobs as they are (no recompression), and keep the
    /// manifest format unless the destination requires another.
    pub preserve_digests: bool,
    /// The manifest format to write (`--format`: `oci`, `v2s2`), converting
    /// when the source has another.
    pub format: Option<String>,
}

fn skopeo() -> Command {
    Command::new("skopeo")
}

/// `skopeo copy SRC DST` for refs with explicit transports (`docker://`,
/// `oci:DIR:TAG`, `docker-archive:`...), without TLS verification.
///
/// # Errors
/// Fails with skopeo's stderr.
pub fn skopeo_copy(src: &str, dst: &str) -> Result<()> {
    skopeo_copy_with(src, dst, &CopyOptions::default())
}

/// `skopeo copy` with explicit access for either side.
///
/// # Errors
/// Fails with skopeo's stderr.
pub fn skopeo_copy_with(src: &str, dst: &str, opts: &CopyOptions) -> Result<()> {
    let mut c = skopeo();
    c.arg("copy").arg("--quiet");
    if src.starts_with("docker://") {
        c.args(opts.src.args("src-"));
    }
    if dst.starts_with("docker://") {
        c.args(opts.dest.args("dest-"));
    }
    if opts.all {
        c.arg("--all");
    }
    if opts.preserve_digests {
        c.arg("--preserve-digests");
    }
    if let Some(format) = &opts.format {
        c.arg("--format").arg(format);
    }
    c.arg(src).arg(dst);
    run_stdout(&mut c).map(drop)
}

/// `skopeo inspect` of `reference` (a `docker://` ref, or a bare
/// `host/name:tag` which gets `docker://` prepended): the summary JSON
/// (Digest, Architecture, Layers, Env, ...).
///
/// # Errors
/// Fails with skopeo's stderr, or if the output is not JSON.
pub fn skopeo_inspect(reference: &str, tls_verify: bool) -> Result<serde_json::Value> {
    let access = Access {
        tls_verify,
        ..Access::default()
    };
    skopeo_inspect_with(reference, &access, InspectKind::Summary)
}

/// `skopeo inspect --raw`: the manifest or index exactly as the registry serves it.
///
/// # Errors
/// Fails with skopeo's stderr, or if the output is not JSON.
pub fn skopeo_inspect_raw(reference: &str, tls_verify: bool) -> Result<serde_json::Value> {
    let access = Access {
        tls_verify,
        ..Access::default()
    };
    skopeo_inspect_with(reference, &access, InspectKind::Raw)
}

/// What `skopeo inspect` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InspectKind {
    /// skopeo's own summary.
    Summary,
    /// The raw manifest (`--raw`).
    Raw,
    /// The image config (`--config`).
    Config,
}

/// `skopeo inspect` with explicit access, printing `kind`.
///
/// # Errors
/// Fails with skopeo's stderr, or if the output is not JSON.
pub fn skopeo_inspect_with(
    reference: &str,
    access: &Access,
    kind: InspectKind,
) -> Result<serde_json::Value> {
    let mut c = skopeo();
    c.arg("inspect").args(access.args(""));
    match kind {
        InspectKind::Summary => {}
        InspectKind::Raw => {
            c.arg("--raw");
        }
        InspectKind::Config => {
            c.arg("--config");
        }
    }
    c.arg(with_transport(reference));
    let out = run_stdout(&mut c)?;
    serde_json::from_str(&out).with_context(|| format!("skopeo inspect printed non-JSON:\n{out}"))
}

/// `skopeo inspect --override-os/--override-arch[/--override-variant]`:
/// what a client on `platform` gets from `reference` (the summary, or the
/// config with `kind` [`InspectKind::Config`]); an index resolves to its
/// entry for `platform`.
///
/// # Errors
/// Fails with skopeo's stderr (an index without that platform), or if the
/// output is not JSON.
pub fn skopeo_inspect_for_platform(
    reference: &str,
    access: &Access,
    kind: InspectKind,
    platform: &crate::Platform,
) -> Result<serde_json::Value> {
    let mut c = skopeo();
    c.arg("--override-os")
        .arg(&platform.os)
        .arg("--override-arch")
        .arg(&platform.architecture);
    if let Some(v) = &platform.variant {
        c.arg("--override-variant").arg(v);
    }
    c.arg("inspect").args(access.args(""));
    match kind {
        InspectKind::Summary => {}
        InspectKind::Raw => {
            c.arg("--raw");
        }
        InspectKind::Config => {
            c.arg("--config");
        }
    }
    c.arg(with_transport(reference));
    let out = run_stdout(&mut c)?;
    serde_json::from_str(&out).with_context(|| format!("skopeo inspect printed non-JSON:\n{out}"))
}

/// Adds `docker://` unless the reference already names a transport.
fn with_transport(reference: &str) -> String {
    const TRANSPORTS: &[&str] = &[
        "docker://",
        "oci:",
        "oci-archive:",
        "docker-archive:",
        "dir:",
    ];
    if TRANSPORTS.iter().any(|t| reference.starts_with(t)) {
        reference.to_string()
    } else {
        format!("docker://{reference}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_added_only_when_missing() {
        assert_eq!(
            with_transport("127.0.0.1:5000/a:b"),
            "docker://127.0.0.1:5000/a:b"
        );
        assert_eq!(with_transport("oci:/x:y"), "oci:/x:y");
    }

    #[test]
    fn access_flags() {
        let a = Access {
            tls_verify: true,
            cert_dir: Some("/c".into()),
            creds: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
        };
        assert_eq!(
            a.args("dest-"),
            [
                "--dest-tls-verify=true",
                "--dest-cert-dir=/c",
                "--dest-creds=u:p"
            ]
        );
    }
}
