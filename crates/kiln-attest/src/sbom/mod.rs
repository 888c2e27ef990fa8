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

/// Largest file a cataloguer reads: a package database larger than this is
/// not a real one.
pub const MAX_FILE: u64 = 64 << 20;

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Which cataloguer found it (`dpkg`, `apk`, `python`, `npm`).
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

/// The files the cataloguers read, as the final image holds them.
#[derive(Debug, Default)]
pub struct Collector {
    files: BTreeMap<String, Vec<u8>>,
    /// Packages read from binaries already (their content is not kept).
    binaries: BTreeMap<String, Vec<Package>>,
}

impl Collector {
    /// An empty file system.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Whether a cataloguer reads the file at `path` (relative to the
    /// image's root, no leading `/`).
    pub fn wants(path: &str) -> bool {
        dpkg::wants(path) || apk::wants(path) || python::wants(path) || npm::wants(path)
    }

    /// A layer holds `path` with `content` (a later layer's copy replaces
    /// an earlier one).
    pub fn add(&mut self, path: &str, content: Vec<u8>) {
        let path = normalize(path);
        self.binaries.remove(&path);
        self.files.insert(path, content);
    }

    /// A layer holds the binary at `path`, built from `packages` (empty
    /// when it is not one a cataloguer reads: it still hides a lower one).
    pub fn add_binary(&mut self, path: &str, packages: Vec<Package>) {
        let path = normalize(path);
        self.files.remove(&path);
        if packages.is_empty() {
            self.binaries.remove(&path);
        } else {
            self.binaries.insert(path, packages);
        }
    }

    /// A layer deletes `path` (a whiteout): the path and all below it.
    pub fn remove(&mut self, path: &str) {
        let path = normalize(path);
        self.files.remove(&path);
        self.binaries.remove(&path);
        self.remove_below(&path);
    }

    /// A layer replaces the directory `dir` (an opaque directory): what
    /// lower layers had below it is gone. Call before adding that layer's
    /// own files.
    pub fn remove_below(&mut self, dir: &str) {
        let prefix = format!("{}/", normalize(dir));
        let doomed: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
        let doomed: Vec<String> = self
            .binaries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.binaries.remove(&k);
        }
    }

    /// Every package the cataloguers find, sorted.
    pub fn packages(&self) -> Vec<Package> {
        let mut out: Vec<Package> = self.binaries.values().flatten().cloned().collect();
        for (path, content) in &self.files {
            let text = String::from_utf8_lossy(content);
            if dpkg::wants(path) {
                out.extend(dpkg::parse(&text, path));
            } else if apk::wants(path) {
                out.extend(apk::parse(&text, path));
            } else if python::wants(path) {
                out.extend(python::parse(&text, path));
            } else if npm::wants(path) {
                out.extend(npm::parse(&text, path));
            }
        }
        out.sort();
        out.dedup();
        out
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
