//! Credentials stay with the registry's origin, tried from the attacker's
//! side: a real htpasswd registry behind a hostile HTTPS front on 127.0.0.1
//! that lures the client to plain HTTP on the front's own host and port (a
//! blob redirect, an upload `Location`, a Bearer realm). The plain side
//! records what arrives; no `Authorization` may ever be among it, and the
//! client must fail with an error naming the registry host.

use bytes::Bytes;
use kiln_oci::auth::{Credential, CredentialStore};
use kiln_oci::registry::{Access, BlobSource, RegistryClient, RegistryError, RegistryOptions};
use kiln_oci::{media, Descriptor, Digest, ImageConfig, Manifest, Platform, Reference};
use kiln_testkit::{DowngradeFront, Lure, Registry};
use std::time::{Duration, Instant};

const USER: &str = "kiln";
const PASSWORD: &str = "s3cret-pass";

/// The registry, and a front luring with `lure` in front of it.
fn setup(lure: Lure) -> (Registry, DowngradeFront) {
    let reg = Registry::builder().auth(USER, PASSWORD).start().unwrap();
    let front = DowngradeFront::start(&reg.host(), lure).unwrap();
    (reg, front)
}

/// A client that trusts the front's CA and holds the registry's password
/// for the front's host. `insecure` declares the front an insecure registry.
fn client_for(front: &DowngradeFront, insecure: bool) -> RegistryClient {
    let mut options = RegistryOptions {
        credentials: CredentialStore::anonymous()
            .with_credential(&front.host(), Credential::basic(USER, PASSWORD)),
        read_timeout: Duration::from_secs(10),
        ..RegistryOptions::default()
    };
    options
        .ca_certificates
        .insert(front.host(), front.ca_cert_path().to_path_buf());
    if insecure {
        options.insecure_registries.push(front.host());
    }
    RegistryClient::new(options).unwrap()
}

/// Pushes a one-layer image straight to the registry (plain HTTP, with the
/// password); returns its reference on the front.
async fn seed_image(reg: &Registry, front: &DowngradeFront) -> Reference {
    let direct = RegistryClient::new(RegistryOptions {
        insecure_registries: vec![reg.host()],
        credentials: CredentialStore::anonymous()
            .with_credential(&reg.host(), Credential::basic(USER, PASSWORD)),
        ..RegistryOptions::default()
    })
    .unwrap();
    let r: Reference = reg.image_ref("lure/app:1").parse().unwrap();
    let repo = direct.repository(&r, Access::Push);
    let layer = Bytes::from_static(b"not really a layer");
    let ld = Digest::sha256_of(&layer);
    repo.push_blob(
        &BlobSource::Bytes(layer.clone()),
        &ld,
        layer.len() as u64,
        None,
    )
    .await
    .unwrap();
    let config = Bytes::from(ImageConfig::for_platform(&Platform::host()).to_vec());
    let cd = Descriptor::of_bytes(media::OCI_CONFIG, &config);
    repo.push_blob(
        &BlobSource::Bytes(config.clone()),
        &cd.digest,
        config.len() as u64,
        None,
    )
    .await
    .unwrap();
    let m = Manifest::new(
        true,
        cd,
        vec![Descriptor::new(
            media::OCI_LAYER_GZIP,
            ld,
            layer.len() as u64,
        )],
    );
    repo.put_manifest("1", Bytes::from(m.to_vec()), media::OCI_MANIFEST)
        .await
        .unwrap();
    format!("{}/lure/app:1", front.host()).parse().unwrap()
}

/// Nothing that arrived over plain HTTP carried credentials.
fn assert_no_credentials_in_clear(front: &DowngradeFront) {
    let leaked: Vec<_> = front
        .plain_requests()
        .into_iter()
        .filter(|r| r.authorization.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "credentials sent over plain HTTP: {leaked:?}"
    );
}

#[tokio::test]
async fn a_blob_redirect_to_plain_http_fails_naming_the_host_and_sends_nothing() {
    let (reg, front) = setup(Lure::RedirectBlobGets);
    let r = seed_image(&reg, &front).await;
    let started = Instant::now();
    let err = client_for(&front, false)
        .pull_image(&r, &Platform::host())
        .await
        .unwrap_err();
    assert!(front.lures_sent() > 0, "the front never lured: {err}");
    assert_no_credentials_in_clear(&front);
    assert!(
        front.plain_requests().is_empty(),
        "followed the redirect: {:?}",
        front.plain_requests()
    );
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Downgrade { .. }), "{msg}");
    assert!(
        msg.contains(&front.host()) && msg.contains("plain HTTP") && msg.contains("redirect"),
        "{msg}"
    );
    assert!(!err.is_retryable(), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn an_insecure_registry_follows_a_plain_redirect_without_credentials() {
    let (reg, front) = setup(Lure::RedirectBlobGets);
    let r = seed_image(&reg, &front).await;
    // Declared insecure, the registry may send us to plain HTTP; the
    // credentials still stay with the HTTPS origin.
    let err = client_for(&front, true)
        .pull_image(&r, &Platform::host())
        .await
        .unwrap_err();
    assert!(front.lures_sent() > 0, "the front never lured: {err}");
    assert!(
        !front.plain_requests().is_empty(),
        "the redirect was not followed: {err}"
    );
    assert_no_credentials_in_clear(&front);
}

#[tokio::test]
async fn an_upload_location_on_plain_http_fails_naming_the_host_and_sends_nothing() {
    let (_reg, front) = setup(Lure::HttpUploadLocation);
    let r: Reference = format!("{}/lure/push:1", front.host()).parse().unwrap();
    let repo = client_for(&front, false).repository(&r, Access::Push);
    let blob = Bytes::from_static(b"a blob the front wants in clear text");
    let digest = Digest::sha256_of(&blob);
    let err = repo
        .push_blob(
            &BlobSource::Bytes(blob.clone()),
            &digest,
            blob.len() as u64,
            None,
        )
        .await
        .unwrap_err();
    assert!(front.lures_sent() > 0, "the front never lured: {err}");
    assert_no_credentials_in_clear(&front);
    assert!(
        front.plain_requests().is_empty(),
        "followed the upload location: {:?}",
        front.plain_requests()
    );
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Downgrade { .. }), "{msg}");
    assert!(
        msg.contains(&front.host()) && msg.contains("upload Location"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_plain_http_token_realm_never_gets_the_password() {
    let (reg, front) = setup(Lure::HttpTokenRealm);
    let r = seed_image(&reg, &front).await;
    let err = client_for(&front, false)
        .pull_image(&r, &Platform::host())
        .await
        .unwrap_err();
    assert!(front.lures_sent() > 0, "the front never lured: {err}");
    assert_no_credentials_in_clear(&front);
    assert!(
        front.plain_requests().is_empty(),
        "asked the plain token server: {:?}",
        front.plain_requests()
    );
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::InsecureRealm { .. }), "{msg}");
    assert!(
        msg.contains(&front.host()) && msg.contains(&format!("http://{}/token", front.host())),
        "{msg}"
    );
}

#[tokio::test]
async fn an_insecure_registry_may_use_a_plain_http_token_realm() {
    let (reg, front) = setup(Lure::HttpTokenRealm);
    let r = seed_image(&reg, &front).await;
    // Declared insecure, the token server is asked (with the password: the
    // user said this registry lives without TLS). It answers 404, which the
    // client reports as a token server error.
    let err = client_for(&front, true)
        .pull_image(&r, &Platform::host())
        .await
        .unwrap_err();
    let asked: Vec<_> = front
        .plain_requests()
        .into_iter()
        .filter(|p| p.path.starts_with("/token"))
        .collect();
    assert!(!asked.is_empty(), "the token server was not asked: {err}");
    assert!(matches!(err, RegistryError::Token { .. }), "{err}");
}
