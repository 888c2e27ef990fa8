//! Unpacking a context tar as it streams in, through kiln-layer's extractor:
//! compression is sniffed (gzip, zstd or none), every path is resolved
//! inside the destination and an entry that would land outside it fails the
//! whole context. Device nodes are never created from a context.

use crate::error::TarballError;
use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
use std::io::Read;
use std::path::Path;

/// Unpacks the tar read from `stream` into `dest` (which must exist).
/// `label` names the source in errors.
pub fn unpack(
    stream: impl Read + Send + 'static,
    dest: &Path,
    label: &str,
) -> Result<u64, TarballError> {
    let reader = kiln_layer::reader::open_stream(stream, None, label.to_string())
        .map_err(|e| TarballError::Open(Box::new(e)))?;
    let mut options = ExtractOptions::new(ApplyMode::Flatten);
    options.allow_devices = false;
    // The caller names the source; kiln-layer's own "layer <label>: " prefix
    // would only repeat it under a misleading name.
    let prefix = format!("layer {label}: ");
    let summary = extract(reader, dest, &options).map_err(|source| TarballError::Extract {
        message: describe(&source.to_string().replace(&prefix, "")),
        source: Box::new(source),
    })?;
    if summary.entries == 0 {
        return Err(TarballError::Empty);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn bytes_that_are_no_tar_keep_the_extractor_error_beneath() {
        let dest = tempfile::tempdir().unwrap();
        let junk: Vec<u8> = (0..2048u32).map(|i| (i % 7 + 1) as u8).collect();
        let e = unpack(std::io::Cursor::new(junk), dest.path(), "junk").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not a tar archive (plain, gzip or zstd): "),
            "{e}"
        );
        assert!(!e.to_string().contains("layer junk: "), "{e}");
        let beneath = e.source().expect("a source");
        assert!(
            beneath.downcast_ref::<kiln_layer::Error>().is_some(),
            "{beneath:?}"
        );
    }

    #[test]
    fn an_archive_without_entries_is_refused() {
        let dest = tempfile::tempdir().unwrap();
        let e = unpack(std::io::Cursor::new(vec![0u8; 1024]), dest.path(), "empty").unwrap_err();
        assert!(matches!(e, TarballError::Empty), "{e:?}");
        assert_eq!(e.to_string(), "not a tar archive (no entries)");
    }
}
