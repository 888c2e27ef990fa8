//! What an image's files are, without its files.
//!
//! A COPY that misses the cache must know what the image below already has
//! (is the destination a directory? which parent directories exist? who is
//! `app` in `/etc/passwd`?). Unpacking the whole image to answer would make
//! every build download its base, even when every step before is cached.
//! Instead each layer gets a *listing* — every path with its kind, plus the
//! text of the few files the engine reads — and it is kept in the layer
//! cache next to the step entries, so a warm runner fetches a few kilobytes
//! instead of the image.
//!
//! A layer this build writes (RUN, COPY, ADD, WORKDIR, VOLUME) has its
//! listing recorded by the layer writer as the entries go by, and stored
//! with the step's cache entry; a layer it unpacks from a registry (the
//! base, a step taken from the cache) has it recorded by the unpacking, and
//! stored when the cache lacks it. So the first warm rebuild after a cold
//! build downloads no layer to learn what the layers below a changed step
//! hold, whatever steps came before. Only a layer no build ever wrote or
//! unpacked with the cache on is downloaded and listed from its blob.
//!
//! Each chain of layers a step needed to know about also gets one listing
//! for all of them together, flattened: a warm runner that finds the same
//! chain in the registry (the base, and the steps taken from the cache)
//! makes one lookup for it, whatever the number of layers, instead of one
//! per layer.

use super::blobs::BlobStore;
use super::image::{ImageState, LayerOrigin, LayerRef};
use crate::cache::{CacheError, CacheKey, CachePusher, LayerCache};
use crate::copy::FileKind;
use kiln_layer::list::visit_entries_with_content;
use kiln_layer::reader::open_blob;
use kiln_layer::{Catalog, CatalogOptions, EntryKind};
use kiln_oci::media::Compression;
use kiln_oci::{Descriptor, Digest, DigestWriter, Platform};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Files whose text a listing keeps (for `--chown` and USER names).
const TEXT_FILES: [&str; 2] = ["/etc/passwd", "/etc/group"];
/// Largest kept text file; bigger ones are not what we are looking for.
use super::image_text::{ImageTextError, ImageTextProblem, TEXT_LIMIT};
/// The listing format; part of the listing's cache key.
const LISTING_VERSION: &str = "kiln-listing-v1";
/// Media type of a listing blob stored in the cache.
const LISTING_MEDIA_TYPE: &str = "application/vnd.kiln.layer-listing.v1+json";
/// Symlink hops allowed while resolving a path (as Linux).
const MAX_SYMLINK_HOPS: usize = 40;

/// The kind of a listed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file (or a hard link to one).
    File,
    /// A symbolic link to this target.
    Symlink(String),
    /// A device, FIFO or socket.
    Other,
}

/// One layer's paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerListing {
    /// Paths the layer adds or replaces (absolute, normalised).
    pub entries: BTreeMap<String, Kind>,
    /// Paths the layer deletes from the layers below.
    pub whiteouts: Vec<String>,
    /// Directories whose lower contents the layer hides.
    pub opaque: Vec<String>,
    /// Text of the [`TEXT_FILES`] the layer contains.
    pub texts: BTreeMap<String, String>,
}

impl LayerListing {
    /// Lists a layer blob on disk, checking its diff_id.
    pub fn from_blob(
        path: &Path,
        media_type: &str,
        diff_id: &Digest,
    ) -> Result<LayerListing, kiln_layer::Error> {
        let mut reader = open_blob(path, Compression::of_media_type(media_type))?
            .expect_diff_id(diff_id.clone());
        let mut listing = LayerListing::default();
        visit_entries_with_content(&mut reader, |entry, content| {
            let text = match entry.kind {
                EntryKind::File { size } if size <= TEXT_LIMIT && is_text_file(&entry.path) => {
                    let mut text = String::new();
                    content.read_to_string(&mut text).ok().map(|_| text)
                }
                _ => None,
            };
            listing.add(&entry.path, &entry.kind, text);
            Ok(ControlFlow::Continue(()))
        })?;
        reader.finish()?;
        Ok(listing)
    }

    /// The listing of a layer from the catalog its writer or its unpacking
    /// recorded (with [`catalog_options`]): what [`LayerListing::from_blob`]
    /// would say, without reading the blob again.
    pub fn from_catalog(catalog: &Catalog) -> LayerListing {
        let mut listing = LayerListing::default();
        for (path, kind) in &catalog.entries {
            let text = match kind {
                EntryKind::File { .. } => catalog
                    .texts
                    .get(path)
                    .and_then(|bytes| String::from_utf8(bytes.clone()).ok()),
                _ => None,
            };
            listing.add(path, kind, text);
        }
        listing
    }

    /// Adds one layer entry (its normalized layer path), with the text of
    /// the file when it is one of [`TEXT_FILES`].
    fn add(&mut self, path: &Path, kind: &EntryKind, text: Option<String>) {
        let path = format!("/{}", path.display());
        let path = path.trim_end_matches('/').to_string();
        let kind = match kind {
            EntryKind::Dir => Kind::Dir,
            EntryKind::File { .. } => {
                if let Some(text) = text {
                    self.texts.insert(path.clone(), text);
                }
                Kind::File
            }
            EntryKind::HardLink { .. } => Kind::File,
            EntryKind::Symlink { target } => Kind::Symlink(target.display().to_string()),
            EntryKind::Whiteout => {
                self.whiteouts.push(path);
                return;
            }
            EntryKind::Opaque => {
                self.opaque.push(path.clone());
                Kind::Dir
            }
            _ => Kind::Other,
        };
        self.entries.insert(path, kind);
    }
}

fn is_text_file(layer_path: &Path) -> bool {
    let path = format!("/{}", layer_path.display());
    TEXT_FILES.contains(&path.as_str())
}

/// What a layer writer or an unpacking records so that the layer's listing
/// needs no second read of its blob.
pub(crate) fn catalog_options() -> CatalogOptions {
    CatalogOptions::keeping(&TEXT_FILES, TEXT_LIMIT)
}

/// An image's paths: its layers' listings applied in order.
#[derive(Debug, Clone, Default)]
pub struct ImageIndex {
    paths: BTreeMap<String, Kind>,
    texts: BTreeMap<String, String>,
}

impl ImageIndex {
    /// Applies a layer on top: its whiteouts and opaque directories hide
    /// what is below, then its entries are added.
    pub fn apply(&mut self, layer: &LayerListing) {
        for gone in &layer.whiteouts {
            self.remove_tree(gone, true);
        }
        for dir in &layer.opaque {
            self.remove_tree(dir, false);
        }
        for (path, kind) in &layer.entries {
            if *kind != Kind::Dir {
                // A file replacing a directory replaces its contents too.
                self.remove_tree(path, false);
            }
            self.paths.insert(path.clone(), kind.clone());
            self.texts.remove(path);
        }
        for (path, text) in &layer.texts {
            self.texts.insert(path.clone(), text.clone());
        }
    }

    /// The index a chain listing stands for, taking its maps over: a big
    /// image's chain listing is hundreds of thousands of paths, and copying
    /// them would double the memory a warm build needs for one moment.
    fn from_flat(listing: LayerListing) -> ImageIndex {
        let mut index = ImageIndex {
            paths: listing.entries,
            texts: listing.texts,
        };
        // A chain listing has neither, but a listing read from a cache is
        // what the cache says: applied as a layer would be.
        for gone in &listing.whiteouts {
            index.remove_tree(gone, true);
        }
        for dir in &listing.opaque {
            index.remove_tree(dir, false);
        }
        index
    }

    /// The index as one listing (applied to an empty index, it gives this
    /// one), borrowed: serialised as a [`LayerListing`] is, without a copy.
    fn as_flat(&self) -> FlatListing<'_> {
        FlatListing {
            entries: &self.paths,
            whiteouts: &[],
            opaque: &[],
            texts: &self.texts,
        }
    }

    fn remove_tree(&mut self, path: &str, including_self: bool) {
        if including_self {
            self.paths.remove(path);
            self.texts.remove(path);
        }
        let prefix = format!("{path}/");
        let below: Vec<String> = self
            .paths
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.paths.remove(&p);
            self.texts.remove(&p);
        }
    }

    /// What `path` is, following symlinks inside the image.
    pub fn kind_of(&self, path: &str) -> Option<FileKind> {
        let resolved = self.resolve(path)?;
        if resolved == "/" {
            return Some(FileKind::Dir);
        }
        Some(match self.paths.get(&resolved)? {
            Kind::Dir => FileKind::Dir,
            Kind::File => FileKind::File,
            Kind::Symlink(_) => FileKind::Symlink,
            Kind::Other => FileKind::Other,
        })
    }

    /// The text of `/etc/passwd` or `/etc/group`, when the image has it.
    ///
    /// # Errors
    /// When the image has it as a FIFO, a device node or a socket (what
    /// reading the image's root would refuse too).
    pub fn read_text(&self, path: &str) -> Result<Option<String>, ImageTextError> {
        if let Some(text) = self.resolve(path).and_then(|p| self.texts.get(&p)) {
            return Ok(Some(text.clone()));
        }
        match self.kind_of(path) {
            Some(FileKind::Other) => Err(ImageTextError::new(
                path,
                ImageTextProblem::ListedNotRegular,
            )),
            _ => Ok(None),
        }
    }

    /// `path` with every symlink along it resolved inside the image.
    ///
    /// This resolves in the *listing*, where no file exists on disk: a
    /// separate job from kiln-layer's on-disk `resolve::in_root`, which
    /// `Rootfs::resolve` uses for the same question over an unpacked root.
    /// The rules are the same (`..` stops at `/`, an absolute target starts
    /// again at `/`, a missing component is no link, 40 links at most), so
    /// both views of an image agree.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut done: Vec<String> = Vec::new();
        let mut pending: Vec<String> = parts(path).into_iter().rev().collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let candidate = format!(
                "/{}",
                done.iter()
                    .chain([&part])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/")
            );
            match self.paths.get(&candidate) {
                Some(Kind::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return None;
                    }
                    if target.starts_with('/') {
                        done.clear();
                    }
                    pending.extend(parts(target).into_iter().rev());
                }
                _ => done.push(part),
            }
        }
        Some(format!("/{}", done.join("/")))
    }
}

/// A [`LayerListing`]'s JSON form over borrowed maps (same fields, same
/// order), so that an image's index is stored as a chain listing without
/// copying it first.
#[derive(Serialize)]
struct FlatListing<'a> {
    entries: &'a BTreeMap<String, Kind>,
    whiteouts: &'a [String],
    opaque: &'a [String],
    texts: &'a BTreeMap<String, String>,
}

fn parts(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where listings come from: memory, the layer cache, or the layer itself
/// (downloaded once, then stored in the cache for the next runner).
pub struct Listings {
    blobs: BlobStore,
    cache: Option<LayerCache>,
    push: bool,
    dir: PathBuf,
    memo: Mutex<HashMap<Digest, Arc<LayerListing>>>,
    /// Chain indexes, shared: each is as big as the image's file list.
    chains: Mutex<HashMap<CacheKey, Arc<ImageIndex>>>,
}

impl Listings {
    /// Listings kept under `dir`, looked up in and stored to `cache`.
    pub fn new(blobs: BlobStore, cache: Option<LayerCache>, push: bool, dir: PathBuf) -> Listings {
        Listings {
            blobs,
            cache,
            push,
            dir,
            memo: Mutex::default(),
            chains: Mutex::default(),
        }
    }

    /// The index of `image`'s files. Listings this computes are stored in
    /// the cache in the background, through `pusher`.
    pub async fn index(
        &self,
        image: &ImageState,
        pusher: &CachePusher,
    ) -> Result<Arc<ImageIndex>, ListingError> {
        let layers = &image.layers;
        // One layer's own listing is as cheap as a chain listing.
        let chain = (layers.len() >= 2).then(|| chain_key(layers));
        if let Some(key) = &chain {
            if let Some(index) = self.chain_index(key, layers).await {
                return Ok(index);
            }
        }
        let listings =
            futures::future::try_join_all(layers.iter().map(|l| self.listing(l, pusher))).await?;
        let mut index = ImageIndex::default();
        for l in &listings {
            index.apply(l);
        }
        // The layers' own listings are not needed to answer for the chain.
        drop(listings);
        let index = Arc::new(index);
        if let Some(key) = chain {
            self.store_chain(key, layers, &index, pusher);
        }
        Ok(index)
    }

    /// The index of the chain `layers` (whose key is `key`) from its chain
    /// listing: remembered, or, when every layer came from the registry,
    /// from the cache.
    async fn chain_index(&self, key: &CacheKey, layers: &[LayerRef]) -> Option<Arc<ImageIndex>> {
        if let Some(l) = self.chains.lock().expect("listing memo").get(key) {
            return Some(l.clone());
        }
        // A layer this build wrote is new: no runner has listed this chain.
        if !layers
            .iter()
            .all(|l| matches!(l.origin, LayerOrigin::Remote(_)))
        {
            return None;
        }
        let listing = self.cached_listing(self.cache.as_ref()?, key).await?;
        let index = Arc::new(ImageIndex::from_flat(listing));
        self.chains
            .lock()
            .expect("listing memo")
            .insert(key.clone(), index.clone());
        Some(index)
    }

    /// Remembers the index of `layers` and stores it in the cache: the next
    /// runner, finding these layers in the registry (the base, and the
    /// steps this build stores in the cache), makes one lookup for them.
    fn store_chain(
        &self,
        key: CacheKey,
        layers: &[LayerRef],
        index: &Arc<ImageIndex>,
        pusher: &CachePusher,
    ) {
        self.chains
            .lock()
            .expect("listing memo")
            .insert(key.clone(), index.clone());
        let about = || format!("{} layers from {}", layers.len(), layers[0].diff_id);
        self.store(pusher, key, about, ToStore::Chain(index.clone()));
    }

    /// Stores a listing in the cache in the background, when this build
    /// pushes to one; `about` names it in the warning if that fails.
    fn store(
        &self,
        pusher: &CachePusher,
        key: CacheKey,
        about: impl FnOnce() -> String,
        listing: ToStore,
    ) {
        if let (Some(cache), true) = (&self.cache, self.push) {
            pusher.spawn_task(store_listing(
                cache.clone(),
                self.dir.clone(),
                key,
                about(),
                listing,
            ));
        }
    }

    async fn listing(
        &self,
        layer: &LayerRef,
        pusher: &CachePusher,
    ) -> Result<Arc<LayerListing>, ListingError> {
        if let Some(l) = self.memo.lock().expect("listing memo").get(&layer.diff_id) {
            return Ok(l.clone());
        }
        let key = listing_key(&layer.diff_id);
        let from_cache = match (&self.cache, &layer.origin) {
            // A layer this build wrote is at hand: listing it is cheaper than asking.
            (Some(cache), LayerOrigin::Remote(_)) => self.cached_listing(cache, &key).await,
            _ => None,
        };
        let listing = match from_cache {
            Some(l) => Arc::new(l),
            None => {
                let listing = Arc::new(self.list_blob(layer).await?);
                // Stored for every layer, also the ones this build wrote: the
                // next runner gets them from the cache as step results.
                let about = || format!("layer {}", layer.diff_id);
                self.store(pusher, key, about, ToStore::Layer(listing.clone()));
                listing
            }
        };
        self.memo
            .lock()
            .expect("listing memo")
            .insert(layer.diff_id.clone(), listing.clone());
        Ok(listing)
    }

    /// Lists `layer` from its blob, downloaded first when it is remote.
    async fn list_blob(&self, layer: &LayerRef) -> Result<LayerListing, ListingError> {
        let path = self
            .blobs
            .local_path(layer)
            .await
            .map_err(|source| ListingError::Fetch {
                digest: layer.descriptor.digest.clone(),
                source: Box::new(source),
            })?;
        let (media_type, diff_id) = (layer.descriptor.media_type.clone(), layer.diff_id.clone());
        tokio::task::spawn_blocking(move || LayerListing::from_blob(&path, &media_type, &diff_id))
            .await
            .expect("listing task panicked")
            .map_err(ListingError::Read)
    }

    async fn cached_listing(&self, cache: &LayerCache, key: &CacheKey) -> Option<LayerListing> {
        let hit = cache.lookup(key).await.ok()??;
        let layer = hit.layer?;
        let path = self.blobs.metadata_path(&layer).await.ok()?;
        // Parsed as it is read: a big image's listing is tens of megabytes
        // of JSON, and holding the text beside the maps would double it.
        let parsed = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(serde_json::Error::io)?;
            serde_json::from_reader::<_, LayerListing>(std::io::BufReader::new(file))
        })
        .await
        .ok()?;
        match parsed {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(
                    "cached layer listing {key} is unreadable ({e}); listing the layer instead"
                );
                None
            }
        }
    }

    /// Takes the listing of `layer`, which this build wrote or unpacked,
    /// from the `catalog` recorded as it did, so that no later step lists
    /// its blob; and stores it in the cache as `store` says (in the
    /// background, through `pusher`), so that the next runner finding the
    /// layer in the registry needs no download to know what it holds.
    pub fn record(
        &self,
        layer: &LayerRef,
        catalog: &Catalog,
        store: StoreListing,
        pusher: &CachePusher,
    ) {
        let listing = Arc::new(LayerListing::from_catalog(catalog));
        self.memo
            .lock()
            .expect("listing memo")
            .insert(layer.diff_id.clone(), listing.clone());
        let Some(cache) = self.cache.clone().filter(|_| self.push) else {
            return;
        };
        let key = listing_key(&layer.diff_id);
        let about = format!("layer {}", layer.diff_id);
        let dir = self.dir.clone();
        match store {
            StoreListing::No => {}
            StoreListing::New => {
                pusher.spawn_task(store_listing(
                    cache,
                    dir,
                    key,
                    about,
                    ToStore::Layer(listing),
                ));
            }
            StoreListing::UnlessCached => pusher.spawn_task(async move {
                // One manifest request saves uploading what is there.
                if let Ok(Some(_)) = cache.lookup(&key).await {
                    return Ok(());
                }
                store_listing(cache, dir, key, about, ToStore::Layer(listing)).await
            }),
        }
    }
}

/// Whether [`Listings::record`] stores a listing in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreListing {
    /// Not at all (the step is not cached).
    No,
    /// Yes: the layer is new.
    New,
    /// When the cache lacks it (or it expired): the layer came from a
    /// registry, and some runner may have stored its listing already.
    UnlessCached,
}

/// A listing to store: one layer's, or a chain's as its index holds it.
enum ToStore {
    Layer(Arc<LayerListing>),
    Chain(Arc<ImageIndex>),
}

/// Why the files of an image's layers could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListingError {
    /// The layer's blob could not be had.
    #[error("layer {digest}: {source}")]
    Fetch {
        /// The layer.
        digest: Digest,
        /// Why.
        source: Box<kiln_oci::RegistryError>,
    },
    /// The layer's blob could not be read.
    #[error("{0}")]
    Read(#[source] kiln_layer::Error),
}

/// Why a listing could not be stored in the cache: a warning.
#[derive(Debug, thiserror::Error)]
#[error("could not store the listing of {about}: {source}")]
struct ListingStoreError {
    /// The layer or chain listed.
    about: String,
    source: ListingStoreFailure,
}

#[derive(Debug, thiserror::Error)]
enum ListingStoreFailure {
    /// The listing's file could not be written.
    #[error("{0}")]
    Write(#[source] std::io::Error),
    /// The listing could not be serialised.
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    /// The written file could not be put in its place.
    #[error("{}: {source}", path.display())]
    Persist {
        path: PathBuf,
        source: tempfile::PersistError,
    },
    /// The thread writing it panicked.
    #[error("{0}")]
    Task(#[source] tokio::task::JoinError),
    /// The cache refused the entry.
    #[error("{0}")]
    Cache(#[source] CacheError),
}

/// Stores `listing` (of `about`) in `cache` under `key`, as an entry whose
/// layer is the listing's JSON, written to a file in `dir` first.
async fn store_listing(
    cache: LayerCache,
    dir: PathBuf,
    key: CacheKey,
    about: String,
    listing: ToStore,
) -> Result<(), ListingStoreError> {
    let stored = async {
        // A big layer's listing is megabytes of JSON: written off the async threads.
        let written =
            tokio::task::spawn_blocking(move || -> Result<LayerRef, ListingStoreFailure> {
                use ListingStoreFailure::{Json, Write};
                // Streamed to disk and digested in one pass: a big image's listing
                // is tens of megabytes of JSON, never held whole in memory.
                let temp = tempfile::NamedTempFile::new_in(&dir).map_err(Write)?;
                let file = temp.as_file().try_clone().map_err(Write)?;
                let mut out = DigestWriter::new(std::io::BufWriter::new(file));
                match &listing {
                    ToStore::Layer(l) => serde_json::to_writer(&mut out, &**l),
                    ToStore::Chain(index) => serde_json::to_writer(&mut out, &index.as_flat()),
                }
                .map_err(Json)?;
                let (mut file, digest, len) = out.finish();
                std::io::Write::flush(&mut file).map_err(Write)?;
                let path = dir.join(format!("listing-{}", digest.hex()));
                if let Err(source) = temp.persist(&path) {
                    return Err(ListingStoreFailure::Persist { path, source });
                }
                Ok(LayerRef {
                    descriptor: Descriptor::new(LISTING_MEDIA_TYPE, digest.clone(), len),
                    diff_id: digest,
                    origin: LayerOrigin::Local(path),
                })
            })
            .await
            .map_err(ListingStoreFailure::Task)??;
        cache
            .store(&key, Some(&written), &format!("listing of {about}"))
            .await
            .map_err(ListingStoreFailure::Cache)
    };
    stored
        .await
        .map_err(|source| ListingStoreError { about, source })
}

/// The cache key of the listing of `layers` together: a function of their
/// diff_ids, in order.
fn chain_key(layers: &[LayerRef]) -> CacheKey {
    let chain: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    CacheKey::base(
        &format!("{LISTING_VERSION}:chain:{}", chain.join(",")),
        &Platform::new("any", "any", None),
    )
}

/// The cache key of a layer's listing: a function of the layer alone.
fn listing_key(diff_id: &Digest) -> CacheKey {
    CacheKey::base(
        &format!("{LISTING_VERSION}:{diff_id}"),
        &Platform::new("any", "any", None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[(&str, Kind)], whiteouts: &[&str], opaque: &[&str]) -> LayerListing {
        LayerListing {
            entries: entries
                .iter()
                .map(|(p, k)| (p.to_string(), k.clone()))
                .collect(),
            whiteouts: whiteouts.iter().map(|s| s.to_string()).collect(),
            opaque: opaque.iter().map(|s| s.to_string()).collect(),
            texts: BTreeMap::new(),
        }
    }

    #[test]
    fn layers_stack_with_whiteouts_opaques_and_symlinks() {
        let mut index = ImageIndex::default();
        index.apply(&listing(
            &[
                ("/usr", Kind::Dir),
                ("/usr/lib", Kind::Dir),
                ("/usr/lib/a.so", Kind::File),
                ("/lib", Kind::Symlink("usr/lib".into())),
                ("/opt", Kind::Dir),
                ("/opt/x", Kind::File),
                ("/etc", Kind::Dir),
            ],
            &[],
            &[],
        ));
        assert_eq!(index.kind_of("/lib/a.so"), Some(FileKind::File));
        assert_eq!(index.kind_of("/lib"), Some(FileKind::Dir));
        index.apply(&listing(
            &[("/opt", Kind::Dir), ("/opt/y", Kind::File)],
            &["/usr/lib/a.so"],
            &["/opt"],
        ));
        assert_eq!(index.kind_of("/lib/a.so"), None);
        assert_eq!(
            index.kind_of("/opt/x"),
            None,
            "opaque hides the lower contents"
        );
        assert_eq!(index.kind_of("/opt/y"), Some(FileKind::File));
        index.apply(&listing(&[("/usr", Kind::File)], &[], &[]));
        assert_eq!(
            index.kind_of("/usr/lib"),
            None,
            "a file replacing a directory replaces its tree"
        );
        assert_eq!(index.kind_of("/"), Some(FileKind::Dir));
        assert_eq!(index.kind_of("/../../etc"), Some(FileKind::Dir));
    }

    #[test]
    fn texts_follow_their_files() {
        let mut index = ImageIndex::default();
        let mut l = listing(
            &[("/etc", Kind::Dir), ("/etc/passwd", Kind::File)],
            &[],
            &[],
        );
        l.texts
            .insert("/etc/passwd".into(), "root:x:0:0::/root:/bin/sh\n".into());
        index.apply(&l);
        assert!(index
            .read_text("/etc/passwd")
            .unwrap()
            .unwrap()
            .starts_with("root:"));
        index.apply(&listing(&[], &["/etc/passwd"], &[]));
        assert_eq!(index.read_text("/etc/passwd").unwrap(), None);
        // A FIFO or a device where the text should be is an error naming it.
        index.apply(&listing(
            &[("/dev", Kind::Dir), ("/dev/zero", Kind::Other)],
            &[],
            &[],
        ));
        index.apply(&listing(
            &[("/etc/passwd", Kind::Symlink("/dev/zero".into()))],
            &[],
            &[],
        ));
        let e = index.read_text("/etc/passwd").unwrap_err();
        assert!(
            matches!(&e.problem, ImageTextProblem::ListedNotRegular if e.path == "/etc/passwd"),
            "{e:?}"
        );
    }

    #[test]
    fn a_real_layer_lists_like_it_unpacks() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("etc")).unwrap();
        std::fs::write(tree.path().join("etc/group"), "root:x:0:\n").unwrap();
        std::os::unix::fs::symlink("etc", tree.path().join("config")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let blob = kiln_layer::dir::write_tree(
            tree.path(),
            out.path(),
            &kiln_layer::LayerOptions::new(Compression::Gzip).with_catalog(catalog_options()),
            &kiln_layer::dir::TreeOptions::default(),
        )
        .unwrap();
        let l = LayerListing::from_blob(&blob.path, kiln_oci::media::OCI_LAYER_GZIP, &blob.diff_id)
            .unwrap();
        // The listing recorded while the layer was written says the same.
        assert_eq!(
            LayerListing::from_catalog(blob.catalog.as_ref().unwrap()),
            l
        );
        let mut index = ImageIndex::default();
        index.apply(&l);
        assert_eq!(index.kind_of("/config/group"), Some(FileKind::File));
        assert_eq!(
            index.read_text("/config/group").unwrap().as_deref(),
            Some("root:x:0:\n")
        );
        let wrong = Digest::sha256_of(b"not it");
        assert!(
            LayerListing::from_blob(&blob.path, kiln_oci::media::OCI_LAYER_GZIP, &wrong).is_err()
        );
    }
}
