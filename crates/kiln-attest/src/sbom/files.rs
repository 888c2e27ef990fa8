//! The image's regular files for the SBOM: each file's SHA-1 (which SPDX
//! 2.3 requires of every file) and SHA-256, computed by [`HashingReader`]
//! as the layer walk streams the file's bytes past (what a cataloguer reads
//! of a file is hashed on the way, the rest drained through the hashers),
//! so no layer is read twice.
//!
//! Which package a file belongs to comes from the package databases that
//! list their files: dpkg's `var/lib/dpkg/info/PACKAGE[:ARCH].list`, a
//! Python distribution's `*.dist-info/RECORD`, and apk's database itself
//! ([`super::apk::file_lists`]). Their paths are resolved
//! through the image's symbolic links to directories (a Debian package
//! lists `/bin/bash`, which a merged-`/usr` image holds as `/usr/bin/bash`).

use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

/// A file's checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    /// SHA-1 of the content.
    pub sha1: [u8; 20],
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
}

impl Digests {
    /// The checksums of `bytes`.
    pub fn of(bytes: &[u8]) -> Digests {
        let mut r = HashingReader::new(bytes);
        r.finish().expect("reading a slice does not fail")
    }
}

/// Hashes what is read through it.
pub struct HashingReader<R> {
    inner: R,
    sha1: Sha1,
    sha256: Sha256,
}

impl<R: Read> HashingReader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            sha1: Sha1::new(),
            sha256: Sha256::new(),
        }
    }

    /// Reads what is left of the content and returns the checksums of all
    /// of it.
    ///
    /// # Errors
    /// Reading the inner reader.
    pub fn finish(&mut self) -> io::Result<Digests> {
        io::copy(self, &mut io::sink())?;
        Ok(Digests {
            sha1: self.sha1.clone().finalize().into(),
            sha256: self.sha256.clone().finalize().into(),
        })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha1.update(&buf[..n]);
        self.sha256.update(&buf[..n]);
        Ok(n)
    }
}

/// Who lists a set of files as theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A Debian package, by name and (for a multi-arch list) architecture.
    Dpkg {
        /// The package's name.
        name: String,
        /// The `:ARCH` of the list's name.
        arch: Option<String>,
    },
    /// An Alpine package, by name.
    Apk {
        /// The package's name.
        name: String,
    },
    /// The package found in this metadata file (absolute path).
    FoundIn(String),
}

/// A package database's list of one package's files: the owner and the
/// paths, relative to the image's root, not yet resolved through links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileList {
    /// Whose files they are.
    pub owner: Owner,
    /// The files, without a leading `/`.
    pub paths: Vec<String>,
}

/// Whether the file at `path` lists a package's files.
pub fn is_list(path: &str) -> bool {
    dpkg_list_owner(path).is_some() || record_metadata(path).is_some()
}

/// Parses the list at `path`.
pub fn parse_list(text: &str, path: &str) -> Option<FileList> {
    if let Some(owner) = dpkg_list_owner(path) {
        let paths = text
            .lines()
            .filter_map(|l| l.strip_prefix('/'))
            .filter(|l| !l.is_empty() && *l != ".")
            .map(str::to_string)
            .collect();
        return Some(FileList { owner, paths });
    }
    let metadata = record_metadata(path)?;
    // RECORD is CSV: the first field is the path, relative to the
    // directory holding the `.dist-info` directory.
    let base = path.rsplitn(3, '/').nth(2).unwrap_or("");
    let paths = text
        .lines()
        .filter_map(csv_first_field)
        .filter(|p| !p.is_empty() && !p.starts_with('/'))
        .filter_map(|p| lexical_join(base, &p))
        .collect();
    Some(FileList {
        owner: Owner::FoundIn(format!("/{metadata}")),
        paths,
    })
}

/// `var/lib/dpkg/info/NAME[:ARCH].list` names NAME's files.
fn dpkg_list_owner(path: &str) -> Option<Owner> {
    let file = path.strip_prefix("var/lib/dpkg/info/")?;
    let stem = file.strip_suffix(".list").filter(|s| !s.contains('/'))?;
    let (name, arch) = match stem.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (stem, None),
    };
    (!name.is_empty()).then(|| Owner::Dpkg {
        name: name.to_string(),
        arch,
    })
}

/// For `…/X.dist-info/RECORD` in a packages directory, the `METADATA`
/// beside it (where the Python cataloguer found the distribution).
fn record_metadata(path: &str) -> Option<String> {
    let metadata = format!("{}/METADATA", path.strip_suffix("/RECORD")?);
    super::python::wants(&metadata).then_some(metadata)
}

/// The first field of a CSV line: quoted (`"a,""b"""`) or plain.
/// Hand-written: RECORD's paths are its only field read here.
fn csv_first_field(line: &str) -> Option<String> {
    let Some(quoted) = line.strip_prefix('"') else {
        return line.split(',').next().map(str::to_string);
    };
    let mut out = String::new();
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// `base/rel` with `.` and `..` taken away as Python's `normpath` does;
/// `None` when it climbs above the root.
pub(crate) fn lexical_join(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_include_what_was_read_and_the_rest() {
        let content = b"hello world\n".repeat(10_000);
        let mut r = HashingReader::new(&content[..]);
        let mut head = [0u8; 5];
        r.read_exact(&mut head).unwrap();
        let d = r.finish().unwrap();
        assert_eq!(d, Digests::of(&content));
        assert_eq!(
            hex::encode(Digests::of(b"abc").sha1),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(Digests::of(b"abc").sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn dpkg_lists_and_python_records_name_their_owner_and_files() {
        let l = parse_list(
            "/.\n/usr\n/usr/bin\n/usr/bin/bash\n",
            "var/lib/dpkg/info/bash.list",
        )
        .unwrap();
        assert_eq!(
            l.owner,
            Owner::Dpkg {
                name: "bash".into(),
                arch: None
            }
        );
        assert_eq!(l.paths, ["usr", "usr/bin", "usr/bin/bash"]);
        let l = parse_list("/lib/x\n", "var/lib/dpkg/info/libc6:amd64.list").unwrap();
        assert_eq!(
            l.owner,
            Owner::Dpkg {
                name: "libc6".into(),
                arch: Some("amd64".into())
            }
        );
        assert!(!is_list("var/lib/dpkg/info/bash.md5sums"));
        assert!(!is_list("var/lib/dpkg/info/sub/bash.list"));

        let record = "six.py,sha256=abc,123\n\
                      \"odd,name.py\",,\n\
                      six-1.0.dist-info/RECORD,,\n\
                      ../../../bin/six-tool,sha256=x,1\n\
                      ../../../../../../etc/passwd,,\n";
        let path = "usr/local/lib/python3.12/site-packages/six-1.0.dist-info/RECORD";
        assert!(is_list(path));
        let l = parse_list(record, path).unwrap();
        assert_eq!(
            l.owner,
            Owner::FoundIn(
                "/usr/local/lib/python3.12/site-packages/six-1.0.dist-info/METADATA".into()
            )
        );
        assert_eq!(
            l.paths,
            [
                "usr/local/lib/python3.12/site-packages/six.py",
                "usr/local/lib/python3.12/site-packages/odd,name.py",
                "usr/local/lib/python3.12/site-packages/six-1.0.dist-info/RECORD",
                "usr/local/bin/six-tool",
            ]
        );
        assert!(!is_list(
            "usr/lib/python3/dist-packages/pkg/x.dist-info/RECORD"
        ));
    }
}
