//! A layer listing as the cache keeps it: its *contents* (whiteouts, opaque
//! directories, the kept texts) and its entries, inline when they are few,
//! else split in path order into *pieces* of at most [`PIECE_ENTRIES`],
//! each stored as an entry of its own under a key of its digest.
//!
//! A big layer lists hundreds of thousands of paths, and a warm rebuild's
//! COPY asks about a handful of them: with pieces it fetches the contents
//! and the one or two pieces its paths fall in, whatever the layer's size,
//! instead of reading the whole list into memory.

use super::layer::Kind;
#[cfg(test)]
use super::layer::LayerListing;
use kiln_oci::{Digest, DigestWriter};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Entries per piece: a piece is about a megabyte of JSON, read in
/// milliseconds, and a layer of 150,000 paths has ten.
pub(crate) const PIECE_ENTRIES: usize = 16_384;

/// A stored listing's contents, as read back.
#[derive(Debug, Deserialize)]
pub(crate) struct Contents {
    pub whiteouts: Vec<String>,
    pub opaque: Vec<String>,
    pub texts: BTreeMap<String, String>,
    /// Every entry, when they fit in one piece; else empty.
    pub entries: BTreeMap<String, Kind>,
    /// The pieces the entries were split into, in path order; empty when
    /// they are inline.
    pub pieces: Vec<PieceRef>,
}

/// One stored piece of a listing's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PieceRef {
    /// The piece's first path: it holds every entry from here to the next
    /// piece's first path (the first piece, everything before too).
    pub first: String,
    /// The digest of the piece's JSON (a map of path to kind).
    pub digest: Digest,
}

/// A file written for the cache, with its digest and size.
#[derive(Debug)]
pub(crate) struct WrittenFile {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
    /// The file's bytes, kept as they were written when there are at most
    /// [`EMBEDDED_MAX`]: what its cache entry carries.
    pub small: Option<Vec<u8>>,
}

/// A listing written as stored: its contents file and its pieces' files.
#[derive(Debug)]
pub(crate) struct Written {
    pub contents: WrittenFile,
    pub pieces: Vec<WrittenFile>,
}

/// The parts of a listing to write, borrowed: entries come in path order.
pub(crate) struct ToWrite<'a, I> {
    pub whiteouts: &'a [String],
    pub opaque: &'a [String],
    pub texts: &'a BTreeMap<String, String>,
    pub entries: I,
    pub len: usize,
}

/// Writes a listing into `dir`: one file per piece of at most `per_piece`
/// entries (none when they all fit in one) and the contents file naming
/// them. Each file is streamed to disk and digested in one pass.
pub(crate) fn write<'a, I>(
    listing: ToWrite<'a, I>,
    dir: &Path,
    per_piece: usize,
) -> std::io::Result<Written>
where
    I: Iterator<Item = (&'a String, &'a Kind)>,
{
    let inline = listing.len <= per_piece;
    let mut entries = listing.entries.peekable();
    let mut pieces = Vec::new();
    let mut refs = Vec::new();
    if !inline {
        while let Some((first, _)) = entries.peek() {
            let first = (*first).clone();
            let piece: Vec<_> = entries.by_ref().take(per_piece).collect();
            let file = write_json(dir, &Map(&piece))?;
            refs.push(PieceRef {
                first,
                digest: file.digest.clone(),
            });
            pieces.push(file);
        }
    }
    let inline_entries: Vec<_> = if inline {
        entries.collect()
    } else {
        Vec::new()
    };
    let contents = write_json(
        dir,
        &ContentsOut {
            whiteouts: listing.whiteouts,
            opaque: listing.opaque,
            texts: listing.texts,
            entries: Map(&inline_entries),
            pieces: &refs,
        },
    )?;
    Ok(Written { contents, pieces })
}

#[cfg(test)]
impl<'a> ToWrite<'a, std::collections::btree_map::Iter<'a, String, Kind>> {
    /// A whole layer listing to write.
    pub(crate) fn of(listing: &'a LayerListing) -> Self {
        ToWrite {
            whiteouts: &listing.whiteouts,
            opaque: &listing.opaque,
            texts: &listing.texts,
            entries: listing.entries.iter(),
            len: listing.entries.len(),
        }
    }
}

/// A stored listing file, as a lookup finds it: downloaded to a file, or
/// carried by its cache entry (a small file, see [`EMBEDDED_MAX`]).
pub(crate) enum Found {
    File(PathBuf),
    Embedded(Vec<u8>),
}

/// Largest listing file a cache entry carries in its manifest (as the layer
/// descriptor's `data`), so that a lookup needs no second request for it: a
/// layer of a few hundred paths, or a big layer's contents naming its
/// pieces. Pieces and bigger contents are downloaded as blobs.
pub(crate) const EMBEDDED_MAX: u64 = 64 * 1024;

/// Reads a contents file.
pub(crate) fn read_contents(found: &Found) -> Result<Contents, serde_json::Error> {
    read_json(found)
}

/// Reads a piece file.
pub(crate) fn read_piece(found: &Found) -> Result<BTreeMap<String, Kind>, serde_json::Error> {
    read_json(found)
}

fn read_json<T: serde::de::DeserializeOwned>(found: &Found) -> Result<T, serde_json::Error> {
    match found {
        Found::Embedded(bytes) => serde_json::from_slice(bytes),
        Found::File(path) => {
            // Parsed as it is read: holding the text beside the maps would
            // double the memory a listing takes.
            let file = std::fs::File::open(path).map_err(serde_json::Error::io)?;
            serde_json::from_reader(std::io::BufReader::new(file))
        }
    }
}

/// The contents as written: same fields as [`Contents`], borrowed.
#[derive(Serialize)]
struct ContentsOut<'a, 'b> {
    whiteouts: &'a [String],
    opaque: &'a [String],
    texts: &'a BTreeMap<String, String>,
    entries: Map<'a, 'b>,
    pieces: &'b [PieceRef],
}

/// Entries written as a JSON map without copying them into one.
struct Map<'a, 'b>(&'b [(&'a String, &'a Kind)]);

impl Serialize for Map<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (path, kind) in self.0 {
            map.serialize_entry(path, kind)?;
        }
        map.end()
    }
}

/// Writes `value` as JSON to a new file in `dir` named after its digest,
/// keeping its bytes when they are few.
fn write_json(dir: &Path, value: &impl Serialize) -> std::io::Result<WrittenFile> {
    let temp = tempfile::NamedTempFile::new_in(dir)?;
    let file = temp.as_file().try_clone()?;
    let mut out = KeepSmall {
        inner: DigestWriter::new(std::io::BufWriter::new(file)),
        kept: Some(Vec::new()),
    };
    serde_json::to_writer(&mut out, value)?;
    let (mut file, digest, size) = out.inner.finish();
    file.flush()?;
    let path = dir.join(format!("listing-{}", digest.hex()));
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(WrittenFile {
        path,
        digest,
        size,
        small: out.kept,
    })
}

/// Passes bytes on, keeping a copy while they total at most
/// [`EMBEDDED_MAX`] (none once they go past it).
struct KeepSmall<W> {
    inner: W,
    kept: Option<Vec<u8>>,
}

impl<W: Write> Write for KeepSmall<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(kept) = &mut self.kept {
            if (kept.len() + n) as u64 <= EMBEDDED_MAX {
                kept.extend_from_slice(&buf[..n]);
            } else {
                self.kept = None;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(n: usize) -> LayerListing {
        let mut l = LayerListing::default();
        for i in 0..n {
            l.entries.insert(format!("/d/{i:03}"), Kind::File);
        }
        l.entries.insert("/d".into(), Kind::Dir);
        l.whiteouts.push("/gone".into());
        l.opaque.push("/d".into());
        l.texts
            .insert("/etc/passwd".into(), "root:x:0:0::/:/bin/sh\n".into());
        l
    }

    #[test]
    fn a_small_listing_is_one_file_and_a_big_one_is_split_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let small = listing(3);
        let written = write(ToWrite::of(&small), dir.path(), 4).unwrap();
        assert!(written.pieces.is_empty());
        let c = read_contents(&Found::File(written.contents.path.clone())).unwrap();
        let kept = written
            .contents
            .small
            .as_deref()
            .expect("a small file is kept");
        assert_eq!(kept, std::fs::read(&written.contents.path).unwrap());
        assert_eq!((c.entries, c.pieces.len()), (small.entries.clone(), 0));
        assert_eq!((c.whiteouts, c.opaque), (small.whiteouts, small.opaque));
        assert_eq!(c.texts, small.texts);

        let big = listing(10);
        let written = write(ToWrite::of(&big), dir.path(), 4).unwrap();
        let c = read_contents(&Found::File(written.contents.path.clone())).unwrap();
        assert!(c.entries.is_empty());
        assert_eq!(c.pieces.len(), 3, "11 entries in pieces of 4");
        let mut all = BTreeMap::new();
        for (r, file) in c.pieces.iter().zip(&written.pieces) {
            assert_eq!(r.digest, file.digest);
            let piece = read_piece(&Found::File(file.path.clone())).unwrap();
            assert_eq!(piece.keys().next(), Some(&r.first));
            assert!(piece.len() <= 4);
            assert!(all.keys().all(|k: &String| k < &r.first), "in order");
            all.extend(piece);
        }
        assert_eq!(all, big.entries);
        // The same listing writes the same pieces.
        let again = write(ToWrite::of(&big), dir.path(), 4).unwrap();
        assert_eq!(again.contents.digest, written.contents.digest);
    }
}
