//! `--tar-path`: the image as one tar that `docker load` reads
//! (`manifest.json` with `RepoTags`) and that is also an OCI image layout
//! archive (`oci-layout`, `index.json`, `blobs/sha256/…`), as newer
//! `docker save` writes. Layers are stored as they are pushed (compressed);
//! `docker load` decompresses them.

use super::attest::{plain, Attached};
use super::oci_layout::REF_NAME;
use super::{io_err, layer_file, OutputError};
use crate::model::assemble::BuiltImage;
use crate::model::blobs::BlobStore;
use kiln_oci::{media, Descriptor, Index};
use serde_json::json;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes `image` to `path`, tagged with `repo_tags` (familiar `name:tag` forms).
pub async fn write(
    path: &Path,
    image: &BuiltImage,
    attached: Option<&Attached>,
    repo_tags: &[String],
    blobs: &BlobStore,
) -> Result<(), OutputError> {
    let mut layer_files = Vec::new();
    for layer in &image.layers {
        layer_files.push((
            layer.descriptor.digest.hex().to_string(),
            layer_file(blobs, layer).await?,
        ));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = path.with_extension("partial");
    let result = (|| -> io::Result<()> {
        let file = File::create(&tmp)?;
        let mut tar = tar::Builder::new(BufWriter::new(file));
        tar.mode(tar::HeaderMode::Deterministic);
        let mut added = std::collections::BTreeSet::new();
        for (hex, file) in &layer_files {
            if added.insert(hex.clone()) {
                tar.append_path_with_name(file, format!("blobs/sha256/{hex}"))?;
            }
        }
        append_bytes(
            &mut tar,
            &format!("blobs/sha256/{}", image.config.digest.hex()),
            &image.config_bytes,
        )?;
        append_bytes(
            &mut tar,
            &format!("blobs/sha256/{}", image.digest.hex()),
            &image.manifest_bytes,
        )?;

        if let Some(attached) = attached {
            for (desc, bytes) in attached
                .blobs()
                .chain([&attached.manifest, &attached.index])
            {
                if added.insert(desc.digest.hex().to_string()) {
                    append_bytes(
                        &mut tar,
                        &format!("blobs/sha256/{}", desc.digest.hex()),
                        bytes,
                    )?;
                }
            }
        }
        let docker_manifest = json!([{
            "Config": format!("blobs/sha256/{}", image.config.digest.hex()),
            "RepoTags": repo_tags,
            "Layers": layer_files.iter().map(|(hex, _)| format!("blobs/sha256/{hex}")).collect::<Vec<_>>(),
        }]);
        append_bytes(
            &mut tar,
            "manifest.json",
            &serde_json::to_vec(&docker_manifest)?,
        )?;

        // With statements attached, index.json names the image index that
        // holds the image and its attestations, as the registry's tag does.
        let mut desc = match attached {
            Some(a) => plain(&a.index.0),
            None => Descriptor::new(
                image.manifest_media_type.clone(),
                image.digest.clone(),
                image.manifest_bytes.len() as u64,
            ),
        };
        if let Some(tag) = repo_tags.first() {
            desc.annotations.insert(REF_NAME.to_string(), tag.clone());
            desc.annotations
                .insert("io.containerd.image.name".to_string(), tag.clone());
        }
        let mut index = Index::new(true, vec![desc]);
        index.media_type = Some(media::OCI_INDEX.to_string());
        append_bytes(&mut tar, "index.json", &index.to_vec())?;
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut out = tar.into_inner()?;
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok(())
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map_err(io_err(path)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(OutputError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    }
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, bytes)
}
