//! Go binaries: the build information the Go linker embeds (since Go 1.18
//! inline in the `.go.buildinfo` data: a 32-byte header starting with
//! `\xff Go buildinf:`, 16-byte aligned, then the Go version and the module
//! list as length-prefixed strings). What `go version -m BINARY` prints:
//! the Go release (as the package `stdlib`), the main module (or the main
//! package's path when it was built outside module mode, as Debian builds
//! are), and every dependency, a `=>` replacement taking its place.
//!
//! The magic is searched at 16-byte-aligned offsets of ELF files rather
//! than through the section table: a stripped binary keeps the data but
//! not always its section name. Binaries of Go before 1.18 (pointer-based
//! build info) are not read.

use super::Package;
use crate::purl;
use std::io::{self, Read};

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER: usize = 32;
/// The flag bit saying the strings follow the header inline (Go 1.18+).
const INLINE: u8 = 0x2;

/// How much of the file after the magic is read for the version and
/// module list (a large program's list is a few KiB).
const MAX_INFO: usize = 1 << 20;
/// The read size while searching.
const CHUNK: usize = 1 << 20;

/// [`parse`] over a stream, holding at most a few MiB whatever the file's
/// size: `reader` is read from the file's start until the build
/// information is found and read, or to its end.
///
/// # Errors
/// Reading `reader`.
pub fn parse_stream(reader: &mut dyn Read, path: &str) -> io::Result<Vec<Package>> {
    // `window` holds the file's unsearched bytes, from a 16-aligned offset.
    let mut window: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut chunk = vec![0u8; CHUNK];
    let mut eof = false;
    loop {
        if !eof {
            let n = read_full(reader, &mut chunk)?;
            eof = n < CHUNK;
            window.extend_from_slice(&chunk[..n]);
        }
        let found = (0..window.len().saturating_sub(HEADER))
            .step_by(16)
            .find(|&i| window[i..].starts_with(MAGIC));
        if let Some(at) = found {
            // The header and what follows it, up to MAX_INFO.
            let mut info = window.split_off(at);
            let want = HEADER + MAX_INFO;
            if info.len() < want && !eof {
                let mut rest = Vec::new();
                reader
                    .take((want - info.len()) as u64)
                    .read_to_end(&mut rest)?;
                info.extend(rest);
            }
            return Ok(parse(&info, path));
        }
        if eof {
            return Ok(Vec::new());
        }
        // Keep the unsearched tail (less than a header, 16-aligned).
        let keep_from = window.len().saturating_sub(HEADER) / 16 * 16;
        window.drain(..keep_from);
    }
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether `prefix` (a file's first bytes) starts an ELF file.
pub fn is_elf(prefix: &[u8]) -> bool {
    prefix.starts_with(b"\x7fELF")
}

/// The Go modules `binary` was built from; empty when it is not a Go
/// binary (or one before Go 1.18).
pub fn parse(binary: &[u8], path: &str) -> Vec<Package> {
    let Some(at) = (0..binary.len().saturating_sub(HEADER))
        .step_by(16)
        .find(|&i| binary[i..].starts_with(MAGIC))
    else {
        return Vec::new();
    };
    let flags = binary[at + 15];
    if flags & INLINE == 0 {
        return Vec::new();
    }
    let mut rest = &binary[at + HEADER..];
    let (Some(version), Some(modinfo)) = (string(&mut rest), string(&mut rest)) else {
        return Vec::new();
    };
    let version = String::from_utf8_lossy(version).into_owned();
    // The module list sits between two 16-byte sentinels.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let modinfo = String::from_utf8_lossy(modinfo);
    let found_in = format!("/{path}");
    let package = |name: &str, version: &str| Package {
        ecosystem: "go",
        name: name.to_string(),
        version: version.to_string(),
        purl: go_purl(name, version),
        license: None,
        supplier: None,
        found_in: found_in.clone(),
    };
    let mut out = vec![package("stdlib", &version)];
    let mut main_path = None;
    let mut has_main_module = false;
    for line in modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["path", p, ..] => main_path = Some(p.to_string()),
            ["mod", p, v, ..] => {
                has_main_module = true;
                out.push(package(p, v));
            }
            ["dep", p, v, ..] => out.push(package(p, v)),
            ["=>", p, v, ..] => {
                // Replaces the dependency just listed.
                if out.len() > 1 {
                    out.pop();
                }
                out.push(package(p, v));
            }
            _ => {}
        }
    }
    if !has_main_module {
        if let Some(p) = main_path {
            out.push(package(&p, "(devel)"));
        }
    }
    out
}

/// A uvarint-length-prefixed string, advancing `rest`.
fn string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        len |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    if rest.len() < len {
        return None;
    }
    let (s, tail) = rest.split_at(len);
    *rest = tail;
    Some(s)
}

/// `pkg:golang/PATH@VERSION`; the module path's last element is the name.
fn go_purl(path: &str, version: &str) -> String {
    let (namespace, name) = match path.rsplit_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, path),
    };
    let version = if version == "(devel)" { "" } else { version };
    purl::package("golang", namespace, name, version, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varstr(s: &[u8]) -> Vec<u8> {
        let mut out = vec![];
        let mut n = s.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(s);
        out
    }

    fn binary(modinfo: &str) -> Vec<u8> {
        let mut b = b"\x7fELF".to_vec();
        b.resize(4096, 0);
        let mut header = MAGIC.to_vec();
        header.extend([8, INLINE]);
        header.resize(HEADER, 0);
        b.extend(header);
        b.extend(varstr(b"go1.22.3"));
        let mut info = vec![0x30; 16];
        info.extend_from_slice(modinfo.as_bytes());
        info.extend(vec![0xf9; 16]);
        b.extend(varstr(&info));
        b.extend(vec![0; 100]);
        b
    }

    #[test]
    fn modules_of_a_module_mode_binary() {
        let bin = binary(
            "path\texample.com/app/cmd/app\nmod\texample.com/app\tv1.2.3\th1:x=\n\
             dep\tgolang.org/x/sys\tv0.20.0\th1:y=\n\
             dep\tgithub.com/old/lib\tv1.0.0\t\n=>\tgithub.com/fork/lib\tv1.0.1\th1:z=\n\
             build\tGOOS=linux\n",
        );
        assert!(is_elf(&bin));
        let got: Vec<(String, String)> = parse(&bin, "usr/bin/app")
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        let want = [
            ("stdlib", "go1.22.3"),
            ("example.com/app", "v1.2.3"),
            ("golang.org/x/sys", "v0.20.0"),
            ("github.com/fork/lib", "v1.0.1"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
        let sys = &parse(&bin, "usr/bin/app")[2];
        assert_eq!(sys.purl, "pkg:golang/golang.org/x/sys@v0.20.0");
    }

    #[test]
    fn the_stream_finds_build_information_past_its_chunks() {
        let modinfo = "path\texample.com/app\nmod\texample.com/app\tv1.0.0\t\n";
        let small = binary(modinfo);
        // The same information 3 MiB and 8 bytes in: across chunk ends,
        // still 16-byte aligned as the linker places it.
        let mut big = b"\x7fELF".to_vec();
        big.resize(3 * CHUNK + 16 - HEADER / 2, 7);
        big.resize(big.len().next_multiple_of(16), 7);
        big.extend_from_slice(&small[4096..]);
        for bytes in [&small, &big] {
            let got = parse_stream(&mut bytes.as_slice(), "app").unwrap();
            assert_eq!(got, parse(bytes, "app"));
            assert_eq!(got.len(), 2, "{got:?}");
        }
        assert!(parse_stream(&mut vec![0u8; 5 * CHUNK].as_slice(), "x")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_gopath_build_names_its_main_package() {
        let bin = binary("path\tgithub.com/opencontainers/umoci/cmd/umoci\nbuild\tGOOS=linux\n");
        let got: Vec<String> = parse(&bin, "usr/bin/umoci")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(got, ["stdlib", "github.com/opencontainers/umoci/cmd/umoci"]);
        assert!(parse(b"\x7fELF not go at all", "x").is_empty());
    }
}
