//! An ADD archive's entries settled into what unpacking them in order
//! leaves, so that the layer ADD writes is one every extractor (kiln's own
//! at the next RUN included) applies the same way.
//!
//! Unpacking a tar is sequential: a later entry replaces an earlier one at
//! the same path, and a non-directory replaces a whole tree; a hard link
//! names an entry unpacked before it and keeps the file alive when that
//! path is replaced. A layer, though, is written in path order, where a
//! hard link can come before its target and a file's old tree would
//! still be listed below it. So, as Docker's unpacking of an ADD archive
//! would leave them:
//! - a later entry wins and a non-directory drops what was below it;
//! - a hard link is written to whichever of its group's paths comes first
//!   in the layer; one to a directory is an error naming both (one to a
//!   path the archive does not have must name a file of the image, which
//!   the planner checks);
//! - an entry below one the archive made a file is an error (Docker fails
//!   there with "not a directory").

use super::{ArchiveError, ArchiveItem, ArchiveItemKind};
use std::collections::BTreeMap;

/// The entries of an archive, in archive order, as unpacking leaves them.
///
/// # Errors
/// [`ArchiveError::Inconsistent`] naming the entry, for a hard link to a
/// directory and for an entry below a file.
pub(crate) fn settle(items: Vec<ArchiveItem>) -> Result<Vec<ArchiveItem>, ArchiveError> {
    let mut tree: BTreeMap<String, ArchiveItem> = BTreeMap::new();
    for item in items {
        check_parents(&tree, &item)?;
        let item = resolve_link(&tree, item)?;
        let replaces_tree = !matches!(item.kind, ArchiveItemKind::Dir);
        let mut gone: Vec<String> = Vec::new();
        match tree.get(&item.path) {
            // A directory over a directory keeps what is in it.
            Some(old) if matches!(old.kind, ArchiveItemKind::Dir) && !replaces_tree => {}
            Some(_) => gone.push(item.path.clone()),
            None => {}
        }
        if replaces_tree {
            let below = format!("{}/", item.path);
            gone.extend(
                tree.range(below.clone()..)
                    .take_while(|(k, _)| k.starts_with(&below))
                    .map(|(k, _)| k.clone()),
            );
        }
        for path in gone {
            if let Some(old) = tree.remove(&path) {
                keep_links_alive(&mut tree, old);
            }
        }
        tree.insert(item.path.clone(), item);
    }
    first_in_layer_order(&mut tree);
    Ok(tree.into_values().collect())
}

fn inconsistent(entry: &str, reason: String) -> ArchiveError {
    ArchiveError::Inconsistent {
        entry: entry.to_string(),
        reason,
    }
}

/// An error when a parent of `item` is something the archive made that
/// is not a directory (a symlink is followed by extraction, as by Docker).
fn check_parents(
    tree: &BTreeMap<String, ArchiveItem>,
    item: &ArchiveItem,
) -> Result<(), ArchiveError> {
    let mut end = 0;
    while let Some(i) = item.path[end..].find('/') {
        let parent = &item.path[..end + i];
        if let Some(p) = tree.get(parent) {
            if matches!(
                p.kind,
                ArchiveItemKind::File(_) | ArchiveItemKind::HardLink(_)
            ) {
                return Err(inconsistent(
                    &item.path,
                    format!("it is below {parent:?}, which the archive makes a file"),
                ));
            }
        }
        end += i + 1;
    }
    Ok(())
}

/// A hard link pointed at the file (or symlink) that holds its content.
fn resolve_link(
    tree: &BTreeMap<String, ArchiveItem>,
    mut item: ArchiveItem,
) -> Result<ArchiveItem, ArchiveError> {
    let ArchiveItemKind::HardLink(target) = &item.kind else {
        return Ok(item);
    };
    let holder = match tree.get(target).map(|t| &t.kind) {
        Some(ArchiveItemKind::HardLink(h)) => h.clone(),
        Some(ArchiveItemKind::File(_) | ArchiveItemKind::Symlink(_)) => target.clone(),
        Some(ArchiveItemKind::Dir) => {
            return Err(inconsistent(
                &item.path,
                format!("it is a hard link to {target:?}, a directory"),
            ))
        }
        // Not in the archive: a file the destination already has, which
        // the caller checks against the image.
        None => return Ok(item),
    };
    if holder == item.path {
        // A link to itself (or to its own group's holder at this path) is
        // the file it already is.
        return Ok(tree.get(&holder).cloned().unwrap_or(item));
    }
    item.kind = ArchiveItemKind::HardLink(holder);
    Ok(item)
}

/// `old` leaves the tree: the hard links to it keep its content, the first
/// of them becoming the file and the others linking to that one.
fn keep_links_alive(tree: &mut BTreeMap<String, ArchiveItem>, old: ArchiveItem) {
    if !matches!(
        old.kind,
        ArchiveItemKind::File(_) | ArchiveItemKind::Symlink(_)
    ) {
        return;
    }
    let links: Vec<String> = tree
        .iter()
        .filter(|(_, i)| matches!(&i.kind, ArchiveItemKind::HardLink(t) if *t == old.path))
        .map(|(k, _)| k.clone())
        .collect();
    let Some((heir, others)) = links.split_first() else {
        return;
    };
    if let Some(i) = tree.get_mut(heir) {
        take_inode(i, &old);
    }
    for o in others {
        if let Some(i) = tree.get_mut(o) {
            i.kind = ArchiveItemKind::HardLink(heir.clone());
        }
    }
}

/// `to` becomes the path holding `from`'s content: hard links share one
/// inode, so its kind, mode, owner and time go with it.
fn take_inode(to: &mut ArchiveItem, from: &ArchiveItem) {
    to.kind = from.kind.clone();
    to.mode = from.mode;
    to.uid = from.uid;
    to.gid = from.gid;
    to.mtime = from.mtime;
}

/// Layer order: path by path, component by component (as the plan sorts).
fn layer_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Makes each hard-link group's holder the path that comes first in the
/// layer, so that no link is written before its target.
fn first_in_layer_order(tree: &mut BTreeMap<String, ArchiveItem>) {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, item) in tree.iter() {
        if let ArchiveItemKind::HardLink(holder) = &item.kind {
            groups.entry(holder.clone()).or_default().push(path.clone());
        }
    }
    for (holder, links) in groups {
        let Some(first) = links
            .iter()
            .min_by(|a, b| layer_order(a, b))
            .filter(|f| layer_order(f, &holder).is_lt())
            .cloned()
        else {
            continue;
        };
        let Some(held) = tree.get(&holder).cloned() else {
            continue;
        };
        if let Some(i) = tree.get_mut(&first) {
            take_inode(i, &held);
        }
        for path in links.iter().chain(std::iter::once(&holder)) {
            if *path != first {
                if let Some(i) = tree.get_mut(path) {
                    i.kind = ArchiveItemKind::HardLink(first.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn item(path: &str, kind: ArchiveItemKind) -> ArchiveItem {
        ArchiveItem {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }
    fn file(path: &str) -> ArchiveItem {
        item(
            path,
            ArchiveItemKind::File(PathBuf::from(format!("/spool/{path}"))),
        )
    }
    fn link(path: &str, to: &str) -> ArchiveItem {
        item(path, ArchiveItemKind::HardLink(to.into()))
    }
    fn dir(path: &str) -> ArchiveItem {
        item(path, ArchiveItemKind::Dir)
    }
    fn kinds(items: &[ArchiveItem]) -> Vec<(String, ArchiveItemKind)> {
        items
            .iter()
            .map(|i| (i.path.clone(), i.kind.clone()))
            .collect()
    }
    fn spool(p: &str) -> ArchiveItemKind {
        ArchiveItemKind::File(PathBuf::from(format!("/spool/{p}")))
    }
    fn hard(p: &str) -> ArchiveItemKind {
        ArchiveItemKind::HardLink(p.into())
    }

    #[test]
    fn a_hard_link_sorted_before_its_target_takes_the_content() {
        let out = settle(vec![
            dir("z"),
            file("z/file"),
            link("a", "z/file"),
            link("b", "a"),
        ])
        .unwrap();
        assert_eq!(
            kinds(&out),
            [
                ("a".into(), spool("z/file")),
                ("b".into(), hard("a")),
                ("z".into(), ArchiveItemKind::Dir),
                ("z/file".into(), hard("a")),
            ]
        );
    }

    #[test]
    fn a_later_file_drops_the_tree_it_replaces_and_links_keep_their_content() {
        let out = settle(vec![
            dir("d"),
            file("d/f"),
            link("x", "d/f"),
            file("d"),
            file("x2"),
        ])
        .unwrap();
        assert_eq!(
            kinds(&out),
            [
                ("d".into(), spool("d")),
                ("x".into(), spool("d/f")),
                ("x2".into(), spool("x2")),
            ]
        );
    }

    #[test]
    fn a_link_to_a_path_outside_the_archive_is_left_for_the_image() {
        let out = settle(vec![link("a", "usr/lib/existing")]).unwrap();
        assert_eq!(kinds(&out), [("a".into(), hard("usr/lib/existing"))]);
    }

    #[test]
    fn inconsistent_archives_are_errors_naming_the_entry() {
        for (items, entry) in [
            (vec![dir("d"), link("a", "d")], "a"),
            (vec![file("f"), file("f/under")], "f/under"),
        ] {
            match settle(items) {
                Err(ArchiveError::Inconsistent { entry: e, reason }) => {
                    assert_eq!(e, entry, "{reason}")
                }
                other => panic!("{entry}: {other:?}"),
            }
        }
    }
}
