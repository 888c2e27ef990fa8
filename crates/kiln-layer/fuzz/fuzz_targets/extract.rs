//! Feeds arbitrary bytes (plain, gzip or zstd, sniffed) to the layer reader
//! and extractor, rooted in `sandbox/root` next to `sandbox/outside/sentinel`:
//! extraction returns a summary or an error, never panics, and never creates,
//! changes or removes anything outside the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fs;
use std::path::Path;

use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
use kiln_layer::list::list_entries;
use kiln_layer::reader::LayerReader;

const SENTINEL: &[u8] = b"outside the root\n";

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    // Listing reads headers only: it must not panic either.
    if let Ok(reader) = LayerReader::new(data, None, "sha256:fuzz") {
        let _ = list_entries(reader);
    }

    let sandbox = tempfile::tempdir().unwrap();
    let root = sandbox.path().join("root");
    let outside = sandbox.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("sentinel"), SENTINEL).unwrap();

    let mode = if data.first().is_some_and(|b| b & 1 == 1) {
        ApplyMode::OverlayLower
    } else {
        ApplyMode::Flatten
    };
    let mut options = ExtractOptions::new(mode);
    // No device nodes or chowns on the fuzzing host, and no huge files.
    options.allow_devices = false;
    options.preserve_owners = false;
    options.max_entry_size = 1 << 20;
    let Ok(reader) = LayerReader::new(data, None, "sha256:fuzz") else {
        return;
    };
    let _ = extract(reader, &root, &options);

    assert_eq!(names(sandbox.path()), ["outside", "root"], "wrote beside the root");
    assert_eq!(names(&outside), ["sentinel"], "wrote outside the root");
    let meta = fs::symlink_metadata(outside.join("sentinel")).unwrap();
    assert!(meta.is_file(), "sentinel replaced");
    assert_eq!(meta.len(), SENTINEL.len() as u64, "sentinel changed");
    assert_eq!(fs::read(outside.join("sentinel")).unwrap(), SENTINEL);
});
