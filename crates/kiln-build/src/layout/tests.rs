use std::io::Write;

use kiln_oci::{media, Descriptor, Digest, Index};

use super::{refs, Layout, LayoutError, MARKER, MARKER_FILE, REF_NAME};

fn manifest(name: &str) -> Descriptor {
    let digest = Digest::sha256_of(name.as_bytes());
    Descriptor::new(media::OCI_MANIFEST, digest, name.len() as u64)
}

/// Names in the temp directory's blob folder that are not finished blobs.
fn debris(layout: &Layout) -> Vec<String> {
    layout
        .blob_files()
        .unwrap()
        .into_iter()
        .filter(|f| f.digest().is_none())
        .map(|f| f.name)
        .collect()
}

#[test]
fn create_writes_the_marker_and_keeps_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("oci-layout")).unwrap(),
        MARKER
    );
    let digest = layout.write_blob(b"kept").unwrap();
    let again = Layout::create(dir.path()).unwrap();
    assert_eq!(again.read_blob(&digest).unwrap(), b"kept");
    assert_eq!(
        again.blob_path(&digest),
        dir.path().join("blobs/sha256").join(digest.hex())
    );
}

#[test]
fn index_json_keeps_unknown_fields_and_other_refs() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let other = manifest("other");
    let written = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "x-tool": {"kept": true},
        "annotations": {"org.example.note": "kept"},
        "manifests": [
            {
                "mediaType": media::OCI_MANIFEST,
                "digest": other.digest.to_string(),
                "size": other.size,
                "annotations": {REF_NAME: "other", "org.example.entry": "kept"},
                "x-entry": 7
            },
            {
                "mediaType": media::OCI_MANIFEST,
                "digest": manifest("old").digest.to_string(),
                "size": 3,
                "annotations": {REF_NAME: "mine"}
            }
        ]
    });
    std::fs::write(layout.index_path(), serde_json::to_vec(&written).unwrap()).unwrap();

    let new = manifest("new");
    layout
        .update_index(|index| {
            refs::put(index, new.clone(), Some("mine"));
            Ok::<_, LayoutError>(())
        })
        .unwrap();

    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.index_path()).unwrap()).unwrap();
    assert_eq!(raw["x-tool"], serde_json::json!({"kept": true}));
    assert_eq!(raw["annotations"]["org.example.note"], "kept");
    let entries = raw["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{raw}");
    assert_eq!(entries[0]["annotations"][REF_NAME], "other");
    assert_eq!(entries[0]["annotations"]["org.example.entry"], "kept");
    assert_eq!(entries[0]["x-entry"], 7);
    assert_eq!(entries[1]["annotations"][REF_NAME], "mine");
    assert_eq!(entries[1]["digest"], new.digest.to_string());

    let index = layout.read_index().unwrap().unwrap();
    assert_eq!(refs::find(&index, "mine").unwrap().digest, new.digest);
    assert_eq!(refs::find(&index, "other").unwrap().digest, other.digest);
    assert!(refs::find(&index, "absent").is_none());
}

#[test]
fn an_unnamed_entry_replaces_only_its_own_digest() {
    let mut index = Index::new(true, vec![manifest("a"), manifest("b")]);
    refs::put(&mut index, manifest("a"), None);
    let digests: Vec<_> = index.manifests.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(digests, [manifest("b").digest, manifest("a").digest]);
    assert!(index.manifests.iter().all(|d| refs::ref_name(d).is_none()));
}

#[test]
fn a_missing_index_is_none_and_a_broken_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    assert!(layout.read_index().unwrap().is_none());
    std::fs::write(layout.index_path(), b"{not json").unwrap();
    assert!(matches!(
        layout.read_index(),
        Err(LayoutError::Document { .. })
    ));
    // An output adds to what it can read and replaces what it cannot.
    assert!(layout.index_or_empty().manifests.is_empty());
}

#[test]
fn bytes_that_do_not_match_their_digest_are_refused_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let claimed = Digest::sha256_of(b"what was promised");

    let err = layout.put_blob(&claimed, b"something else").unwrap_err();
    assert!(
        matches!(&err, LayoutError::Digest { expected, actual, .. }
            if *expected == claimed && *actual == Digest::sha256_of(b"something else")),
        "{err}"
    );

    let mut writer = layout.blob_writer(&claimed).unwrap();
    writer.write_all(b"something else").unwrap();
    assert!(matches!(writer.finish(), Err(LayoutError::Digest { .. })));

    let src = dir.path().join("source");
    std::fs::write(&src, b"something else").unwrap();
    match layout.copy_blob(&claimed, &src) {
        Err(LayoutError::Digest { path, .. }) => assert_eq!(path, src),
        other => panic!("expected a digest error, got {other:?}"),
    }

    assert!(!layout.has_blob(&claimed));
    assert!(
        layout.blob_files().unwrap().is_empty(),
        "{:?}",
        debris(&layout)
    );
}

#[test]
fn a_blob_that_matches_is_put_and_read_back_verified() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let digest = Digest::sha256_of(b"layer");
    let mut writer = layout.blob_writer(&digest).unwrap();
    writer.write_all(b"lay").unwrap();
    writer.write_all(b"er").unwrap();
    writer.finish().unwrap();
    assert_eq!(layout.read_blob(&digest).unwrap(), b"layer");

    // A blob damaged on disk is not handed out as what it is named.
    std::fs::write(layout.blob_path(&digest), b"rot").unwrap();
    assert!(matches!(
        layout.read_blob(&digest),
        Err(LayoutError::Digest { .. })
    ));
    assert!(debris(&layout).is_empty());
}

#[test]
fn a_linked_blob_is_the_source_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path().join("layout")).unwrap();
    let src = dir.path().join("layer");
    std::fs::write(&src, b"layer").unwrap();
    let digest = Digest::sha256_of(b"layer");
    layout.link_blob(&digest, &src).unwrap();
    layout.link_blob(&digest, &src).unwrap();
    assert_eq!(layout.read_blob(&digest).unwrap(), b"layer");
}

#[test]
fn a_layout_tar_holds_each_blob_once_under_the_directory_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/image.tar");
    let digest = Digest::sha256_of(b"config");
    super::tar::write_tar_file(&path, |tar| {
        tar.append_blob(&digest, b"config")?;
        tar.append_blob(&digest, b"config")?;
        tar.append_index(&Index::new(true, vec![manifest("a")]))?;
        tar.append_marker()
    })
    .unwrap();
    // Nothing beside the archive: its temp file was renamed into place.
    let beside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["image.tar"]);
    let mut archive = ::tar::Archive::new(std::fs::File::open(&path).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            format!("blobs/sha256/{}", digest.hex()),
            "index.json".to_string(),
            "oci-layout".to_string()
        ]
    );
}

#[test]
fn written_files_are_readable_by_others_as_file_create_makes_them() {
    use std::os::unix::fs::PermissionsExt;
    // The umask most runners have; tempfile's default would give 0600.
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path().join("layout")).unwrap();
    let digest = layout.write_blob(b"config").unwrap();
    layout
        .write_index(&Index::new(true, vec![manifest("a")]))
        .unwrap();
    let tar = dir.path().join("image.tar");
    super::tar::write_tar_file(&tar, |t| t.append_marker()).unwrap();
    for path in [
        layout.blob_path(&digest),
        layout.index_path(),
        layout.dir().join(MARKER_FILE),
        tar,
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", path.display());
    }
}
