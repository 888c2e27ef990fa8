//! Shared helpers for the cache tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln_build::model::image::{LayerOrigin, LayerRef};
use kiln_oci::{media, Descriptor, Digest, RegistryClient, RegistryOptions};
use kiln_testkit::Registry;

/// A client that talks plain HTTP to the test registry.
pub fn client(reg: &Registry) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        insecure_registries: vec![reg.host()],
        ..Default::default()
    })
    .unwrap()
}

/// A layer blob file in `dir` with the given content; the diff_id stands in
/// for the uncompressed tar's digest.
pub fn layer(dir: &Path, content: &str) -> LayerRef {
    let bytes = format!("layer blob: {content}").into_bytes();
    let digest = Digest::sha256_of(&bytes);
    let path = dir.join(digest.hex());
    std::fs::write(&path, &bytes).unwrap();
    LayerRef {
        descriptor: Descriptor::new(media::OCI_LAYER_GZIP, digest, bytes.len() as u64),
        diff_id: Digest::sha256_of(format!("tar: {content}").as_bytes()),
        origin: LayerOrigin::Local(path),
    }
}

/// Removes a blob from the registry's filesystem storage, as a registry
/// garbage collection or a disk problem would.
pub fn delete_blob_from_storage(reg: &Registry, digest: &Digest) {
    let hex = digest.hex();
    let dir = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
}

/// Collects WARN events (their messages) on the current thread.
#[derive(Clone, Default)]
pub struct Warnings(pub Arc<Mutex<Vec<String>>>);

impl Warnings {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
