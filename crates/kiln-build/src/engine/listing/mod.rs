//! What an image's files are, without its files.
//!
//! A COPY that misses the cache must know what the image below already has
//! (is the destination a directory? which parent directories exist? who is
//! `app` in `/etc/passwd`?). Unpacking the whole image to answer would make
//! every build download its base, even when every step before is cached.
//! Instead each layer gets a *listing* ([`layer`]): every path with its
//! kind, plus the text of the few files the engine reads. It is kept in
//! the layer cache next to the step entries ([`stored`]), so a warm runner
//! fetches a few kilobytes instead of the image.
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
//! A big layer's listing is stored in pieces, and an image's paths are
//! looked up through its layers' listings ([`index`]) rather than merged
//! into one list: a COPY into a big image loads the pieces its paths fall
//! in, so its time and memory do not grow with the image.

mod index;
mod layer;
mod stored;

pub use index::ImageIndex;
pub(crate) use layer::{catalog_options, TEXT_FILES};
pub use layer::{Kind, LayerListing};

use super::blobs::BlobStore;
use super::image::{ImageState, LayerOrigin, LayerRef};
use crate::cache::{CacheError, CacheKey, CachePusher, LayerCache};
use index::{LayerView, Missing};
use kiln_layer::Catalog;
use kiln_oci::{Descriptor, Digest, Platform};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The listing format; part of the listing's cache key.
const LISTING_VERSION: &str = "kiln-listing-v2";
/// Media type of a listing's contents blob stored in the cache.
const CONTENTS_MEDIA_TYPE: &str = "application/vnd.kiln.layer-listing.v2+json";
/// Media type of a piece of a listing's entries stored in the cache.
const PIECE_MEDIA_TYPE: &str = "application/vnd.kiln.layer-listing-piece.v2+json";

/// Where listings come from: memory, the layer cache, or the layer itself
/// (downloaded once, then stored in the cache for the next runner).
pub struct Listings {
    blobs: BlobStore,
    cache: Option<LayerCache>,
    push: bool,
    dir: PathBuf,
    /// Entries per stored piece.
    per_piece: usize,
    /// Each layer's listing, by diff_id, shared by every image that has it.
    views: Mutex<HashMap<Digest, Arc<LayerView>>>,
}

impl Listings {
    /// Listings kept under `dir`, looked up in and stored to `cache`.
    pub fn new(blobs: BlobStore, cache: Option<LayerCache>, push: bool, dir: PathBuf) -> Listings {
        Listings {
            blobs,
            cache,
            push,
            dir,
            per_piece: stored::PIECE_ENTRIES,
            views: Mutex::default(),
        }
    }

    /// The index of `image`'s files. Listings this computes are stored in
    /// the cache in the background, through `pusher`. A stored listing's
    /// pieces are loaded as [`Listings::decide`] needs them.
    pub async fn index(
        &self,
        image: &ImageState,
        pusher: &CachePusher,
    ) -> Result<Arc<ImageIndex>, ListingError> {
        let views =
            futures::future::try_join_all(image.layers.iter().map(|l| self.view(l, pusher)))
                .await?;
        Ok(Arc::new(ImageIndex::new(
            image.layers.iter().cloned().zip(views).collect(),
        )))
    }

    /// Runs `decide` over `index` until it has asked about nothing the
    /// index had not loaded, loading what it missed in between; `wanted`
    /// are paths it will ask about, loaded before the first run.
    pub(crate) async fn decide<T>(
        &self,
        index: &ImageIndex,
        wanted: &[String],
        decide: impl FnMut() -> T,
    ) -> Result<T, ListingError> {
        self.until_loaded(index, || {
            for path in wanted {
                index.kind_of(path);
            }
        })
        .await?;
        self.until_loaded(index, decide).await
    }

    /// Runs `ask` (which asks `index` about paths) again after each load
    /// of the pieces it missed, until it missed none; its last answer.
    async fn until_loaded<T>(
        &self,
        index: &ImageIndex,
        mut ask: impl FnMut() -> T,
    ) -> Result<T, ListingError> {
        loop {
            let answer = ask();
            let missing = index.take_missing();
            if missing.is_empty() {
                return Ok(answer);
            }
            self.load(index, missing).await?;
        }
    }

    /// Loads the missing pieces, at once. A layer whose piece cannot be
    /// had from the cache is listed from its blob instead.
    async fn load(&self, index: &ImageIndex, missing: Vec<Missing>) -> Result<(), ListingError> {
        tracing::debug!("loading {} listing pieces", missing.len());
        let mut by_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for m in missing {
            by_layer.entry(m.layer).or_default().push(m.piece);
        }
        futures::future::try_join_all(by_layer.into_iter().map(|(layer, pieces)| async move {
            let (layer, view) = index.layer(layer);
            let loaded = futures::future::join_all(pieces.iter().map(|&i| async move {
                let entries = self.cached_piece(view.piece(i).digest.as_ref()?).await?;
                view.fill(i, entries);
                Some(())
            }))
            .await;
            if loaded.iter().all(Option::is_some) {
                return Ok(());
            }
            tracing::warn!(
                "a piece of the cached listing of layer {} is missing; listing the layer instead",
                layer.diff_id
            );
            view.fill_from(self.list_blob(layer).await?);
            Ok(())
        }))
        .await?;
        Ok(())
    }

    /// The listing of `layer`: remembered, from the cache, or listed from
    /// its blob (and then stored).
    async fn view(
        &self,
        layer: &LayerRef,
        pusher: &CachePusher,
    ) -> Result<Arc<LayerView>, ListingError> {
        if let Some(v) = self.views.lock().expect("listing memo").get(&layer.diff_id) {
            return Ok(v.clone());
        }
        let key = listing_key(&layer.diff_id);
        let from_cache = match (&self.cache, &layer.origin) {
            // A layer this build wrote is at hand: listing it is cheaper than asking.
            (Some(cache), LayerOrigin::Remote(_)) => self.cached_contents(cache, &key).await,
            _ => None,
        };
        let view = match from_cache {
            Some(v) => Arc::new(v),
            None => {
                let view = Arc::new(LayerView::whole(self.list_blob(layer).await?));
                // Stored for every layer, also the ones this build wrote: the
                // next runner gets them from the cache as step results.
                let about = format!("layer {}", layer.diff_id);
                self.store(pusher, key, about, view.clone());
                view
            }
        };
        self.views
            .lock()
            .expect("listing memo")
            .insert(layer.diff_id.clone(), view.clone());
        Ok(view)
    }

    /// Stores a whole listing in the cache in the background, when this
    /// build pushes to one; `about` names it in the warning if that fails.
    fn store(&self, pusher: &CachePusher, key: CacheKey, about: String, view: Arc<LayerView>) {
        if let (Some(cache), true) = (&self.cache, self.push) {
            pusher.spawn_task(store_listing(
                cache.clone(),
                self.dir.clone(),
                self.per_piece,
                key,
                about,
                view,
            ));
        }
    }

    /// Lists `layer` from its blob, downloaded first when it is remote.
    async fn list_blob(&self, layer: &LayerRef) -> Result<LayerListing, ListingError> {
        tracing::debug!("listing layer {} from its blob", layer.diff_id);
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

    /// A listing's contents from the cache; `None` (with a warning when it
    /// is there but unreadable) to list the layer instead.
    async fn cached_contents(&self, cache: &LayerCache, key: &CacheKey) -> Option<LayerView> {
        let contents = self
            .cached_json(cache, key, None, stored::read_contents)
            .await?;
        Some(LayerView::stored(contents))
    }

    /// A piece of a listing from the cache, checked against its digest.
    async fn cached_piece(&self, digest: &Digest) -> Option<BTreeMap<String, Kind>> {
        let cache = self.cache.as_ref()?;
        self.cached_json(cache, &piece_key(digest), Some(digest), stored::read_piece)
            .await
    }

    async fn cached_json<T: Send + 'static>(
        &self,
        cache: &LayerCache,
        key: &CacheKey,
        digest: Option<&Digest>,
        read: fn(&stored::Found) -> Result<T, serde_json::Error>,
    ) -> Option<T> {
        let hit = cache.lookup_to_download(key).await.ok()??;
        let layer = hit.layer?;
        if digest.is_some_and(|d| *d != layer.descriptor.digest) {
            tracing::warn!("cached listing piece {key} is not the piece asked for; ignoring it");
            return None;
        }
        // A small listing came with its entry (checked against the entry's
        // digest); a bigger one, or one whose embedded copy does not match,
        // is downloaded.
        let found = match layer.descriptor.embedded_data() {
            Some(bytes) => stored::Found::Embedded(bytes),
            None => stored::Found::File(self.blobs.metadata_path(&layer).await.ok()?),
        };
        let parsed = tokio::task::spawn_blocking(move || read(&found))
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
        let view = Arc::new(LayerView::whole(LayerListing::from_catalog(catalog)));
        self.views
            .lock()
            .expect("listing memo")
            .insert(layer.diff_id.clone(), view.clone());
        let Some(cache) = self.cache.clone().filter(|_| self.push) else {
            return;
        };
        let key = listing_key(&layer.diff_id);
        let about = format!("layer {}", layer.diff_id);
        let (dir, per_piece) = (self.dir.clone(), self.per_piece);
        match store {
            StoreListing::No => {}
            StoreListing::New => {
                pusher.spawn_task(store_listing(cache, dir, per_piece, key, about, view));
            }
            StoreListing::UnlessCached => pusher.spawn_task(async move {
                // One manifest request saves uploading what is there.
                if let Ok(Some(_)) = cache.lookup(&key).await {
                    return Ok(());
                }
                store_listing(cache, dir, per_piece, key, about, view).await
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
    /// The listing's files could not be written.
    #[error("{0}")]
    Write(#[source] std::io::Error),
    /// The thread writing it panicked.
    #[error("{0}")]
    Task(#[source] tokio::task::JoinError),
    /// The cache refused the entry.
    #[error("{0}")]
    Cache(#[source] CacheError),
}

/// Stores the whole listing `view` (of `about`) in `cache` under `key`:
/// its pieces first, each as an entry whose layer is the piece's JSON, then
/// the contents naming them, so that a runner finding the contents finds
/// its pieces. Files are written to `dir` first.
async fn store_listing(
    cache: LayerCache,
    dir: PathBuf,
    per_piece: usize,
    key: CacheKey,
    about: String,
    view: Arc<LayerView>,
) -> Result<(), ListingStoreError> {
    let stored = async {
        // A big layer's listing is megabytes of JSON: written off the async threads.
        let written = tokio::task::spawn_blocking(move || {
            let parts = view.to_write().ok_or_else(|| {
                ListingStoreFailure::Write(std::io::Error::other("the listing is not whole"))
            })?;
            stored::write(parts, &dir, per_piece).map_err(ListingStoreFailure::Write)
        })
        .await
        .map_err(ListingStoreFailure::Task)??;
        let count = written.pieces.len();
        futures::future::try_join_all(written.pieces.into_iter().enumerate().map(|(i, piece)| {
            let cache = &cache;
            let by = format!("listing of {about}, piece {} of {count}", i + 1);
            async move {
                cache
                    .store(
                        &piece_key(&piece.digest),
                        Some(&blob_ref(PIECE_MEDIA_TYPE, piece)),
                        &by,
                    )
                    .await
            }
        }))
        .await
        .map_err(ListingStoreFailure::Cache)?;
        cache
            .store(
                &key,
                Some(&blob_ref(CONTENTS_MEDIA_TYPE, written.contents)),
                &format!("listing of {about}"),
            )
            .await
            .map_err(ListingStoreFailure::Cache)
    };
    stored
        .await
        .map_err(|source| ListingStoreError { about, source })
}

/// A written listing file as a layer to store (its own diff_id: it is not
/// compressed), carrying its bytes when it is small enough for its entry's
/// manifest to hold them.
fn blob_ref(media_type: &str, file: stored::WrittenFile) -> LayerRef {
    let descriptor = Descriptor::new(media_type, file.digest.clone(), file.size);
    LayerRef {
        descriptor: match &file.small {
            Some(bytes) => descriptor.with_data(bytes),
            None => descriptor,
        },
        diff_id: file.digest,
        origin: LayerOrigin::Local(file.path),
    }
}

/// The cache key of a layer's listing: a function of the layer alone.
fn listing_key(diff_id: &Digest) -> CacheKey {
    CacheKey::base(
        &format!("{LISTING_VERSION}:{diff_id}"),
        &Platform::new("any", "any", None),
    )
}

/// The cache key of a piece of a listing: a function of its content.
fn piece_key(digest: &Digest) -> CacheKey {
    CacheKey::base(
        &format!("{LISTING_VERSION}:piece:{digest}"),
        &Platform::new("any", "any", None),
    )
}
