//! An image's paths, answered from its layers' listings without merging
//! them: a path is looked up top down through the layers, each layer's
//! whiteouts, opaque directories and non-directories cutting off the ones
//! below, and every answer is remembered.
//!
//! A layer's entries may be in pieces not yet loaded (see `stored`): a
//! lookup that needs one records it as *missing* and answers as if the
//! path were absent. Whoever asked runs its decision again once the
//! missing pieces are loaded ([`ImageIndex::take_missing`]); answers given
//! with nothing missing never change, so they are kept.

use super::super::image_text::{ImageTextError, ImageTextProblem};
use super::layer::{Kind, LayerListing};
use super::stored::Contents;
use crate::copy::FileKind;
use crate::model::image::LayerRef;
use kiln_oci::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::{Arc, Mutex, OnceLock};

/// Symlink hops allowed while resolving a path (as Linux).
const MAX_SYMLINK_HOPS: usize = 40;

/// One layer's listing as a lookup needs it; its entries whole, or in
/// pieces loaded as lookups reach them. Shared by every image that has
/// the layer.
#[derive(Debug)]
pub(crate) struct LayerView {
    /// Sorted, for binary search.
    whiteouts: Vec<String>,
    /// Sorted, for binary search.
    opaque: Vec<String>,
    texts: BTreeMap<String, String>,
    pieces: Vec<Piece>,
}

/// A run of a layer's entries in path order.
#[derive(Debug)]
pub(crate) struct Piece {
    /// The first path the piece holds (the first piece: from the start).
    first: String,
    /// Where the piece is stored; `None` for entries at hand.
    pub(crate) digest: Option<Digest>,
    entries: OnceLock<BTreeMap<String, Kind>>,
}

impl Piece {
    /// All of a layer's entries, at hand.
    fn at_hand(entries: BTreeMap<String, Kind>) -> Piece {
        Piece {
            first: String::new(),
            digest: None,
            entries: OnceLock::from(entries),
        }
    }
}

impl LayerView {
    /// A listing at hand, whole.
    pub(crate) fn whole(listing: LayerListing) -> LayerView {
        LayerView {
            whiteouts: sorted(listing.whiteouts),
            opaque: sorted(listing.opaque),
            texts: listing.texts,
            pieces: vec![Piece::at_hand(listing.entries)],
        }
    }

    /// A stored listing: its entries inline, or pieces to load.
    pub(crate) fn stored(contents: Contents) -> LayerView {
        let pieces = if contents.pieces.is_empty() {
            vec![Piece::at_hand(contents.entries)]
        } else {
            contents
                .pieces
                .into_iter()
                .map(|r| Piece {
                    first: r.first,
                    digest: Some(r.digest),
                    entries: OnceLock::new(),
                })
                .collect()
        };
        LayerView {
            whiteouts: sorted(contents.whiteouts),
            opaque: sorted(contents.opaque),
            texts: contents.texts,
            pieces,
        }
    }

    /// Piece `i` (as a miss names it).
    pub(crate) fn piece(&self, i: usize) -> &Piece {
        &self.pieces[i]
    }

    /// Gives piece `i` its entries (a second fill is ignored: both came
    /// from the same listing).
    pub(crate) fn fill(&self, i: usize, entries: BTreeMap<String, Kind>) {
        let _ = self.pieces[i].entries.set(entries);
    }

    /// Fills every piece not loaded yet from the whole listing (when a
    /// piece could not be had and the layer was listed from its blob).
    pub(crate) fn fill_from(&self, mut listing: LayerListing) {
        for i in (0..self.pieces.len()).rev() {
            let tail = if i == 0 {
                std::mem::take(&mut listing.entries)
            } else {
                listing.entries.split_off(&self.pieces[i].first)
            };
            self.fill(i, tail);
        }
    }

    /// Whether every entry is at hand.
    #[cfg(test)]
    fn is_whole(&self) -> bool {
        self.pieces.iter().all(|p| p.entries.get().is_some())
    }

    /// The parts of a whole view to store (`None` when a piece is not loaded).
    pub(crate) fn to_write(
        &self,
    ) -> Option<super::stored::ToWrite<'_, impl Iterator<Item = (&String, &Kind)>>> {
        let pieces: Vec<&BTreeMap<String, Kind>> = self
            .pieces
            .iter()
            .map(|p| p.entries.get())
            .collect::<Option<_>>()?;
        let len = pieces.iter().map(|p| p.len()).sum();
        Some(super::stored::ToWrite {
            whiteouts: &self.whiteouts,
            opaque: &self.opaque,
            texts: &self.texts,
            entries: pieces.into_iter().flatten(),
            len,
        })
    }

    fn whiteout(&self, path: &str) -> bool {
        self.whiteouts
            .binary_search_by(|w| w.as_str().cmp(path))
            .is_ok()
    }

    fn opaque(&self, path: &str) -> bool {
        self.opaque
            .binary_search_by(|o| o.as_str().cmp(path))
            .is_ok()
    }

    /// The layer's entry at `path`; `Err(piece)` when it is in a piece
    /// not loaded.
    fn entry(&self, path: &str) -> Result<Option<&Kind>, usize> {
        let i = self
            .pieces
            .partition_point(|p| p.first.as_str() <= path)
            .saturating_sub(1);
        match self.pieces[i].entries.get() {
            Some(entries) => Ok(entries.get(path)),
            None => Err(i),
        }
    }
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths.dedup();
    paths
}

/// A piece a lookup needed and did not have: layer `layer` (from the
/// bottom), piece `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Missing {
    pub layer: usize,
    pub piece: usize,
}

/// What the layers together say about one path.
#[derive(Debug, Clone)]
struct Merged {
    kind: Option<Kind>,
    /// The layer whose entry it is (for its text).
    owner: usize,
    /// The lowest layer that can hold entries below the path: the ones
    /// under it are cut off by a whiteout, an opaque directory or a
    /// non-directory at the path or above.
    floor: usize,
}

impl Merged {
    fn absent() -> Merged {
        Merged {
            kind: None,
            owner: 0,
            floor: usize::MAX,
        }
    }
}

/// An image's paths: its layers' listings, looked up top down.
#[derive(Debug)]
pub struct ImageIndex {
    /// Bottom first, each with the layer it lists.
    layers: Vec<(LayerRef, Arc<LayerView>)>,
    /// Answers found with nothing missing.
    merged: Mutex<HashMap<String, Merged>>,
    /// Pieces lookups needed since the last [`ImageIndex::take_missing`].
    missing: Mutex<BTreeSet<Missing>>,
}

impl ImageIndex {
    /// The index of `layers`, bottom first.
    pub(crate) fn new(layers: Vec<(LayerRef, Arc<LayerView>)>) -> ImageIndex {
        ImageIndex {
            layers,
            merged: Mutex::default(),
            missing: Mutex::default(),
        }
    }

    /// Layer `i` (as a miss names it) and its view.
    pub(crate) fn layer(&self, i: usize) -> &(LayerRef, Arc<LayerView>) {
        &self.layers[i]
    }

    /// The pieces lookups needed and did not have since the last call;
    /// while any, the answers given since then are not to be trusted.
    pub(crate) fn take_missing(&self) -> Vec<Missing> {
        std::mem::take(&mut *self.missing.lock().expect("index lock"))
            .into_iter()
            .collect()
    }

    /// What `path` is, following symlinks inside the image.
    pub fn kind_of(&self, path: &str) -> Option<FileKind> {
        let resolved = self.resolve(path)?;
        if resolved == "/" {
            return Some(FileKind::Dir);
        }
        Some(match self.lookup(&resolved).kind? {
            Kind::Dir => FileKind::Dir,
            Kind::File => FileKind::File,
            Kind::Symlink(_) => FileKind::Symlink,
            Kind::Other => FileKind::Other,
        })
    }

    /// The text of `/etc/passwd` or `/etc/group`, when the image has it.
    ///
    /// # Errors
    /// When the image has it as a FIFO, a device node or a socket (what
    /// reading the image's root would refuse too).
    pub fn read_text(&self, path: &str) -> Result<Option<String>, ImageTextError> {
        let Some(resolved) = self.resolve(path) else {
            return Ok(None);
        };
        let found = self.lookup(&resolved);
        match found.kind {
            Some(Kind::File) => Ok(self.layers[found.owner].1.texts.get(&resolved).cloned()),
            Some(Kind::Other) => Err(ImageTextError::new(
                path,
                ImageTextProblem::ListedNotRegular,
            )),
            _ => Ok(None),
        }
    }

    /// `path` with every symlink along it resolved inside the image.
    ///
    /// This resolves in the *listing*, where no file exists on disk: a
    /// separate job from kiln-layer's on-disk `resolve::in_root`, which
    /// `Rootfs::resolve` uses for the same question over an unpacked root.
    /// The rules are the same (`..` stops at `/`, an absolute target starts
    /// again at `/`, a missing component is no link, 40 links at most), so
    /// both views of an image agree.
    pub fn resolve(&self, path: &str) -> Option<String> {
        // The path resolved so far, and where each of its components
        // starts (for `..`): each step looks up one candidate without
        // joining every component again.
        let mut done = String::new();
        let mut starts: Vec<usize> = Vec::new();
        let mut pending: Vec<String> = parts(path).into_iter().rev().collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    if let Some(start) = starts.pop() {
                        done.truncate(start);
                    }
                    continue;
                }
                _ => {}
            }
            starts.push(done.len());
            done.push('/');
            done.push_str(&part);
            if let Some(Kind::Symlink(target)) = self.lookup(&done).kind {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return None;
                }
                // The link is replaced by where it points.
                done.truncate(starts.pop().expect("just pushed"));
                if target.starts_with('/') {
                    done.clear();
                    starts.clear();
                }
                pending.extend(parts(&target).into_iter().rev());
            }
        }
        if done.is_empty() {
            done.push('/');
        }
        Some(done)
    }

    /// What the layers say about `path` (no symlink followed); a missing
    /// piece is recorded and the path answered as absent.
    fn lookup(&self, path: &str) -> Merged {
        self.merged_at(path).unwrap_or_else(|missing| {
            self.missing.lock().expect("index lock").insert(missing);
            Merged::absent()
        })
    }

    fn merged_at(&self, path: &str) -> Result<Merged, Missing> {
        if path.is_empty() || path == "/" {
            return Ok(self.root());
        }
        if let Some(m) = self.merged.lock().expect("index lock").get(path) {
            return Ok(m.clone());
        }
        let parent = self.merged_at(path.rfind('/').map_or("", |i| &path[..i]))?;
        let merged = if parent.kind == Some(Kind::Dir) {
            self.merge(path, parent.floor)?
        } else {
            // Under a file, a link or nothing: nothing.
            Merged::absent()
        };
        self.merged
            .lock()
            .expect("index lock")
            .insert(path.to_string(), merged.clone());
        Ok(merged)
    }

    /// `path` through the layers from the top down to `floor`: the top
    /// entry is what it is; the first layer that cuts off the ones below
    /// at `path` is where its children's search ends.
    fn merge(&self, path: &str, floor: usize) -> Result<Merged, Missing> {
        let mut merged = Merged {
            kind: None,
            owner: 0,
            floor,
        };
        for (layer, (_, view)) in self.layers.iter().enumerate().skip(floor).rev() {
            let here = view.entry(path).map_err(|piece| Missing { layer, piece })?;
            if merged.kind.is_none() {
                if let Some(kind) = here {
                    merged.kind = Some(kind.clone());
                    merged.owner = layer;
                }
            }
            // A whiteout or a non-directory hides the path's lower tree,
            // an opaque directory its lower contents.
            let cuts =
                view.whiteout(path) || view.opaque(path) || here.is_some_and(|k| *k != Kind::Dir);
            if cuts {
                merged.floor = layer;
                break;
            }
        }
        Ok(merged)
    }

    fn root(&self) -> Merged {
        let floor = self
            .layers
            .iter()
            .rposition(|(_, v)| v.opaque("") || v.opaque("/"))
            .unwrap_or(0);
        Merged {
            kind: Some(Kind::Dir),
            owner: 0,
            floor,
        }
    }
}

fn parts(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::layer::catalog_options;
    use super::super::stored::{self, ToWrite};
    use super::*;
    use kiln_oci::media::Compression;
    use kiln_oci::Descriptor;

    fn listing(entries: &[(&str, Kind)], whiteouts: &[&str], opaque: &[&str]) -> LayerListing {
        LayerListing {
            entries: entries
                .iter()
                .map(|(p, k)| (p.to_string(), k.clone()))
                .collect(),
            whiteouts: whiteouts.iter().map(|s| s.to_string()).collect(),
            opaque: opaque.iter().map(|s| s.to_string()).collect(),
            texts: BTreeMap::new(),
        }
    }

    fn layer_ref(i: usize) -> LayerRef {
        let digest = Digest::sha256_of(format!("layer {i}").as_bytes());
        LayerRef {
            descriptor: Descriptor::new("test", digest.clone(), 0),
            diff_id: digest,
            origin: crate::model::image::LayerOrigin::Local("/nowhere".into()),
        }
    }

    /// The index of `layers` (bottom first), whole.
    fn index_of(layers: &[LayerListing]) -> ImageIndex {
        ImageIndex::new(
            layers
                .iter()
                .enumerate()
                .map(|(i, l)| (layer_ref(i), Arc::new(LayerView::whole(l.clone()))))
                .collect(),
        )
    }

    #[test]
    fn layers_stack_with_whiteouts_opaques_and_symlinks() {
        let mut layers = vec![listing(
            &[
                ("/usr", Kind::Dir),
                ("/usr/lib", Kind::Dir),
                ("/usr/lib/a.so", Kind::File),
                ("/lib", Kind::Symlink("usr/lib".into())),
                ("/opt", Kind::Dir),
                ("/opt/x", Kind::File),
                ("/etc", Kind::Dir),
            ],
            &[],
            &[],
        )];
        let index = index_of(&layers);
        assert_eq!(index.kind_of("/lib/a.so"), Some(FileKind::File));
        assert_eq!(index.kind_of("/lib"), Some(FileKind::Dir));
        layers.push(listing(
            &[("/opt", Kind::Dir), ("/opt/y", Kind::File)],
            &["/usr/lib/a.so"],
            &["/opt"],
        ));
        let index = index_of(&layers);
        assert_eq!(index.kind_of("/lib/a.so"), None);
        assert_eq!(
            index.kind_of("/opt/x"),
            None,
            "opaque hides the lower contents"
        );
        assert_eq!(index.kind_of("/opt/y"), Some(FileKind::File));
        layers.push(listing(&[("/usr", Kind::File)], &[], &[]));
        let index = index_of(&layers);
        assert_eq!(
            index.kind_of("/usr/lib"),
            None,
            "a file replacing a directory replaces its tree"
        );
        assert_eq!(index.kind_of("/"), Some(FileKind::Dir));
        assert_eq!(index.kind_of("/../../etc"), Some(FileKind::Dir));
        // A directory made again above the file holds only what is above.
        layers.push(listing(
            &[("/usr", Kind::Dir), ("/usr/new", Kind::File)],
            &[],
            &[],
        ));
        let index = index_of(&layers);
        assert_eq!(index.kind_of("/usr/new"), Some(FileKind::File));
        assert_eq!(index.kind_of("/usr/lib"), None);
        assert!(index.take_missing().is_empty());
    }

    #[test]
    fn texts_follow_their_files() {
        let mut first = listing(
            &[("/etc", Kind::Dir), ("/etc/passwd", Kind::File)],
            &[],
            &[],
        );
        first
            .texts
            .insert("/etc/passwd".into(), "root:x:0:0::/root:/bin/sh\n".into());
        let mut layers = vec![first];
        assert!(index_of(&layers)
            .read_text("/etc/passwd")
            .unwrap()
            .unwrap()
            .starts_with("root:"));
        layers.push(listing(&[], &["/etc/passwd"], &[]));
        assert_eq!(index_of(&layers).read_text("/etc/passwd").unwrap(), None);
        // A FIFO or a device where the text should be is an error naming it.
        layers.push(listing(
            &[("/dev", Kind::Dir), ("/dev/zero", Kind::Other)],
            &[],
            &[],
        ));
        layers.push(listing(
            &[("/etc/passwd", Kind::Symlink("/dev/zero".into()))],
            &[],
            &[],
        ));
        let e = index_of(&layers).read_text("/etc/passwd").unwrap_err();
        assert!(
            matches!(&e.problem, ImageTextProblem::ListedNotRegular if e.path == "/etc/passwd"),
            "{e:?}"
        );
    }

    #[test]
    fn a_real_layer_lists_like_it_unpacks() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("etc")).unwrap();
        std::fs::write(tree.path().join("etc/group"), "root:x:0:\n").unwrap();
        std::os::unix::fs::symlink("etc", tree.path().join("config")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let blob = kiln_layer::dir::write_tree(
            tree.path(),
            out.path(),
            &kiln_layer::LayerOptions::new(Compression::Gzip).with_catalog(catalog_options()),
            &kiln_layer::dir::TreeOptions::default(),
        )
        .unwrap();
        let l = LayerListing::from_blob(&blob.path, kiln_oci::media::OCI_LAYER_GZIP, &blob.diff_id)
            .unwrap();
        // The listing recorded while the layer was written says the same.
        assert_eq!(
            LayerListing::from_catalog(blob.catalog.as_ref().unwrap()),
            l
        );
        let index = index_of(&[l]);
        assert_eq!(index.kind_of("/config/group"), Some(FileKind::File));
        assert_eq!(
            index.read_text("/config/group").unwrap().as_deref(),
            Some("root:x:0:\n")
        );
        let wrong = Digest::sha256_of(b"not it");
        assert!(
            LayerListing::from_blob(&blob.path, kiln_oci::media::OCI_LAYER_GZIP, &wrong).is_err()
        );
    }

    /// Layers of many paths, with links, whiteouts, opaque directories and
    /// files replacing directories between them.
    fn many_layers() -> Vec<LayerListing> {
        let mut base = listing(
            &[
                ("/etc", Kind::Dir),
                ("/etc/passwd", Kind::File),
                ("/lib", Kind::Symlink("usr/lib".into())),
                ("/usr", Kind::Dir),
                ("/usr/lib", Kind::Dir),
                ("/opt", Kind::Dir),
                ("/srv", Kind::Dir),
            ],
            &[],
            &[],
        );
        base.texts
            .insert("/etc/passwd".into(), "app:x:1:1::/:/bin/sh\n".into());
        for i in 0..40 {
            base.entries
                .insert(format!("/usr/lib/m{i:02}.so"), Kind::File);
            base.entries.insert(format!("/opt/d{i:02}"), Kind::Dir);
            base.entries.insert(format!("/opt/d{i:02}/f"), Kind::File);
        }
        let mut upper = listing(
            &[
                ("/opt", Kind::Dir),
                ("/opt/d07", Kind::File),
                ("/opt/d08", Kind::Dir),
                ("/opt/d08/g", Kind::File),
                ("/srv", Kind::Dir),
                ("/srv/app", Kind::Symlink("/opt/d09".into())),
            ],
            &["/usr/lib/m03.so", "/opt/d05"],
            &["/opt/d08"],
        );
        for i in 0..30 {
            upper
                .entries
                .insert(format!("/opt/d20/n{i:02}"), Kind::File);
        }
        let top = listing(
            &[("/opt", Kind::Dir), ("/opt/d05", Kind::Dir)],
            &["/etc/passwd"],
            &[],
        );
        vec![base, upper, top]
    }

    /// Every path worth asking about in [`many_layers`], and a few absent.
    fn questions(layers: &[LayerListing]) -> Vec<String> {
        let mut paths: BTreeSet<String> = layers
            .iter()
            .flat_map(|l| l.entries.keys().chain(&l.whiteouts).cloned())
            .collect();
        for p in [
            "/lib/m03.so",
            "/lib/m04.so",
            "/srv/app/f",
            "/srv/app",
            "/nope/x",
        ] {
            paths.insert(p.to_string());
        }
        paths.into_iter().collect()
    }

    fn answers(index: &ImageIndex, paths: &[String]) -> Vec<(Option<FileKind>, Option<String>)> {
        paths
            .iter()
            .map(|p| (index.kind_of(p), index.read_text(p).unwrap()))
            .collect()
    }

    /// The index of `layers` as stored in `dir` in pieces of 4 entries,
    /// none loaded; with each piece's file by digest.
    fn stored_in_pieces(
        layers: &[LayerListing],
        dir: &std::path::Path,
    ) -> (ImageIndex, HashMap<Digest, std::path::PathBuf>) {
        let mut files = HashMap::new();
        let mut views = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let written = stored::write(ToWrite::of(l), dir, 4).unwrap();
            for piece in written.pieces {
                files.insert(piece.digest, piece.path);
            }
            let contents =
                stored::read_contents(&stored::Found::File(written.contents.path.clone())).unwrap();
            views.push((layer_ref(i), Arc::new(LayerView::stored(contents))));
        }
        (ImageIndex::new(views), files)
    }

    #[test]
    fn listings_in_pieces_answer_as_whole_ones_once_the_missing_pieces_are_loaded() {
        let layers = many_layers();
        let paths = questions(&layers);
        let whole_index = index_of(&layers);
        for (path, kind) in [
            ("/opt/d07/f", None),
            ("/opt/d07", Some(FileKind::File)),
            ("/opt/d08/f", None),
            ("/opt/d08/g", Some(FileKind::File)),
            ("/opt/d05/f", None),
            ("/opt/d05", Some(FileKind::Dir)),
            ("/opt/d06/f", Some(FileKind::File)),
            ("/lib/m03.so", None),
            ("/lib/m04.so", Some(FileKind::File)),
            ("/srv/app/f", Some(FileKind::File)),
            ("/opt/d20/n29", Some(FileKind::File)),
        ] {
            assert_eq!(whole_index.kind_of(path), kind, "{path}");
        }
        assert_eq!(whole_index.read_text("/etc/passwd").unwrap(), None);
        let whole = answers(&whole_index, &paths);
        let dir = tempfile::tempdir().unwrap();
        let (index, files) = stored_in_pieces(&layers, dir.path());
        let total: usize = (0..layers.len())
            .map(|i| index.layer(i).1.pieces.len())
            .sum();
        let mut loaded = 0;
        // Each question alone, as a decision would: ask, load what was
        // missing, ask again until nothing is.
        for (path, expected) in paths.iter().zip(&whole) {
            loop {
                let answer = answers(&index, std::slice::from_ref(path)).remove(0);
                let missing = index.take_missing();
                if missing.is_empty() {
                    assert_eq!(&answer, expected, "{path}");
                    break;
                }
                for m in missing {
                    let (_, view) = index.layer(m.layer);
                    let digest = view.piece(m.piece).digest.clone().unwrap();
                    view.fill(
                        m.piece,
                        stored::read_piece(&stored::Found::File(files[&digest].clone())).unwrap(),
                    );
                    loaded += 1;
                }
            }
        }
        assert_eq!(answers(&index, &paths), whole);
        assert!(index.take_missing().is_empty());
        assert!(loaded <= total, "{loaded} loads of {total} pieces");

        // A question about one place loads only the pieces it falls in.
        let (index, _) = stored_in_pieces(&layers, dir.path());
        index.kind_of("/srv/app/new");
        let missing = index.take_missing();
        assert!(
            !missing.is_empty() && missing.len() <= 6,
            "{missing:?} of {total}"
        );
    }

    #[test]
    fn a_layer_listed_whole_fills_the_pieces_it_was_missing() {
        let layers = many_layers();
        let dir = tempfile::tempdir().unwrap();
        let written = stored::write(ToWrite::of(&layers[0]), dir.path(), 4).unwrap();
        let view = LayerView::stored(
            stored::read_contents(&stored::Found::File(written.contents.path.clone())).unwrap(),
        );
        assert!(!view.is_whole());
        view.fill(
            1,
            stored::read_piece(&stored::Found::File(written.pieces[1].path.clone())).unwrap(),
        );
        view.fill_from(layers[0].clone());
        assert!(view.is_whole());
        let index = ImageIndex::new(vec![(layer_ref(0), Arc::new(view))]);
        let paths = questions(&layers[..1]);
        assert_eq!(
            answers(&index, &paths),
            answers(&index_of(&layers[..1]), &paths)
        );
    }
}
