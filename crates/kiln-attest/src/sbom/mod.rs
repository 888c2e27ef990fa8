//! The SBOM: which packages an image's file system holds, as SPDX 2.3 JSON.
//!
//! The image is read as its layers, bottom first: [`Collector`] keeps the
//! content of the few files a cataloguer reads ([`Collector::wants`]),
//! applying each layer's whiteouts, so the result is what the final image
//! holds without unpacking it. Then each cataloguer reads its files:
//!
//! | cataloguer | reads | finds |
//! | --- | --- | --- |
//! | [`dpkg`] | `var/lib/dpkg/status`, `var/lib/dpkg/status.d/*` | Debian packages in state `installed` (and the half-installed states dpkg-query lists) |
//! | [`apk`] | `lib/apk/db/installed` | Alpine packages |
//! | [`python`] | `…/site-packages/*.dist-info/METADATA`, `…/*.egg-info/PKG-INFO` (or an `.egg-info` file), also under `dist-packages` | installed Python distributions |
//! | [`npm`] | `…/node_modules/NAME/package.json`, `…/node_modules/@SCOPE/NAME/package.json` | npm packages |
//! | [`golang`] | every ELF file with an execute bit | Go binaries' modules and Go release |
//!
//! The database formats are small line formats; the crates that read them
//! (e.g. `debian-control`) bring a parser framework each for a few dozen
//! lines, so they are read here.

pub mod apk;
pub mod dpkg;
pub mod golang;
pub mod npm;
pub mod python;
mod spdx;

pub use spdx::{document, DocumentInfo};

use std::collections::BTreeMap;

/// Largest package database (dpkg status, apk installed) read: a larger
/// one is not a real one, and is left out rather than held in memory.
pub const MAX_FILE: u64 = 64 << 20;
/// How much of a single package's metadata file (`METADATA`, `PKG-INFO`,
/// `package.json`) is read: the fields needed come first.
pub const MAX_METADATA: u64 = 1 << 20;

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Which cataloguer found it (`dpkg`, `apk`, `python`, `npm`, `go`).
    pub ecosystem: &'static str,
    /// The package's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The package URL.
    pub purl: String,
    /// Declared licence, as the package states it (not an SPDX expression).
    pub license: Option<String>,
    /// Supplier (maintainer), when the database names one.
    pub supplier: Option<String>,
    /// The file it was found in, absolute.
    pub found_in: String,
}

/// What the cataloguers found so far, by the path that holds it, as the
/// layers applied so far leave it. Only package databases are kept as
/// bytes (one per path, bounded by [`MAX_FILE`]); a single package's
/// metadata file is parsed when it is added, so memory grows with the
/// number of packages, not with the files' sizes.
#[derive(Debug, Default)]
pub struct Collector {
    databases: BTreeMap<String, Vec<u8>>,
    parsed: BTreeMap<String, Vec<Package>>,
}

impl Collector {
    /// An empty file system.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Whether a cataloguer reads the file at `path` (relative to the
    /// image's root, no leading `/`).
    pub fn wants(path: &str) -> bool {
        is_database(path) || python::wants(path) || npm::wants(path)
    }

    /// How many bytes of the wanted file at `path` to read; a database
    /// larger than this is to be left out ([`Collector::remove`]).
    pub fn read_limit(path: &str) -> u64 {
        if is_database(path) {
            MAX_FILE
        } else {
            MAX_METADATA
        }
    }

    /// A layer holds `path` with `content` (a later layer's copy replaces
    /// an earlier one).
    pub fn add(&mut self, path: &str, content: Vec<u8>) {
        let path = normalize(path);
        if is_database(&path) {
            self.parsed.remove(&path);
            self.databases.insert(path, content);
            return;
        }
        let text = String::from_utf8_lossy(&content);
        let packages = if python::wants(&path) {
            python::parse(&text, &path)
        } else if npm::wants(&path) {
            npm::parse(&text, &path)
        } else {
            Vec::new()
        };
        self.add_binary(&path, packages);
    }

    /// A layer holds the file at `path`, found to hold `packages` (a Go
    /// binary's modules; empty for any other file, which still hides what
    /// a lower layer had there).
    pub fn add_binary(&mut self, path: &str, packages: Vec<Package>) {
        let path = normalize(path);
        self.databases.remove(&path);
        if packages.is_empty() {
            self.parsed.remove(&path);
        } else {
            self.parsed.insert(path, packages);
        }
    }

    /// A layer deletes `path` (a whiteout): the path and all below it.
    pub fn remove(&mut self, path: &str) {
        let path = normalize(path);
        self.databases.remove(&path);
        self.parsed.remove(&path);
        self.remove_below(&path);
    }

    /// A layer replaces the directory `dir` (an opaque directory): what
    /// lower layers had below it is gone. Call before adding that layer's
    /// own files.
    pub fn remove_below(&mut self, dir: &str) {
        let prefix = format!("{}/", normalize(dir));
        remove_prefixed(&mut self.databases, &prefix);
        remove_prefixed(&mut self.parsed, &prefix);
    }

    /// Every package the cataloguers find, sorted.
    pub fn packages(&self) -> Vec<Package> {
        let mut out: Vec<Package> = self.parsed.values().flatten().cloned().collect();
        for (path, content) in &self.databases {
            let text = String::from_utf8_lossy(content);
            if dpkg::wants(path) {
                out.extend(dpkg::parse(&text, path));
            } else if apk::wants(path) {
                out.extend(apk::parse(&text, path));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

fn is_database(path: &str) -> bool {
    dpkg::wants(path) || apk::wants(path)
}

fn remove_prefixed<V>(map: &mut BTreeMap<String, V>, prefix: &str) {
    let doomed: Vec<String> = map
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        map.remove(&k);
    }
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// RFC 822-style paragraphs (`Key: value`, continuation lines starting
/// with a space), separated by blank lines, as dpkg and Python metadata
/// write them. Continuations are joined to their field with a newline.
pub(crate) fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = current.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

pub(crate) fn field<'a>(para: &'a [(String, String)], name: &str) -> Option<&'a str> {
    para.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_and_opaque_directories_remove_lower_files() {
        let mut c = Collector::new();
        c.add(
            "usr/lib/node_modules/a/package.json",
            br#"{"name":"a","version":"1"}"#.to_vec(),
        );
        c.add(
            "usr/lib/node_modules/b/package.json",
            br#"{"name":"b","version":"2"}"#.to_vec(),
        );
        c.add(
            "app/node_modules/c/package.json",
            br#"{"name":"c","version":"3"}"#.to_vec(),
        );
        c.remove("usr/lib/node_modules/a");
        c.remove_below("app");
        let names: Vec<String> = c.packages().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["b"]);
    }
}
