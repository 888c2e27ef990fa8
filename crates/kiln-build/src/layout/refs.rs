//! `index.json`'s entries by name: each image a layout holds is a
//! descriptor, named (when it has a name) by the annotation
//! `org.opencontainers.image.ref.name`. Adding one replaces only the entry
//! it supersedes; every other entry, and every field of the index this
//! crate does not model, is kept as it was read.

use kiln_oci::{Descriptor, Index};

/// The annotation naming an entry of `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The name of an entry, when it has one.
pub fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations.get(REF_NAME).map(String::as_str)
}

/// The entry named `name`; the last one when several are (the newest).
pub fn find<'a>(index: &'a Index, name: &str) -> Option<&'a Descriptor> {
    index
        .manifests
        .iter()
        .rev()
        .find(|d| ref_name(d) == Some(name))
}

/// Adds `desc` to the end of the list. Named `name`, it replaces the
/// entries of that name; unnamed, it replaces the entries of its digest, so
/// writing one image twice lists it once.
pub fn put(index: &mut Index, mut desc: Descriptor, name: Option<&str>) {
    match name {
        Some(name) => {
            desc.annotations
                .insert(REF_NAME.to_string(), name.to_string());
            index.manifests.retain(|d| ref_name(d) != Some(name));
        }
        None => index.manifests.retain(|d| d.digest != desc.digest),
    }
    index.manifests.push(desc);
}
