//! The registry client against a real CNCF distribution registry process.

use bytes::Bytes;
use kiln_oci::auth::{Credential, CredentialStore};
use kiln_oci::registry::{
    Access, BlobSource, PushOutcome, RegistryClient, RegistryError, RegistryOptions,
};
use kiln_oci::{media, Descriptor, Digest, ImageConfig, Manifest, Platform, Reference};
use kiln_testkit::{BaseImage, Registry};
use std::path::PathBuf;

/// Plain-HTTP options for a test registry.
fn plain_options(reg: &Registry) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: vec![reg.host()],
        ..RegistryOptions::default()
    }
}

fn reference(reg: &Registry, name: &str) -> Reference {
    reg.image_ref(name).parse().unwrap()
}

/// Finds the stored data file of a blob in the registry's filesystem storage.
fn blob_data_path(reg: &Registry, digest: &Digest) -> PathBuf {
    reg.storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex())
        .join("data")
}

async fn read_blob(
    repo: &kiln_oci::Repository,
    digest: &Digest,
    size: u64,
) -> Result<Bytes, RegistryError> {
    repo.get_blob_bytes(digest, Some(size), 1 << 30).await
}

#[tokio::test]
async fn monolithic_and_chunked_uploads_round_trip() {
    let reg = Registry::plain().unwrap();
    let client = RegistryClient::new(RegistryOptions {
        monolithic_upload_limit: 1000,
        upload_chunk_size: 777,
        ..plain_options(&reg)
    })
    .unwrap();
    let repo = client.repository(&reference(&reg, "kiln/blobs"), Access::Push);

    let small = Bytes::from_static(b"a small blob");
    let small_digest = Digest::sha256_of(&small);
    assert_eq!(repo.blob_exists(&small_digest).await.unwrap(), None);
    let outcome = repo
        .push_blob(
            &BlobSource::Bytes(small.clone()),
            &small_digest,
            small.len() as u64,
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        repo.blob_exists(&small_digest).await.unwrap(),
        Some(small.len() as u64)
    );
    assert_eq!(
        read_blob(&repo, &small_digest, small.len() as u64)
            .await
            .unwrap(),
        small
    );
    let again = repo
        .push_blob(
            &BlobSource::Bytes(small.clone()),
            &small_digest,
            small.len() as u64,
            None,
        )
        .await
        .unwrap();
    assert_eq!(again, PushOutcome::Exists);

    // 5000 bytes from a file: above the monolithic limit, so 7 PATCH chunks.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    let big: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &big).unwrap();
    let big_digest = Digest::sha256_of(&big);
    let outcome = repo
        .push_blob_file(&path, &big_digest, big.len() as u64, None)
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(
        read_blob(&repo, &big_digest, 5000).await.unwrap(),
        Bytes::from(big.clone())
    );

    // Download to a file.
    let out = tmp.path().join("out");
    assert_eq!(
        repo.download_blob(&big_digest, Some(5000), &out)
            .await
            .unwrap(),
        5000
    );
    assert_eq!(std::fs::read(&out).unwrap(), big);

    // Claiming the wrong digest is refused by the registry.
    let wrong = Digest::sha256_of(b"something else");
    let err = repo
        .push_blob_file(&path, &wrong, 5000, None)
        .await
        .unwrap_err();
    assert!(err.codes().contains(&"DIGEST_INVALID"), "{err}");
}

#[tokio::test]
async fn cross_repository_mount() {
    let reg = Registry::plain().unwrap();
    let client = RegistryClient::new(plain_options(&reg)).unwrap();
    let src = client.repository(&reference(&reg, "team/source"), Access::Push);
    let dst = client.repository(&reference(&reg, "team/dest"), Access::Push);
    let blob = Bytes::from_static(b"shared layer bytes");
    let digest = Digest::sha256_of(&blob);
    src.push_blob(
        &BlobSource::Bytes(blob.clone()),
        &digest,
        blob.len() as u64,
        None,
    )
    .await
    .unwrap();

    let outcome = dst
        .push_blob(
            &BlobSource::Bytes(blob.clone()),
            &digest,
            blob.len() as u64,
            Some("team/source"),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Mounted);
    assert_eq!(
        dst.blob_exists(&digest).await.unwrap(),
        Some(blob.len() as u64)
    );

    // A mount of a blob the source does not have falls back to an upload.
    let other = Bytes::from_static(b"only local");
    let other_digest = Digest::sha256_of(&other);
    assert!(!dst.mount_blob(&other_digest, "team/source").await.unwrap());
    let outcome = dst
        .push_blob(
            &BlobSource::Bytes(other.clone()),
            &other_digest,
            other.len() as u64,
            Some("team/source"),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
}

/// Pushes a one-layer image and returns (manifest bytes, manifest digest, layer digest).
async fn push_image(repo: &kiln_oci::Repository, tag: &str) -> (Bytes, Digest, Digest) {
    let layer = Bytes::from_static(b"pretend this is a tar.gz");
    let layer_digest = Digest::sha256_of(&layer);
    let mut config = ImageConfig::for_platform(&Platform::host());
    config.rootfs.diff_ids.push(layer_digest.clone());
    let config_bytes = Bytes::from(config.to_vec());
    let config_desc = Descriptor::of_bytes(media::OCI_CONFIG, &config_bytes);
    for (b, d) in [
        (&layer, &layer_digest),
        (&config_bytes, &config_desc.digest),
    ] {
        repo.push_blob(&BlobSource::Bytes(b.clone()), d, b.len() as u64, None)
            .await
            .unwrap();
    }
    let manifest = Manifest::new(
        true,
        config_desc,
        vec![Descriptor::new(
            media::OCI_LAYER_GZIP,
            layer_digest.clone(),
            layer.len() as u64,
        )],
    );
    let bytes = Bytes::from(manifest.to_vec());
    let digest = repo
        .put_manifest(tag, bytes.clone(), media::OCI_MANIFEST)
        .await
        .unwrap();
    (bytes, digest, layer_digest)
}

#[tokio::test]
async fn manifests_push_get_head_tags_and_pull() {
    let reg = Registry::plain().unwrap();
    let client = RegistryClient::new(plain_options(&reg)).unwrap();
    let r = reference(&reg, "kiln/app:v1");
    let repo = client.repository(&r, Access::Push);
    let (bytes, digest, _) = push_image(&repo, "v1").await;
    assert_eq!(digest, Digest::sha256_of(&bytes));

    let by_tag = repo.get_manifest("v1").await.unwrap();
    assert_eq!(by_tag.bytes, bytes);
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.media_type, media::OCI_MANIFEST);
    let by_digest = repo.get_manifest(&digest.to_string()).await.unwrap();
    assert_eq!(by_digest.bytes, bytes);
    let head = repo.head_manifest("v1").await.unwrap().unwrap();
    assert_eq!(head.digest, digest);
    assert_eq!(head.size, Some(bytes.len() as u64));
    assert_eq!(repo.head_manifest("nope").await.unwrap(), None);

    // Tagging by digest reference, then listing.
    repo.put_manifest("v2", bytes.clone(), media::OCI_MANIFEST)
        .await
        .unwrap();
    let mut tags = repo.list_tags().await.unwrap();
    tags.sort();
    assert_eq!(tags, vec!["v1", "v2"]);

    let err = repo.get_manifest("missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.codes().contains(&"MANIFEST_UNKNOWN"), "{err}");
    assert!(
        err.to_string().contains("/v2/kiln/app/manifests/missing"),
        "{err}"
    );

    let pulled = client.pull_image(&r, &Platform::host()).await.unwrap();
    assert_eq!(pulled.digest, digest);
    assert_eq!(pulled.index_digest, None);
    assert_eq!(pulled.config.rootfs.diff_ids.len(), 1);
    assert_eq!(
        Digest::sha256_of(&pulled.config_bytes),
        pulled.manifest.config.digest
    );
    assert_eq!(pulled.reference.digest(), Some(&digest));
}

#[tokio::test]
async fn pull_resolves_a_multi_arch_index_made_by_another_tool() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox_multi_arch().unwrap();
    let full = base.push_to(&reg, "base/busybox:multi").unwrap();
    let client = RegistryClient::new(plain_options(&reg)).unwrap();
    let r: Reference = full.parse().unwrap();
    let host = client.pull_image(&r, &Platform::host()).await.unwrap();
    assert!(host.index_digest.is_some());
    assert_eq!(host.config.architecture, Platform::host().architecture);
    let foreign = kiln_testkit::Platform::foreign();
    let wanted = Platform::new("linux", &foreign.architecture, foreign.variant.as_deref());
    let other = client.pull_image(&r, &wanted).await.unwrap();
    assert_ne!(other.digest, host.digest);
    assert_eq!(other.config.architecture, wanted.architecture);
    let err = client
        .pull_image(&r, &"linux/s390x".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("linux/s390x"), "{err}");
}

#[tokio::test]
async fn corrupted_content_is_detected() {
    let reg = Registry::plain().unwrap();
    let client = RegistryClient::new(plain_options(&reg)).unwrap();
    let repo = client.repository(&reference(&reg, "kiln/corrupt"), Access::Push);
    let (_, manifest_digest, layer_digest) = push_image(&repo, "t").await;

    // Same length, different bytes: only the digest can tell.
    let data = blob_data_path(&reg, &layer_digest);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let err = read_blob(&repo, &layer_digest, bytes.len() as u64)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer_digest.to_string()), "{err}");

    // A wrong expected size is caught too.
    let err = repo
        .get_blob_bytes(&layer_digest, Some(3), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");

    // Manifests fetched by digest are verified as well.
    let mdata = blob_data_path(&reg, &manifest_digest);
    let mut m = std::fs::read(&mdata).unwrap();
    // Trailing whitespace: still valid JSON, different digest.
    m.push(b' ');
    std::fs::write(&mdata, &m).unwrap();
    let err = repo
        .get_manifest(&manifest_digest.to_string())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn htpasswd_over_tls_with_the_right_and_a_wrong_password() {
    let reg = Registry::tls_with_auth("kiln-user", "correct-horse").unwrap();
    let ca = reg.ca_cert_path().unwrap().to_path_buf();
    let with_ca = |credentials: CredentialStore| RegistryOptions {
        ca_certificates: [(reg.host(), ca.clone())].into_iter().collect(),
        credentials,
        ..RegistryOptions::default()
    };

    // Credentials from a Docker config file, as users provide them.
    let cfg = reg.docker_config_dir().unwrap();
    let client =
        RegistryClient::new(with_ca(CredentialStore::from_config_dirs(vec![cfg]))).unwrap();
    let r = reference(&reg, "private/app:1");
    let repo = client.repository(&r, Access::Push);
    let (_, digest, _) = push_image(&repo, "1").await;
    let pulled = client.pull_image(&r, &Platform::host()).await.unwrap();
    assert_eq!(pulled.digest, digest);

    let secret = "wrong-password-value-1234";
    let client = RegistryClient::new(with_ca(
        CredentialStore::anonymous()
            .with_credential(&reg.host(), Credential::basic("kiln-user", secret)),
    ))
    .unwrap();
    let err = client.pull_image(&r, &Platform::host()).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{text}");
    assert!(
        text.contains("authentication required") && text.contains(&reg.host()),
        "{text}"
    );
    assert!(text.contains("private/app"), "{text}");
    assert!(!text.contains(secret), "the password leaked: {text}");

    // No credentials at all: same clear error.
    let client = RegistryClient::new(with_ca(CredentialStore::anonymous())).unwrap();
    let err = client
        .repository(&r, Access::Pull)
        .get_manifest("1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("check credentials"), "{err}");
}

#[tokio::test]
async fn tls_trust_is_enforced_unless_skipped() {
    let reg = Registry::tls().unwrap();
    let r = reference(&reg, "kiln/tls:1");
    let strict = RegistryClient::new(RegistryOptions::default()).unwrap();
    let err = strict
        .repository(&r, Access::Pull)
        .get_manifest("1")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    let skip = RegistryClient::new(RegistryOptions {
        skip_tls_verify_registries: vec![reg.host()],
        ..RegistryOptions::default()
    })
    .unwrap();
    let err = skip
        .repository(&r, Access::Pull)
        .get_manifest("1")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // skip-tls-verify-pull applies to pulls only.
    let pull_only = RegistryClient::new(RegistryOptions {
        skip_tls_verify_pull: true,
        ..RegistryOptions::default()
    })
    .unwrap();
    assert!(pull_only
        .repository(&r, Access::Pull)
        .blob_exists(&Digest::sha256_of(b"x"))
        .await
        .is_ok());
    assert!(pull_only
        .repository(&r, Access::Push)
        .blob_exists(&Digest::sha256_of(b"x"))
        .await
        .is_err());
}

#[tokio::test]
async fn plain_http_needs_an_insecure_flag() {
    let reg = Registry::plain().unwrap();
    let r = reference(&reg, "kiln/plain:1");
    let strict = RegistryClient::new(RegistryOptions::default()).unwrap();
    let err = strict
        .repository(&r, Access::Pull)
        .get_manifest("1")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
    let pull = RegistryClient::new(RegistryOptions {
        insecure_pull: true,
        ..RegistryOptions::default()
    })
    .unwrap();
    assert!(pull
        .repository(&r, Access::Pull)
        .get_manifest("1")
        .await
        .unwrap_err()
        .is_not_found());
    assert!(pull
        .repository(&r, Access::Push)
        .get_manifest("1")
        .await
        .is_err());
    // Names that do not resolve are covered by the transport's unit tests,
    // with a resolver that fails without sending a query.
}

#[tokio::test]
async fn registry_map_falls_back_to_the_origin() {
    let reg = Registry::plain().unwrap();
    let client = RegistryClient::new(plain_options(&reg)).unwrap();
    let r = reference(&reg, "kiln/mapped:1");
    let (_, digest, _) = push_image(&client.repository(&r, Access::Push), "1").await;

    // The first mapped target refuses connections; the origin serves the pull.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut options = plain_options(&reg);
    options
        .insecure_registries
        .push(format!("127.0.0.1:{dead}"));
    options
        .registry_maps
        .insert(reg.host(), vec![format!("127.0.0.1:{dead}")]);
    let mapped = RegistryClient::new(options).unwrap();
    assert_eq!(
        mapped
            .pull_image(&r, &Platform::host())
            .await
            .unwrap()
            .digest,
        digest
    );

    // A map to a working registry under a prefix is used first.
    let mirror = Registry::plain().unwrap();
    let mirror_client = RegistryClient::new(plain_options(&mirror)).unwrap();
    let mirrored = reference(&mirror, "prefix/kiln/mapped:1");
    let (_, mirror_digest, _) = {
        let repo = mirror_client.repository(&mirrored, Access::Push);
        // A different image, so the test can tell where the pull came from.
        let blob = Bytes::from_static(b"mirror only");
        let d = Digest::sha256_of(&blob);
        repo.push_blob(
            &BlobSource::Bytes(blob.clone()),
            &d,
            blob.len() as u64,
            None,
        )
        .await
        .unwrap();
        let mut config = ImageConfig::for_platform(&Platform::host());
        config.author = Some("mirror".into());
        let cb = Bytes::from(config.to_vec());
        let cd = Descriptor::of_bytes(media::OCI_CONFIG, &cb);
        repo.push_blob(
            &BlobSource::Bytes(cb.clone()),
            &cd.digest,
            cb.len() as u64,
            None,
        )
        .await
        .unwrap();
        let m = Manifest::new(
            true,
            cd,
            vec![Descriptor::new(
                media::OCI_LAYER_GZIP,
                d.clone(),
                blob.len() as u64,
            )],
        );
        let md = repo
            .put_manifest("1", Bytes::from(m.to_vec()), media::OCI_MANIFEST)
            .await
            .unwrap();
        (Bytes::new(), md, d)
    };
    let mut options = plain_options(&reg);
    options.insecure_registries.push(mirror.host());
    options
        .registry_maps
        .insert(reg.host(), vec![format!("{}/prefix", mirror.host())]);
    let mapped = RegistryClient::new(options).unwrap();
    let pulled = mapped.pull_image(&r, &Platform::host()).await.unwrap();
    assert_eq!(pulled.digest, mirror_digest);
    assert_eq!(pulled.config.author.as_deref(), Some("mirror"));
}
