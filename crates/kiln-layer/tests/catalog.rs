//! The catalog a writer or an extraction records is what reading the
//! finished blob back says, and the files it keeps still reach the layer
//! and the tree whole.

use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
use kiln_layer::list::list_entries;
use kiln_layer::reader::open_blob;
use kiln_layer::{CatalogOptions, Entry, EntryKind, EntryMeta, LayerOptions, LayerWriter};
use std::path::PathBuf;

const PASSWD: &[u8] = b"root:x:0:0::/root:/bin/sh\nsvc:x:4321:4321::/home/svc:/bin/sh\n";

fn entries() -> Vec<(Entry, &'static [u8])> {
    let meta = || EntryMeta::with_mode(0o644);
    vec![
        (Entry::new("/etc", EntryKind::Dir, meta()), b""),
        (
            Entry::new(
                "etc/passwd",
                EntryKind::File {
                    size: PASSWD.len() as u64,
                },
                meta(),
            ),
            PASSWD,
        ),
        (
            Entry::new("./etc/hosts", EntryKind::File { size: 4 }, meta()),
            b"host",
        ),
        (
            Entry::new(
                "bin",
                EntryKind::Symlink {
                    target: "usr/bin".into(),
                },
                meta(),
            ),
            b"",
        ),
        (Entry::new("opt", EntryKind::Opaque, meta()), b""),
        (Entry::new("var/gone", EntryKind::Whiteout, meta()), b""),
    ]
}

#[test]
fn writing_and_extracting_record_what_the_blob_holds() {
    let blobs = tempfile::tempdir().unwrap();
    let keep = CatalogOptions::keeping(&["/etc/passwd", "/etc/group"], 4096);
    let options = LayerOptions::default().with_catalog(keep.clone());
    let mut w = LayerWriter::new(blobs.path(), &options).unwrap();
    for (entry, mut content) in entries() {
        w.append(&entry, Some(&mut content)).unwrap();
    }
    let blob = w.finish().unwrap();
    let written = blob.catalog.clone().expect("asked for a catalog");

    // The catalog names each entry as the blob does, in the same order.
    let reader = open_blob(&blob.path, None)
        .unwrap()
        .expect_diff_id(blob.diff_id.clone());
    let read: Vec<(PathBuf, EntryKind)> = list_entries(reader)
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.kind))
        .collect();
    assert_eq!(written.entries, read);
    assert_eq!(written.texts.len(), 1);
    assert_eq!(written.texts[&PathBuf::from("etc/passwd")], PASSWD);

    // Unpacking records the same catalog, and the kept file lands whole.
    let root = tempfile::tempdir().unwrap();
    let reader = open_blob(&blob.path, None)
        .unwrap()
        .expect_diff_id(blob.diff_id.clone());
    let summary = extract(
        reader,
        root.path(),
        &ExtractOptions::new(ApplyMode::Flatten).with_catalog(keep),
    )
    .unwrap();
    assert_eq!(summary.catalog.as_ref(), Some(&*written));
    assert_eq!(
        std::fs::read(root.path().join("etc/passwd")).unwrap(),
        PASSWD
    );
    assert_eq!(
        std::fs::read(root.path().join("etc/hosts")).unwrap(),
        b"host"
    );

    // Without the option nothing is recorded.
    let mut w = LayerWriter::new(blobs.path(), &LayerOptions::default()).unwrap();
    w.append(&entries()[0].0, None).unwrap();
    assert!(w.finish().unwrap().catalog.is_none());
}
