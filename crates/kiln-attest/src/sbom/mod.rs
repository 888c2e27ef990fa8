//! The SBOM: which packages and files an image's file system holds, as
//! SPDX 2.3 JSON.
//!
//! The image is read as its layers, bottom first: [`Collector`] keeps the
//! content of the few files a cataloguer reads ([`Collector::wants`]) and
//! every regular file's checksums ([`files`]), applying each layer's
//! whiteouts, so the result is what the final image holds without
//! unpacking it. Then each cataloguer reads its files:
//!
//! | cataloguer | reads | finds |
//! | --- | --- | --- |
//! | [`dpkg`] | `var/lib/dpkg/status`, `var/lib/dpkg/status.d/*` | Debian packages in state `installed` (and the half-installed states dpkg-query lists) |
//! | [`apk`] | `lib/apk/db/installed` | Alpine packages |
//! | [`python`] | `…/site-packages/*.dist-info/METADATA`, `…/*.egg-info/PKG-INFO` (or an `.egg-info` file), also under `dist-packages` | installed Python distributions |
//! | [`npm`] | `…/node_modules/NAME/package.json`, `…/node_modules/@SCOPE/NAME/package.json` | npm packages |
//! | [`golang`] | every ELF file with an execute bit | Go binaries' modules and Go release |
//! | [`files`] | every regular file; `var/lib/dpkg/info/*.list`, `…/*.dist-info/RECORD`, apk's `F:`/`R:` lines | each file's SHA-1 and SHA-256, and the dpkg or apk package or Python distribution listing it |
//!
//! The database formats are small line formats; the crates that read them
//! (e.g. `debian-control`) bring a parser framework each for a few dozen
//! lines, so they are read here.

pub mod apk;
pub mod dpkg;
pub mod files;
pub mod golang;
pub mod npm;
pub mod python;
mod spdx;

pub use files::Digests;
pub use spdx::{document, DocumentInfo};

use files::{FileList, Owner};
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

/// A regular file of the image, as the SBOM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Its absolute path.
    pub path: String,
    /// Its checksums.
    pub digests: Digests,
    /// The packages (indexes into [`Inventory::packages`]) whose database
    /// lists it; empty when none does.
    pub owners: Vec<usize>,
}

/// What the image holds: its packages, sorted, and its regular files, by
/// path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every package the cataloguers found.
    pub packages: Vec<Package>,
    /// Every regular file.
    pub files: Vec<ImageFile>,
}

/// A non-directory the layers leave at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Digests),
    Symlink(String),
    /// A device, FIFO or socket: not a regular file, but it hides one.
    Other,
}

/// What the cataloguers found so far, by the path that holds it, as the
/// layers applied so far leave it. Only package databases are kept as
/// bytes (one per path, bounded by [`MAX_FILE`]); a single package's
/// metadata file (or its list of files) is parsed when it is added, so
/// memory grows with the number of packages and files, not with the
/// files' sizes.
#[derive(Debug, Default)]
pub struct Collector {
    databases: BTreeMap<String, Vec<u8>>,
    parsed: BTreeMap<String, Vec<Package>>,
    lists: BTreeMap<String, FileList>,
    nodes: BTreeMap<String, Node>,
}

impl Collector {
    /// An empty file system.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Whether a cataloguer reads the file at `path` (relative to the
    /// image's root, no leading `/`).
    pub fn wants(path: &str) -> bool {
        is_database(path) || python::wants(path) || npm::wants(path) || files::is_list(path)
    }

    /// How many bytes of the wanted file at `path` to read; a database
    /// larger than this is to be left out ([`Collector::remove`]).
    pub fn read_limit(path: &str) -> u64 {
        if is_database(path) || files::is_list(path) {
            MAX_FILE
        } else {
            MAX_METADATA
        }
    }

    /// A layer holds `path` with `content` (a later layer's copy replaces
    /// an earlier one). The file itself is recorded by [`Collector::add_file`].
    pub fn add(&mut self, path: &str, content: Vec<u8>) {
        let path = normalize(path);
        if is_database(&path) {
            self.parsed.remove(&path);
            self.lists.remove(&path);
            self.databases.insert(path, content);
            return;
        }
        let text = String::from_utf8_lossy(&content);
        if let Some(list) = files::parse_list(&text, &path) {
            self.parsed.remove(&path);
            self.databases.remove(&path);
            self.lists.insert(path, list);
            return;
        }
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
        self.lists.remove(&path);
        if packages.is_empty() {
            self.parsed.remove(&path);
        } else {
            self.parsed.insert(path, packages);
        }
    }

    /// A layer holds a regular file at `path` with these checksums: it
    /// replaces what a lower layer had at `path`, a directory with all
    /// below it too.
    pub fn add_file(&mut self, path: &str, digests: Digests) {
        let path = normalize(path);
        self.remove_below(&path);
        self.nodes.insert(path, Node::File(digests));
    }

    /// The checksums of the regular file at `path`, if there is one (a
    /// hard link's target).
    pub fn file(&self, path: &str) -> Option<Digests> {
        match self.nodes.get(&normalize(path)) {
            Some(Node::File(d)) => Some(*d),
            _ => None,
        }
    }

    /// A layer holds a symbolic link at `path`.
    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.remove(path);
        self.nodes
            .insert(normalize(path), Node::Symlink(target.to_string()));
    }

    /// A layer holds a device, FIFO or socket at `path`.
    pub fn add_other(&mut self, path: &str) {
        self.remove(path);
        self.nodes.insert(normalize(path), Node::Other);
    }

    /// A layer holds a directory at `path`: a file a lower layer had there
    /// is gone (what a lower directory held stays).
    pub fn add_directory(&mut self, path: &str) {
        let path = normalize(path);
        self.nodes.remove(&path);
        self.databases.remove(&path);
        self.parsed.remove(&path);
        self.lists.remove(&path);
    }

    /// A layer deletes `path` (a whiteout): the path and all below it.
    pub fn remove(&mut self, path: &str) {
        let path = normalize(path);
        self.databases.remove(&path);
        self.parsed.remove(&path);
        self.lists.remove(&path);
        self.nodes.remove(&path);
        self.remove_below(&path);
    }

    /// A layer replaces the directory `dir` (an opaque directory): what
    /// lower layers had below it is gone. Call before adding that layer's
    /// own files.
    pub fn remove_below(&mut self, dir: &str) {
        let prefix = format!("{}/", normalize(dir));
        remove_prefixed(&mut self.databases, &prefix);
        remove_prefixed(&mut self.parsed, &prefix);
        remove_prefixed(&mut self.lists, &prefix);
        remove_prefixed(&mut self.nodes, &prefix);
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

    /// The packages and the regular files, each file with the packages
    /// whose databases list it.
    pub fn inventory(&self) -> Inventory {
        let packages = self.packages();
        let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let apk_lists: Vec<FileList> = self
            .databases
            .iter()
            .filter(|(path, _)| apk::wants(path))
            .flat_map(|(_, content)| apk::file_lists(&String::from_utf8_lossy(content)))
            .collect();
        for list in self.lists.values().chain(&apk_lists) {
            let Some(owner) = packages.iter().position(|p| owns(&list.owner, p)) else {
                continue;
            };
            for path in &list.paths {
                let Some(resolved) = self.resolve_dirs(path) else {
                    continue;
                };
                if matches!(self.nodes.get(&resolved), Some(Node::File(_))) {
                    let o = owners.entry(resolved).or_default();
                    if !o.contains(&owner) {
                        o.push(owner);
                    }
                }
            }
        }
        let files = self
            .nodes
            .iter()
            .filter_map(|(path, node)| match node {
                Node::File(digests) => Some(ImageFile {
                    path: format!("/{path}"),
                    digests: *digests,
                    owners: owners.remove(path).unwrap_or_default(),
                }),
                _ => None,
            })
            .collect();
        Inventory { packages, files }
    }

    /// `path` with its directories' symbolic links followed (not the last
    /// component's), as the image resolves it; `None` for a loop or a path
    /// climbing out of the root.
    fn resolve_dirs(&self, path: &str) -> Option<String> {
        let mut pending: Vec<String> = path
            .split('/')
            .rev()
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    done.pop()?;
                    continue;
                }
                _ => {}
            }
            done.push(part);
            if pending.is_empty() {
                break;
            }
            let here = done.join("/");
            if let Some(Node::Symlink(target)) = self.nodes.get(&here) {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .rev()
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                );
            }
        }
        Some(done.join("/"))
    }
}

/// Whether the owner a file list names is `package`.
fn owns(owner: &Owner, package: &Package) -> bool {
    match owner {
        Owner::Dpkg { name, arch } => {
            package.ecosystem == "dpkg"
                && package.name == *name
                && arch
                    .as_ref()
                    .is_none_or(|a| package.purl.contains(&format!("arch={a}")))
        }
        Owner::Apk { name } => package.ecosystem == "apk" && package.name == *name,
        Owner::FoundIn(found_in) => package.found_in == *found_in,
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

    #[test]
    fn files_are_what_the_last_layer_left_with_their_owners() {
        let d = |s: &str| Digests::of(s.as_bytes());
        let mut c = Collector::new();
        // Lower layer: a merged-/usr Debian with bash, a file and a
        // directory that the upper layer replaces, and one it deletes.
        c.add_symlink("bin", "usr/bin");
        c.add_file("usr/bin/bash", d("bash v1"));
        c.add_file("etc/old", d("old"));
        c.add_file("opt/tool/lib.so", d("lib"));
        c.add_file("srv/data", d("data"));
        c.add_file("var/cache/a", d("a"));
        let status =
            "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5\n";
        c.add("var/lib/dpkg/status", status.as_bytes().to_vec());
        c.add_file("var/lib/dpkg/status", d(status));
        let list = "/.\n/bin\n/bin/bash\n/etc/gone\n";
        c.add("var/lib/dpkg/info/bash.list", list.as_bytes().to_vec());
        c.add_file("var/lib/dpkg/info/bash.list", d(list));
        // Upper layer.
        c.remove_below("var/cache");
        c.remove("etc/old");
        c.add_file("usr/bin/bash", d("bash v2"));
        c.add_file("opt/tool", d("now a file"));
        c.add_directory("srv/data");
        c.add_file("srv/data/x", d("x"));
        let hard = c.file("usr/bin/bash").unwrap();
        c.add_file("usr/bin/sh", hard);

        let inv = c.inventory();
        let paths: Vec<&str> = inv.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/opt/tool",
                "/srv/data/x",
                "/usr/bin/bash",
                "/usr/bin/sh",
                "/var/lib/dpkg/info/bash.list",
                "/var/lib/dpkg/status",
            ]
        );
        let bash = &inv.files[2];
        assert_eq!(bash.digests, d("bash v2"));
        assert_eq!(inv.files[3].digests, d("bash v2"));
        assert_eq!(inv.packages[bash.owners[0]].name, "bash");
        assert!(inv.files[3].owners.is_empty());
        // apk's database names its packages' files itself.
        let apk = "P:musl\nV:1.2\nA:x86_64\nF:lib\nR:ld-musl.so.1\n\n";
        c.add("lib/apk/db/installed", apk.as_bytes().to_vec());
        c.add_file("lib/apk/db/installed", d(apk));
        c.add_file("lib/ld-musl.so.1", d("musl"));
        let inv = c.inventory();
        let musl = inv
            .files
            .iter()
            .find(|f| f.path == "/lib/ld-musl.so.1")
            .unwrap();
        assert_eq!(inv.packages[musl.owners[0]].name, "musl");
        c.remove("lib");
        // A file list whose package is not installed owns nothing.
        c.remove("var/lib/dpkg/status");
        assert!(c.inventory().files.iter().all(|f| f.owners.is_empty()));
    }
}
