//! The registry layer cache against a real registry.

mod cache_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cache_common::{client, delete_blob_from_storage, layer, Warnings};
use kiln_build::cache::entry::Entry;
use kiln_build::cache::{
    CacheKey, CachePusher, LayerCache, RegistryCache, StepInputs, StepStore, StoreError,
};
use kiln_build::model::image::LayerOrigin;
use kiln_oci::{media, Access, BlobSource, Platform, Reference};
use kiln_testkit::{BaseImage, Registry};

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

fn cache(reg: &Registry, ttl: Duration) -> RegistryCache {
    let repo: Reference = format!("{}/app/cache", reg.host()).parse().unwrap();
    RegistryCache::new(client(reg), repo, ttl, true)
}

#[tokio::test]
async fn store_then_lookup_returns_the_same_layer_without_downloading() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = cache(&reg, DAY);
    let l = layer(dir.path(), "one");
    let k = key("RUN one");
    c.store(&k, Some(&l), "RUN one").await.unwrap();

    let hit = c.lookup(&k).await.unwrap().expect("a hit");
    let got = hit.layer.expect("a layer");
    assert_eq!(got.descriptor.digest, l.descriptor.digest);
    assert_eq!(got.descriptor.size, l.descriptor.size);
    assert_eq!(got.descriptor.media_type, l.descriptor.media_type);
    assert!(
        got.descriptor.annotations.is_empty(),
        "entry bookkeeping stays out of the layer"
    );
    assert_eq!(got.diff_id, l.diff_id);
    assert_eq!(hit.created_by, "RUN one");
    match got.origin {
        LayerOrigin::Remote(r) => {
            assert_eq!(r.name(), format!("{}/app/cache", reg.host()));
            assert_eq!(r.tag(), Some(k.to_string().as_str()));
        }
        other => panic!("expected a remote origin, got {other:?}"),
    }
    // The entry is tagged with the key in the cache repository.
    let tags = client(&reg)
        .repository(c.repo(), Access::Pull)
        .list_tags()
        .await
        .unwrap();
    assert_eq!(tags, vec![k.to_string()]);
}

#[tokio::test]
async fn a_step_without_a_layer_round_trips() {
    let reg = Registry::plain().unwrap();
    let c = cache(&reg, DAY);
    let k = key("ENV A=b");
    c.store(&k, None, "ENV A=b").await.unwrap();
    let hit = c.lookup(&k).await.unwrap().expect("a hit");
    assert!(hit.layer.is_none());
    assert_eq!(hit.created_by, "ENV A=b");
}

#[tokio::test]
async fn unknown_keys_miss_in_a_missing_and_in_an_existing_repository() {
    let reg = Registry::plain().unwrap();
    let c = cache(&reg, DAY);
    assert!(c.lookup(&key("RUN nothing")).await.unwrap().is_none());
    c.store(&key("RUN a"), None, "RUN a").await.unwrap();
    assert!(c.lookup(&key("RUN b")).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_entries_miss() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = cache(&reg, DAY);
    let l = layer(dir.path(), "old");
    let k = key("RUN old");
    c.store(&k, Some(&l), "RUN old").await.unwrap();
    // Rewrite the entry as if made long ago.
    let mut entry = Entry::new(Some((l.descriptor.clone(), l.diff_id.clone())), "RUN old");
    entry.created = "2001-02-03T04:05:06Z".into();
    put_entry(&reg, &c, &k, &entry).await;
    assert!(c.lookup(&k).await.unwrap().is_none());
    // A longer TTL still finds it: the entry itself is intact.
    let forever = cache(&reg, Duration::from_secs(100 * 365 * 86_400));
    assert!(forever.lookup(&k).await.unwrap().is_some());
}

async fn put_entry(reg: &Registry, c: &RegistryCache, k: &CacheKey, entry: &Entry) {
    let repo = client(reg).repository(c.repo(), Access::Push);
    let config = entry.config_bytes();
    let manifest = entry.manifest(&config);
    repo.push_blob(
        &BlobSource::Bytes(config.into()),
        &manifest.config.digest,
        manifest.config.size,
        None,
    )
    .await
    .unwrap();
    repo.put_manifest(
        &k.to_string(),
        manifest.to_vec().into(),
        media::OCI_MANIFEST,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_entry_whose_layer_blob_is_gone_is_a_miss_with_a_warning() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = cache(&reg, DAY);
    let l = layer(dir.path(), "broken");
    let k = key("RUN broken");
    c.store(&k, Some(&l), "RUN broken").await.unwrap();
    delete_blob_from_storage(&reg, &l.descriptor.digest);

    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    assert!(c.lookup(&k).await.unwrap().is_none());
    let all = warnings.all();
    assert!(
        all.iter()
            .any(|w| w.contains(&l.descriptor.digest.to_string())),
        "warnings: {all:?}"
    );
}

#[tokio::test]
async fn a_manifest_that_is_not_an_entry_is_a_miss_with_a_warning() {
    let reg = Registry::plain().unwrap();
    let c = cache(&reg, DAY);
    let k = key("RUN foreign");
    // Someone else's image under a key-shaped tag.
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, &format!("app/cache:{k}"))
        .unwrap();
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    assert!(c.lookup(&k).await.unwrap().is_none());
    assert_eq!(warnings.all().len(), 1, "{:?}", warnings.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_of_one_key_all_succeed() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = layer(dir.path(), "race");
    let k = key("RUN race");
    // Separate clients, like separate runners.
    let (a, b) = (cache(&reg, DAY), cache(&reg, DAY));
    let (ra, rb) = tokio::join!(
        a.store(&k, Some(&l), "RUN race"),
        b.store(&k, Some(&l), "RUN race")
    );
    ra.unwrap();
    rb.unwrap();
    // And through the background pusher: no warnings.
    let pusher = CachePusher::new(4);
    let layer_cache: LayerCache = Arc::new(cache(&reg, DAY));
    for _ in 0..4 {
        pusher.spawn(&layer_cache, k.clone(), Some(l.clone()), "RUN race".into());
    }
    let warnings = pusher.finish().await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let hit = a.lookup(&k).await.unwrap().expect("a hit");
    assert_eq!(hit.layer.unwrap().descriptor.digest, l.descriptor.digest);
}

#[tokio::test]
async fn failed_background_stores_are_warnings() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut l = layer(dir.path(), "gone");
    l.origin = LayerOrigin::Local(dir.path().join("no-such-file"));
    let pusher = CachePusher::default();
    pusher.spawn(
        &(Arc::new(cache(&reg, DAY)) as LayerCache),
        key("RUN gone"),
        Some(l),
        "RUN gone".into(),
    );
    let warnings = pusher.finish().await;
    assert_eq!(warnings.len(), 1);
    assert!(
        matches!(&warnings[0], StoreError::Entry { key, .. } if *key == self::key("RUN gone")),
        "{warnings:?}"
    );
    let text = warnings[0].to_string();
    assert!(
        text.starts_with("could not store cache entry ") && text.contains("no-such-file"),
        "{text}"
    );
}

#[tokio::test]
async fn a_layer_in_another_repository_is_mounted() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = layer(dir.path(), "base layer");
    let c = client(&reg);
    let base: Reference = format!("{}/base:1", reg.host()).parse().unwrap();
    c.repository(&base, Access::Push)
        .push_blob_file(
            match &l.origin {
                LayerOrigin::Local(p) => p,
                _ => unreachable!(),
            },
            &l.descriptor.digest,
            l.descriptor.size,
            None,
        )
        .await
        .unwrap();
    let mut remote = l.clone();
    remote.origin = LayerOrigin::Remote(base);
    std::fs::remove_dir_all(dir.path()).unwrap();
    let cache = cache(&reg, DAY);
    let k = key("COPY . .");
    cache.store(&k, Some(&remote), "COPY . .").await.unwrap();
    assert!(cache.lookup(&k).await.unwrap().unwrap().layer.is_some());
}

#[tokio::test]
async fn no_push_means_no_store() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo: Reference = format!("{}/app/cache", reg.host()).parse().unwrap();
    let c = RegistryCache::new(client(&reg), repo, DAY, false);
    let k = key("RUN x");
    c.store(&k, Some(&layer(dir.path(), "x")), "RUN x")
        .await
        .unwrap();
    assert!(c.lookup(&k).await.unwrap().is_none());
}

#[tokio::test]
async fn prune_deletes_only_expired_entries_and_leaves_other_tags() {
    let reg = Registry::plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = cache(&reg, DAY);
    let fresh = key("RUN fresh");
    let old = key("RUN old");
    c.store(&fresh, Some(&layer(dir.path(), "fresh")), "RUN fresh")
        .await
        .unwrap();
    let mut entry = Entry::new(None, "RUN old");
    entry.created = "2001-02-03T04:05:06Z".into();
    put_entry(&reg, &c, &old, &entry).await;
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "app/cache:latest")
        .unwrap();

    let report = c.prune(DAY).await.unwrap();
    assert_eq!(
        (report.examined, report.deleted, report.kept, report.skipped),
        (2, 1, 1, 1)
    );
    let mut tags = client(&reg)
        .repository(c.repo(), Access::Pull)
        .list_tags()
        .await
        .unwrap();
    tags.sort();
    let mut want = vec![fresh.to_string(), "latest".to_string()];
    want.sort();
    assert_eq!(tags, want);
    assert!(c.lookup(&fresh).await.unwrap().is_some());
}

#[tokio::test]
async fn pruning_a_missing_repository_is_empty() {
    let reg = Registry::plain().unwrap();
    let report = cache(&reg, DAY).prune(DAY).await.unwrap();
    assert_eq!(report, Default::default());
}

#[tokio::test]
async fn a_cache_that_does_not_push_still_prunes() {
    let reg = Registry::plain().unwrap();
    let writer = cache(&reg, DAY);
    let fresh = key("RUN fresh");
    writer.store(&fresh, None, "RUN fresh").await.unwrap();
    let old = key("RUN old");
    let mut entry = Entry::new(None, "RUN old");
    entry.created = "2001-02-03T04:05:06Z".into();
    put_entry(&reg, &writer, &old, &entry).await;
    // As `kiln cache prune` opens it: stores off, deletes still allowed.
    let pruner = RegistryCache::new(client(&reg), writer.repo().clone(), DAY, false);
    let report = pruner.prune(DAY).await.unwrap();
    assert_eq!((report.examined, report.deleted, report.kept), (2, 1, 1));
    let tags = client(&reg)
        .repository(writer.repo(), Access::Pull)
        .list_tags()
        .await
        .unwrap();
    assert_eq!(tags, vec![fresh.to_string()]);
}
