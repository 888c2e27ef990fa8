//! The base-image warmer and reading warmed bases back.

mod cache_common;

use std::collections::BTreeMap;
use std::time::Duration;

use cache_common::client;
use kiln_build::cache::warm::{cached_base, dockerfile_images, warm};
use kiln_oci::{Platform, Reference};
use kiln_testkit::{BaseImage, Registry};

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn warm_fills_the_cache_dir_and_cached_base_finds_it() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox_two_layers().unwrap();
    let full = base.push_to(&reg, "busybox:latest").unwrap();
    let reference: Reference = full.parse().unwrap();
    let platform = Platform::new("linux", "amd64", None);
    let dir = tempfile::tempdir().unwrap();
    let c = client(&reg);

    assert!(cached_base(dir.path(), &reference, &platform, DAY)
        .await
        .is_none());
    let warmed = warm(
        &c,
        std::slice::from_ref(&reference),
        dir.path(),
        &platform,
        DAY,
        false,
    )
    .await
    .unwrap();
    assert_eq!(warmed.len(), 1);
    assert!(!warmed[0].was_fresh);

    let pulled = c.pull_image(&reference, &platform).await.unwrap();
    let found = cached_base(dir.path(), &reference, &platform, DAY)
        .await
        .expect("the warmed base");
    assert_eq!(found.manifest_digest, pulled.digest);
    assert_eq!(found.manifest, pulled.manifest);
    assert_eq!(found.config_bytes, pulled.config_bytes.to_vec());
    assert_eq!(found.manifest.layers.len(), 2);
    for l in &found.manifest.layers {
        let bytes = std::fs::read(found.blob_path(&l.digest)).unwrap();
        assert_eq!(kiln_oci::Digest::sha256_of(&bytes), l.digest);
    }

    // Fresh: nothing is pulled again, even with the registry gone.
    drop(reg);
    let again = warm(
        &c,
        std::slice::from_ref(&reference),
        dir.path(),
        &platform,
        DAY,
        false,
    )
    .await
    .unwrap();
    assert!(again[0].was_fresh);
    // --force pulls regardless, and fails without the registry.
    assert!(warm(
        &c,
        std::slice::from_ref(&reference),
        dir.path(),
        &platform,
        DAY,
        true
    )
    .await
    .is_err());
    // Another platform is not the warmed one.
    let arm = Platform::new("linux", "arm64", None);
    assert!(cached_base(dir.path(), &reference, &arm, DAY)
        .await
        .is_none());
}

#[tokio::test]
async fn an_expired_warm_copy_is_not_used() {
    let reg = Registry::plain().unwrap();
    let full = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:1")
        .unwrap();
    let reference: Reference = full.parse().unwrap();
    let platform = Platform::new("linux", "amd64", None);
    let dir = tempfile::tempdir().unwrap();
    warm(
        &client(&reg),
        std::slice::from_ref(&reference),
        dir.path(),
        &platform,
        DAY,
        false,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        cached_base(dir.path(), &reference, &platform, Duration::ZERO)
            .await
            .is_none()
    );
    // Pinned by digest, the copy never expires.
    let digest = cached_base(dir.path(), &reference, &platform, DAY)
        .await
        .unwrap()
        .manifest_digest;
    let pinned = reference.with_digest(digest);
    warm(
        &client(&reg),
        std::slice::from_ref(&pinned),
        dir.path(),
        &platform,
        DAY,
        false,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(cached_base(dir.path(), &pinned, &platform, Duration::ZERO)
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_warmers_share_a_dir() {
    let reg = Registry::plain().unwrap();
    let full = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:1")
        .unwrap();
    let reference: Reference = full.parse().unwrap();
    let platform = Platform::new("linux", "amd64", None);
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, r, p, d) = (
            client(&reg),
            reference.clone(),
            platform.clone(),
            dir.path().to_path_buf(),
        );
        tasks.push(tokio::spawn(async move {
            warm(&c, &[r], &d, &p, DAY, true).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(cached_base(dir.path(), &reference, &platform, DAY)
        .await
        .is_some());
    let images: Vec<_> = std::fs::read_dir(dir.path().join("kiln-images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(images.len(), 1, "one image, no temp leftovers: {images:?}");
}

#[test]
fn dockerfile_images_are_expanded_and_deduplicated() {
    let text = "ARG TAG=1\nFROM alpine:$TAG AS a\nFROM scratch\nCOPY --from=a / /\n\
                FROM alpine:$TAG\nCOPY --from=busybox:musl /bin/sh /sh\n";
    let mut args = BTreeMap::new();
    args.insert("TAG".to_string(), "3.20".to_string());
    assert_eq!(
        dockerfile_images(text, &args).unwrap(),
        vec!["alpine:3.20".to_string(), "busybox:musl".to_string()]
    );
    let error =
        dockerfile_images("FROM a\nFROMM x\nFROM b\nCOPYY y z\n", &BTreeMap::new()).unwrap_err();
    let lines: Vec<usize> = error.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 4]);
    assert_eq!(error.to_string().lines().count(), 2);
}
