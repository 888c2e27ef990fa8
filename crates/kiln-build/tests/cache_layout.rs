//! The OCI layout layer cache (`--cache-repo oci:PATH`).

mod cache_common;

use std::collections::BTreeMap;
use std::time::Duration;

use cache_common::layer;
use kiln_build::cache::layout::REF_NAME;
use kiln_build::cache::{CacheKey, OciLayoutCache, StepInputs, StepStore};
use kiln_build::model::image::LayerOrigin;
use kiln_oci::{Index, Platform};

const DAY: Duration = Duration::from_secs(86_400);

fn key(step: &str) -> CacheKey {
    let command = kiln_dockerfile::parse_onbuild_trigger(step)
        .expect("an instruction")
        .command;
    let args = BTreeMap::new();
    CacheKey::base("scratch", &Platform::new("linux", "amd64", None)).chain(&StepInputs {
        command: &command,
        args: &args,
        inputs: None,
        extra: &[],
    })
}

fn index(dir: &std::path::Path) -> Index {
    Index::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn store_then_lookup_round_trips_through_the_layout() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = OciLayoutCache::new(dir.path().join("cache"), DAY, true);
    let l = layer(src.path(), "one");
    let k = key("RUN one");
    assert!(c.lookup(&k).await.unwrap().is_none(), "empty cache misses");
    c.store(&k, Some(&l), "RUN one").await.unwrap();
    c.store(&key("ENV A=1"), None, "ENV A=1").await.unwrap();

    let hit = c.lookup(&k).await.unwrap().expect("a hit");
    let got = hit.layer.unwrap();
    assert_eq!(got.descriptor.digest, l.descriptor.digest);
    assert_eq!(got.diff_id, l.diff_id);
    assert_eq!(hit.created_by, "RUN one");
    // The layer is read from the layout's own blob, not the build's file.
    let blob = c.blob_path(&l.descriptor.digest);
    assert_eq!(got.origin, LayerOrigin::Local(blob.clone()));
    assert_eq!(std::fs::read(&blob).unwrap(), b"layer blob: one");
    assert!(c
        .lookup(&key("ENV A=1"))
        .await
        .unwrap()
        .unwrap()
        .layer
        .is_none());
    assert!(c.lookup(&key("RUN other")).await.unwrap().is_none());
    // A valid OCI layout other tools can read.
    assert!(dir.path().join("cache/oci-layout").is_file());
    let names: Vec<_> = index(&dir.path().join("cache"))
        .manifests
        .iter()
        .map(|d| d.annotations[REF_NAME].clone())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&k.to_string()));
}

#[tokio::test]
async fn a_layer_file_that_does_not_match_its_digest_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = OciLayoutCache::new(dir.path().to_path_buf(), DAY, true);
    let l = layer(src.path(), "one");
    if let LayerOrigin::Local(p) = &l.origin {
        std::fs::write(p, b"tampered").unwrap();
    }
    assert!(c.store(&key("RUN one"), Some(&l), "RUN one").await.is_err());
    assert!(c.lookup(&key("RUN one")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_missing_layer_blob_is_a_miss() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = OciLayoutCache::new(dir.path().to_path_buf(), DAY, true);
    let l = layer(src.path(), "one");
    c.store(&key("RUN one"), Some(&l), "RUN one").await.unwrap();
    std::fs::remove_file(c.blob_path(&l.descriptor.digest)).unwrap();
    assert!(c.lookup(&key("RUN one")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_keep_every_entry() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        // A separate cache value per task, like separate builds sharing the dir.
        let c = OciLayoutCache::new(dir.path().to_path_buf(), DAY, true);
        // Half the tasks store the same key with the same layer.
        let name = if i % 2 == 0 {
            "RUN same".to_string()
        } else {
            format!("RUN step {i}")
        };
        // Each build has its own copy of the layer file.
        let own = src.path().join(i.to_string());
        std::fs::create_dir(&own).unwrap();
        let l = layer(&own, &name);
        tasks.push(tokio::spawn(async move {
            c.store(&key(&name), Some(&l), &name).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let idx = index(dir.path());
    assert_eq!(
        idx.manifests.len(),
        9,
        "8 distinct keys plus the shared one"
    );
    let c = OciLayoutCache::new(dir.path().to_path_buf(), DAY, true);
    for i in (1..16).step_by(2) {
        assert!(c
            .lookup(&key(&format!("RUN step {i}")))
            .await
            .unwrap()
            .is_some());
    }
    assert!(c.lookup(&key("RUN same")).await.unwrap().is_some());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn prune_drops_expired_entries_from_the_layout() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = OciLayoutCache::new(dir.path().to_path_buf(), DAY, true);
    c.store(&key("RUN a"), Some(&layer(src.path(), "a")), "RUN a")
        .await
        .unwrap();
    c.store(&key("RUN b"), None, "RUN b").await.unwrap();
    let report = c.prune(DAY).await.unwrap();
    assert_eq!((report.examined, report.deleted, report.kept), (2, 0, 2));
    // Entries have second precision: after two seconds, a one-second limit expires both.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = c.prune(Duration::from_secs(1)).await.unwrap();
    assert_eq!((report.examined, report.deleted, report.kept), (2, 2, 0));
    assert!(index(dir.path()).manifests.is_empty());
    assert!(c.lookup(&key("RUN a")).await.unwrap().is_none());
}
