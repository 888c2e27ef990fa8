//! Layer tars. Placeholder root while modules land.
#![deny(missing_docs)]

mod compress;
pub mod dir;
pub mod error;
pub mod extract;
mod header;
pub mod list;
pub mod path;
pub mod pgzip;
pub mod reader;
mod resolve;
pub mod writer;

pub use error::{Error, Result};
pub use writer::{
    sort_entries, Entry, EntryKind, EntryMeta, LayerBlob, LayerOptions, LayerWriter, MtimePolicy,
};
