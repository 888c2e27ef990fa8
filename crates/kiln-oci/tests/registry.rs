//! The registry client against a real CNCF distribution registry process.

use bytes::Bytes;
use kiln_oci::auth::{Credential, CredentialStore};
use kiln_oci::registry::{
    Access, BlobSource, PushOutcome, RegistryClient, RegistryError, RegistryOptions,
};
use kiln_oci::{media, Descriptor, Digest, ImageConfig, Manifest, Platform, Reference};
use kiln_testkit::{BaseImage, Fault, FaultProxy, Registry};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// Records every count a transfer reports.
#[derive(Default)]
struct Counts(std::sync::Mutex<Vec<u64>>);

impl kiln_oci::TransferObserver for Counts {
    fn transferred(&self, bytes: u64) {
        self.0.lock().unwrap().push(bytes);
    }
}

impl Counts {
    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn observed_transfers_report_their_bytes_as_they_go() {
    let reg = Registry::plain().unwrap();
    // Chunks of 1 MiB, sent in pieces of 256 KiB: the counts of a chunked
    // upload run on across chunks.
    let client = RegistryClient::new(RegistryOptions {
        monolithic_upload_limit: 1 << 20,
        upload_chunk_size: 1 << 20,
        ..plain_options(&reg)
    })
    .unwrap();
    let counts = std::sync::Arc::new(Counts::default());
    let repo = client
        .repository(&reference(&reg, "kiln/metered"), Access::Push)
        .observed(counts.clone());
    let dir = tempfile::tempdir().unwrap();
    let size = (3u64 << 20) + 12_345;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("blob");
    std::fs::write(&path, &data).unwrap();
    let digest = Digest::sha256_of(&data);

    let outcome = repo
        .push_blob_file(&path, &digest, size, None)
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    let up = counts.take();
    assert_eq!(up.last(), Some(&size), "{up:?}");
    assert!(up.len() >= 13, "one count per piece: {up:?}");
    assert!(up.windows(2).all(|w| w[0] < w[1]), "{up:?}");
    // The chunk boundaries are crossed, not restarted from 0.
    assert!(up.iter().any(|&n| n > 1 << 20 && n < 2 << 20), "{up:?}");

    let copy = dir.path().join("copy");
    assert_eq!(
        repo.download_blob(&digest, Some(size), &copy)
            .await
            .unwrap(),
        size
    );
    assert_eq!(std::fs::read(&copy).unwrap(), data);
    let down = counts.take();
    assert_eq!(down.first(), Some(&0), "{down:?}");
    assert_eq!(down.last(), Some(&size), "{down:?}");
    assert!(down.windows(2).all(|w| w[0] <= w[1]), "{down:?}");

    // An unobserved handle reports nothing.
    let plain = client.repository(&reference(&reg, "kiln/metered"), Access::Pull);
    plain
        .download_blob(&digest, Some(size), &copy)
        .await
        .unwrap();
    assert!(counts.take().is_empty());
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

/// A config embedded in its manifest (`data`) is used without a GET when
/// it is the config the descriptor names, and fetched when it is not.
#[tokio::test]
async fn a_config_embedded_in_the_manifest_is_not_fetched_unless_it_lies() {
    let reg = Registry::plain().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let client = RegistryClient::new(proxied_options(&proxy)).unwrap();
    let r = Reference::parse(&format!("{}/kiln/embedded:v1", proxy.host())).unwrap();
    let repo = client.repository(&r, Access::Push);
    let (bytes, _, _) = push_image(&repo, "v1").await;
    let plain = Manifest::from_slice(&bytes).unwrap();
    let config = read_blob(&repo, &plain.config.digest, plain.config.size)
        .await
        .unwrap();
    let config_get = format!("GET /v2/kiln/embedded/blobs/{}", plain.config.digest);
    // Of the same length, so only the digest check can tell it apart.
    let other = vec![b' '; config.len()];
    for (tag, data, fetched) in [("honest", &config[..], 0), ("lying", &other[..], 1)] {
        let mut manifest = plain.clone();
        manifest.config = manifest.config.with_data(data);
        repo.put_manifest(tag, Bytes::from(manifest.to_vec()), media::OCI_MANIFEST)
            .await
            .unwrap();
        let seen = proxy.log().len();
        let pulled = client
            .pull_image(&r.with_tag(tag).unwrap(), &Platform::host())
            .await
            .unwrap();
        assert_eq!(pulled.config_bytes, config, "{tag}");
        assert_eq!(pulled.config.rootfs.diff_ids.len(), 1, "{tag}");
        assert_eq!(count(&proxy.log()[seen..], &config_get), fetched, "{tag}");
    }
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

/// Options for a client that reaches a registry through `proxy`: a short
/// read timeout and quick retries, so that stalls cost fractions of a second.
fn proxied_options(proxy: &FaultProxy) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: vec![proxy.host()],
        pull_retries: 2,
        push_retries: 2,
        retry_initial_delay: Duration::from_millis(20),
        read_timeout: Duration::from_millis(500),
        ..RegistryOptions::default()
    }
}

fn count(log: &[String], prefix: &str) -> usize {
    log.iter().filter(|l| l.starts_with(prefix)).count()
}

#[tokio::test]
async fn stalled_downloads_time_out_and_are_retried() {
    let reg = Registry::plain().unwrap();
    let direct = RegistryClient::new(plain_options(&reg)).unwrap();
    let origin = direct.repository(&reference(&reg, "kiln/stall"), Access::Push);
    let (manifest, digest, layer) = push_image(&origin, "1").await;
    let layer_bytes = origin.get_blob_bytes(&layer, None, 1 << 20).await.unwrap();
    let size = layer_bytes.len() as u64;

    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let client = RegistryClient::new(proxied_options(&proxy)).unwrap();
    let r: Reference = format!("{}/kiln/stall:1", proxy.host()).parse().unwrap();
    let repo = client.repository(&r, Access::Pull);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("layer");

    // A response whose head stalls, and one that stalls halfway through its
    // body, for 3 s each: each costs one 0.5 s timeout, then the retry works.
    let stall = Duration::from_secs(3);
    proxy.inject(Some("GET"), "/manifests/", Fault::Delay(stall), 1);
    proxy.inject(Some("GET"), "/blobs/", Fault::StallMidBody(stall), 1);
    let started = Instant::now();
    let fetched = repo.get_manifest("1").await.unwrap();
    assert_eq!((fetched.digest, fetched.bytes), (digest.clone(), manifest));
    assert_eq!(
        repo.download_blob(&layer, Some(size), &out).await.unwrap(),
        size
    );
    assert_eq!(std::fs::read(&out).unwrap(), layer_bytes);
    let took = started.elapsed();
    assert_eq!(proxy.faults_applied(), 2, "{:?}", proxy.log());
    assert!(took < stall, "waited out the stalls: {took:?}");
    eprintln!("two stalls, each timed out and retried: {took:?}");

    // Slow but never silent for long: eight pieces 300 ms apart take 2.1 s,
    // four times the read timeout, and arrive, because the timeout bounds
    // each wait for data, not the transfer.
    proxy.inject(
        Some("GET"),
        "/blobs/",
        Fault::Trickle(Duration::from_millis(300)),
        1,
    );
    let started = Instant::now();
    assert_eq!(
        repo.download_blob(&layer, Some(size), &out).await.unwrap(),
        size
    );
    let took = started.elapsed();
    assert_eq!(proxy.faults_applied(), 3, "{:?}", proxy.log());
    assert!(took >= Duration::from_millis(2100), "{took:?}");
    assert_eq!(std::fs::read(&out).unwrap(), layer_bytes);

    // A registry that never answers: one try and two retries, a timeout
    // each, then one clear error naming the host.
    proxy.inject(
        None,
        "/manifests/",
        Fault::Delay(Duration::from_secs(10)),
        100,
    );
    let started = Instant::now();
    let err = repo.get_manifest("1").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, RegistryError::Transport { timeout: true, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("timed out") && text.contains(&proxy.host()),
        "{text}"
    );
    assert_eq!(proxy.faults_applied(), 3 + 3, "{:?}", proxy.log());
    assert!(took < Duration::from_secs(3), "{took:?}");
    eprintln!("never answered, 3 attempts: {took:?}: {text}");

    // Mid-body stalls that persist end the same way, saying it timed out.
    proxy.inject(Some("GET"), "/blobs/", Fault::StallMidBody(stall), 100);
    let err = repo
        .download_blob(&layer, Some(size), &out)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("timed out") && text.contains(&proxy.host()),
        "{text}"
    );
    assert_eq!(proxy.faults_applied(), 6 + 3, "{:?}", proxy.log());
}

#[tokio::test]
async fn stalled_uploads_time_out_and_are_retried() {
    let reg = Registry::plain().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let client = RegistryClient::new(proxied_options(&proxy)).unwrap();
    let r: Reference = format!("{}/kiln/stalled-push:1", proxy.host())
        .parse()
        .unwrap();
    let repo = client.repository(&r, Access::Push);

    // The registry takes the blob and the manifest, but their answers stall
    // past the timeout once each: both are sent again and the image is
    // complete.
    let stall = Duration::from_secs(3);
    proxy.inject(Some("PUT"), "/blobs/uploads/", Fault::Delay(stall), 1);
    proxy.inject(Some("PUT"), "/manifests/", Fault::Delay(stall), 1);
    let started = Instant::now();
    let (_, digest, _) = push_image(&repo, "1").await;
    let took = started.elapsed();
    assert_eq!(proxy.faults_applied(), 2, "{:?}", proxy.log());
    assert!(took < stall, "{took:?}");
    let direct = RegistryClient::new(plain_options(&reg)).unwrap();
    let pulled = direct
        .pull_image(&reference(&reg, "kiln/stalled-push:1"), &Platform::host())
        .await
        .unwrap();
    assert_eq!(pulled.digest, digest);

    // Answers that never come: bounded, and the error says so.
    proxy.inject(
        Some("PUT"),
        "/manifests/",
        Fault::Delay(Duration::from_secs(10)),
        100,
    );
    let started = Instant::now();
    let err = repo
        .put_manifest("2", pulled.manifest_bytes.clone(), media::OCI_MANIFEST)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("timed out") && text.contains(&proxy.host()),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{text}");
    assert_eq!(proxy.faults_applied(), 2 + 3, "{:?}", proxy.log());
}

const CHUNK: u64 = 256 * 1024;

/// A client through `proxy` with 256 KiB PATCH chunks past a 256 KiB limit.
fn chunked_client(proxy: &FaultProxy, repository: &str) -> kiln_oci::Repository {
    let client = RegistryClient::new(RegistryOptions {
        monolithic_upload_limit: CHUNK,
        upload_chunk_size: CHUNK,
        ..proxied_options(proxy)
    })
    .unwrap();
    let r: Reference = format!("{}/{repository}", proxy.host()).parse().unwrap();
    client.repository(&r, Access::Push)
}

/// Bytes that look random, `len` of them.
fn noise(len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A client pushing through `proxy` in 256 KiB PATCH chunks, and an 8-chunk
/// blob file.
fn chunked_push(
    proxy: &FaultProxy,
    repository: &str,
    tmp: &tempfile::TempDir,
) -> (kiln_oci::Repository, PathBuf, Vec<u8>, Digest) {
    let blob = noise(8 * CHUNK);
    let path = tmp.path().join(repository.replace('/', "_"));
    std::fs::write(&path, &blob).unwrap();
    let digest = Digest::sha256_of(&blob);
    (chunked_client(proxy, repository), path, blob, digest)
}

/// The blob as the registry itself (not the proxy) serves it, verified
/// against its digest on the way.
async fn stored_blob(reg: &Registry, repository: &str, digest: &Digest, size: u64) -> Bytes {
    RegistryClient::new(plain_options(reg))
        .unwrap()
        .repository(&reference(reg, repository), Access::Pull)
        .get_blob_bytes(digest, Some(size), 1 << 30)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_chunked_upload_resumes_after_a_dropped_patch() {
    let reg = Registry::plain().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, path, blob, digest) = chunked_push(&proxy, "kiln/resume", &tmp);
    let size = blob.len() as u64;

    // The fifth PATCH's connection dies halfway, before the registry sees
    // any of it; the registry holds the first four chunks.
    proxy.inject_after(
        Some("PATCH"),
        "/blobs/uploads/",
        Fault::DropRequestMidBody,
        4,
        1,
    );
    let outcome = repo
        .push_blob_file(&path, &digest, size, None)
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert_eq!(proxy.faults_applied(), 1);
    let log = proxy.log();
    // One session, asked where it stood once, and continued.
    assert_eq!(count(&log, "POST "), 1, "{log:?}");
    let status: Vec<_> = log
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains("/blobs/uploads/"))
        .collect();
    assert_eq!(status.len(), 1, "{log:?}");
    assert!(status[0].ends_with("-> 204"), "{log:?}");
    assert_eq!(count(&log, "PATCH "), 9, "{log:?}");
    assert_eq!(
        stored_blob(&reg, "kiln/resume", &digest, size).await,
        Bytes::from(blob)
    );
    // The bytes sent: the blob once and the half chunk that was lost. A
    // restart would have sent the four confirmed chunks again as well.
    let sent = proxy.request_bytes(Some("PATCH"), "/blobs/uploads/");
    assert_eq!(sent, size + CHUNK / 2);
    let restart = size + 4 * CHUNK + CHUNK / 2;
    eprintln!(
        "PATCH bytes sent for a {size}-byte blob with one chunk dropped: {sent} resumed, {restart} restarted"
    );

    // A lost final PUT (the registry never saw it) is sent again alone.
    let (repo, path, blob, digest) = chunked_push(&proxy, "kiln/resume-put", &tmp);
    proxy.inject(Some("PUT"), "/blobs/uploads/", Fault::DropRequestMidBody, 1);
    let before = proxy.request_bytes(Some("PATCH"), "/blobs/uploads/");
    repo.push_blob_file(&path, &digest, size, None)
        .await
        .unwrap();
    assert_eq!(
        proxy.request_bytes(Some("PATCH"), "/blobs/uploads/") - before,
        size
    );
    assert_eq!(
        stored_blob(&reg, "kiln/resume-put", &digest, size).await,
        Bytes::from(blob)
    );

    // A final PUT the registry completed but whose answer was lost: the
    // session is gone, the blob is there, nothing is sent again.
    let (repo, path, blob, digest) = chunked_push(&proxy, "kiln/resume-done", &tmp);
    proxy.inject(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::RelayHalfRequestBody,
        1,
    );
    let posts = count(&proxy.log(), "POST ");
    let before = proxy.request_bytes(Some("PATCH"), "/blobs/uploads/");
    repo.push_blob_file(&path, &digest, size, None)
        .await
        .unwrap();
    assert_eq!(count(&proxy.log(), "POST "), posts + 1);
    assert_eq!(
        proxy.request_bytes(Some("PATCH"), "/blobs/uploads/") - before,
        size
    );
    assert_eq!(
        stored_blob(&reg, "kiln/resume-done", &digest, size).await,
        Bytes::from(blob)
    );
}

#[tokio::test]
async fn an_upload_that_cannot_resume_starts_again() {
    let reg = Registry::plain().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // A registry (or a front) that does not answer upload status queries.
    let (repo, path, blob, digest) = chunked_push(&proxy, "kiln/no-status", &tmp);
    let size = blob.len() as u64;
    proxy.inject(Some("GET"), "/blobs/uploads/", Fault::Status(404, None), 1);
    proxy.inject_after(
        Some("PATCH"),
        "/blobs/uploads/",
        Fault::DropRequestMidBody,
        4,
        1,
    );
    repo.push_blob_file(&path, &digest, size, None)
        .await
        .unwrap();
    let log = proxy.log();
    assert_eq!(proxy.faults_applied(), 2, "{log:?}");
    assert_eq!(count(&log, "POST "), 2, "{log:?}");
    assert_eq!(
        proxy.request_bytes(Some("PATCH"), "/blobs/uploads/"),
        size + 4 * CHUNK + CHUNK / 2
    );
    assert_eq!(
        stored_blob(&reg, "kiln/no-status", &digest, size).await,
        Bytes::from(blob)
    );

    // The registry got half of a chunk that the client never heard
    // about: what it holds no longer matches the session state the client
    // has. Continuing where the registry says, or starting again, both end
    // in the right blob, and never cost more than a restart.
    let (repo, path, blob, digest) = chunked_push(&proxy, "kiln/partial", &tmp);
    let before = proxy.request_bytes(Some("PATCH"), "/blobs/uploads/");
    proxy.inject_after(
        Some("PATCH"),
        "/blobs/uploads/",
        Fault::RelayHalfRequestBody,
        4,
        1,
    );
    repo.push_blob_file(&path, &digest, size, None)
        .await
        .unwrap();
    assert_eq!(
        stored_blob(&reg, "kiln/partial", &digest, size).await,
        Bytes::from(blob)
    );
    let sent = proxy.request_bytes(Some("PATCH"), "/blobs/uploads/") - before;
    assert!(sent <= size + 5 * CHUNK, "{sent}");
    let log = proxy.log();
    let asked = log
        .iter()
        .filter(|l| l.starts_with("GET /v2/kiln/partial/blobs/uploads/"))
        .count();
    assert_eq!(asked, 1, "one status query expected: {log:?}");
    eprintln!(
        "partial chunk on the registry: {sent} PATCH bytes; {:?}",
        proxy
            .log()
            .iter()
            .filter(|l| l.contains("kiln/partial") && !l.starts_with("PATCH"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn downloads_that_break_off_say_how_many_bytes_of_how_many_arrived() {
    let reg = Registry::plain().unwrap();
    let direct = RegistryClient::new(plain_options(&reg)).unwrap();
    let origin = direct.repository(&reference(&reg, "kiln/broken"), Access::Push);
    let blob = Bytes::from(vec![7u8; 10_000]);
    let digest = Digest::sha256_of(&blob);
    origin
        .push_blob(&BlobSource::Bytes(blob.clone()), &digest, 10_000, None)
        .await
        .unwrap();

    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let client = RegistryClient::new(RegistryOptions {
        pull_retries: 0,
        ..proxied_options(&proxy)
    })
    .unwrap();
    let r: Reference = format!("{}/kiln/broken:1", proxy.host()).parse().unwrap();
    let repo = client.repository(&r, Access::Pull);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("blob");
    // The head announces 10000 bytes; 5000 come, then the connection closes.
    proxy.inject(Some("GET"), "/blobs/", Fault::DropMidBody, 2);
    for err in [
        repo.download_blob(&digest, Some(10_000), &out)
            .await
            .unwrap_err(),
        // Without a size from the manifest, the Content-Length says it.
        repo.get_blob_bytes(&digest, None, 1 << 20)
            .await
            .unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "download of {digest} broke off after 5000 of 10000 bytes"
            )),
            "{text}"
        );
        assert!(!text.contains("error decoding response body"), "{text}");
        assert!(err.is_retryable(), "{text}");
    }
    assert_eq!(proxy.faults_applied(), 2, "{:?}", proxy.log());

    // A manifest whose answer breaks off says the same.
    let (manifest, _, _) = push_image(&origin, "1").await;
    proxy.inject(Some("GET"), "/manifests/", Fault::DropMidBody, 1);
    let err = repo.get_manifest("1").await.unwrap_err();
    let text = err.to_string();
    let half = manifest.len() / 2;
    assert!(
        text.contains(&format!(
            "the answer broke off after {half} of {} bytes",
            manifest.len()
        )),
        "{text}"
    );
    assert!(!text.contains("error decoding response body"), "{text}");
}

#[path = "registry/growing.rs"]
mod growing;

/// The distribution registry rewrites a blob's link file on every upload of
/// that blob, by truncating and writing it; a manifest put that reads the
/// empty link is refused as if the blob were missing. Seen here: the
/// refusal an empty link gets, that refusal put again once every blob
/// answers, and a manifest naming a blob that is really missing refused
/// after one put.
#[tokio::test]
async fn a_manifest_refused_for_a_blob_that_is_there_is_put_again() {
    let reg = Registry::plain().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let client = RegistryClient::new(proxied_options(&proxy)).unwrap();
    let r = Reference::parse(&format!("{}/kiln/settle:v1", proxy.host())).unwrap();
    let repo = client.repository(&r, Access::Push);
    let (manifest, _, layer) = push_image(&repo, "v1").await;
    let puts = |tag: &str| {
        count(
            &proxy.log(),
            &format!("PUT /v2/kiln/settle/manifests/{tag} "),
        )
    };

    // The link as a second upload of the layer leaves it for an instant.
    let link = reg
        .storage_dir()
        .join("docker/registry/v2/repositories/kiln/settle/_layers/sha256")
        .join(layer.hex())
        .join("link");
    let kept = std::fs::read(&link).unwrap();
    std::fs::write(&link, b"").unwrap();
    let refused = repo
        .put_manifest("v2", manifest.clone(), media::OCI_MANIFEST)
        .await
        .unwrap_err();
    std::fs::write(&link, kept).unwrap();
    let codes = refused.codes();
    assert!(
        codes.contains(&"MANIFEST_BLOB_UNKNOWN") && codes.contains(&"DIGEST_INVALID"),
        "{refused}"
    );
    // While the link is empty a HEAD cannot vouch for the blob either.
    assert_eq!(puts("v2"), 1, "{:#?}", proxy.log());

    // The same refusal while every blob is there: put again, and it holds.
    let body = format!(
        r#"{{"errors":[{{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}},{{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{layer}"}}]}}"#
    );
    proxy.inject(Some("PUT"), "/manifests/v3", Fault::Refuse(400, body), 1);
    let digest = repo
        .put_manifest("v3", manifest.clone(), media::OCI_MANIFEST)
        .await
        .unwrap();
    assert_eq!(puts("v3"), 2, "{:#?}", proxy.log());
    assert_eq!(repo.get_manifest("v3").await.unwrap().digest, digest);

    // A layer that was never uploaded: the registry's answer stands.
    let mut missing = Manifest::from_slice(&manifest).unwrap();
    missing.layers[0].digest = Digest::sha256_of(b"never uploaded");
    let refused = repo
        .put_manifest("v4", Bytes::from(missing.to_vec()), media::OCI_MANIFEST)
        .await
        .unwrap_err();
    assert!(
        refused.codes().contains(&"MANIFEST_BLOB_UNKNOWN"),
        "{refused}"
    );
    assert_eq!(puts("v4"), 1, "{:#?}", proxy.log());
}
