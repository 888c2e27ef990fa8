//! Layer tars: deterministic writing, streaming compression and digests,
//! safe extraction, whiteouts.
//!
//! - [`LayerWriter`] appends [`Entry`]s and streams tar → sha256 (diff_id) →
//!   gzip/zstd/none → sha256 + size (blob digest) → a file renamed into place
//!   only when complete. [`dir::write_tree`] archives a directory (or an
//!   overlayfs upper dir, translating whiteouts and opaque dirs).
//!   A [`watch::WatchHandle`] in the options lets another thread read the
//!   blob file while it grows (an upload that runs alongside compression).
//! - [`reader::LayerReader`] opens a blob (compression from the media type or
//!   sniffed) and checks the diff_id; [`list::list_entries`] reads headers only;
//!   [`extract::extract`] applies a layer to a root it can never escape, either
//!   flattened onto lower layers or as an overlay lower dir.
//!
//! ```
//! use kiln_layer::{Entry, EntryKind, EntryMeta, LayerOptions, LayerWriter, MtimePolicy};
//! use kiln_layer::{list::list_entries, reader::open_blob};
//! use kiln_image_spec::media::Compression;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let options = LayerOptions::new(Compression::Gzip).with_mtime(MtimePolicy::Fixed(0));
//! let mut writer = LayerWriter::new(dir.path(), &options).unwrap();
//! writer.append(&Entry::new("etc", EntryKind::Dir, EntryMeta::with_mode(0o755)), None).unwrap();
//! let mut content: &[u8] = b"kiln\n";
//! let file = Entry::new("etc/hostname", EntryKind::File { size: 5 }, EntryMeta::with_mode(0o644));
//! writer.append(&file, Some(&mut content)).unwrap();
//! let blob = writer.finish().unwrap();
//! assert_eq!(blob.media_type(true), "application/vnd.oci.image.layer.v1.tar+gzip");
//!
//! let reader = open_blob(&blob.path, None).unwrap().expect_diff_id(blob.diff_id.clone());
//! let entries = list_entries(reader).unwrap();
//! assert_eq!(entries[1], file);
//! ```
#![deny(missing_docs)]

pub mod catalog;
mod compress;
pub mod deep;
pub mod dir;
pub mod error;
pub mod extract;
mod fast_deflate;
mod header;
mod inflate;
pub mod list;
pub mod path;
pub mod pgzip;
mod read_ahead;
pub mod reader;
pub mod resolve;
pub mod tap;
mod threaded;
pub mod watch;
pub mod writer;

pub use catalog::{Catalog, CatalogOptions};
pub use compress::{DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
pub use error::{Error, Result};
pub use writer::{
    sort_entries, Deflate, Entry, EntryKind, EntryMeta, LayerBlob, LayerOptions, LayerWriter,
    MtimePolicy,
};
