//! A throwaway certificate authority and a server certificate for a local registry.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files written for one TLS registry.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients must trust (`ca.crt`).
    pub ca_cert: PathBuf,
    /// The server's leaf certificate.
    pub server_cert: PathBuf,
    /// The server's private key (PKCS#8 PEM).
    pub server_key: PathBuf,
    /// A directory holding only `ca.crt`, in the layout skopeo and buildah
    /// expect for `--cert-dir` / `--dest-cert-dir` / `--src-cert-dir`.
    pub cert_dir: PathBuf,
}

/// Names the server certificate is valid for: a registry on 127.0.0.1 is
/// reached by IP in tests, but `localhost` and `::1` are covered so callers
/// can use either spelling.
const SERVER_NAMES: &[&str] = &["127.0.0.1", "localhost", "::1"];

/// Generates a fresh CA and a server certificate signed by it into `dir`.
///
/// A separate CA (rather than one self-signed leaf) is used because that is
/// what real private registries look like, and because rustls refuses a
/// leaf certificate used as its own trust anchor with CA constraints.
pub fn generate(dir: &Path) -> Result<TlsFiles> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kiln-testkit CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut server_params = CertificateParams::new(names).context("server certificate SANs")?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().context("generating server key")?;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .context("signing server certificate")?;

    let cert_dir = dir.join("certs");
    fs::create_dir_all(&cert_dir)?;
    let files = TlsFiles {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        cert_dir,
    };
    write(&files.ca_cert, &ca_cert.pem())?;
    write(&files.cert_dir.join("ca.crt"), &ca_cert.pem())?;
    write(&files.server_cert, &server_cert.pem())?;
    write(&files.server_key, &server_key.serialize_pem())?;
    Ok(files)
}

fn write(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let ca = fs::read_to_string(&files.ca_cert).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = fs::read_to_string(&files.server_key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(
            fs::read_to_string(files.cert_dir.join("ca.crt")).unwrap(),
            ca
        );
    }
}
