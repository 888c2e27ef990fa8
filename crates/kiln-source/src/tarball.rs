//! Unpacking a context tar as it streams in, through kiln-layer's extractor:
//! compression is sniffed (gzip, zstd or none), every path is resolved
//! inside the destination and an entry that would land outside it fails the
//! whole context. Device nodes are never created from a context.

use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
use std::io::Read;
use std::path::Path;

/// Unpacks the tar read from `stream` into `dest` (which must exist).
/// `label` names the source in errors.
pub fn unpack(stream: impl Read + Send + 'static, dest: &Path, label: &str) -> Result<u64, String> {
    let reader = kiln_layer::reader::open_stream(stream, None, label.to_string())
        .map_err(|e| e.to_string())?;
    let mut options = ExtractOptions::new(ApplyMode::Flatten);
    options.allow_devices = false;
    // The caller names the source; kiln-layer's own "layer <label>: " prefix
    // would only repeat it under a misleading name.
    let prefix = format!("layer {label}: ");
    let summary = extract(reader, dest, &options)
        .map_err(|e| describe(&e.to_string().replace(&prefix, "")))?;
    if summary.entries == 0 {
        return Err("not a tar archive (no entries)".to_string());
    }
    Ok(summary.entries)
}

/// The tar reader's messages for bytes that are no tar at all are terse; say
/// what they mean.
fn describe(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("checksum")
        || lower.contains("numeric field")
        || lower.contains("invalid gzip")
        || lower.contains("unexpected eof")
        || lower.contains("failed to read entire block")
    {
        format!("not a tar archive (plain, gzip or zstd): {message}")
    } else {
        message.to_string()
    }
}
