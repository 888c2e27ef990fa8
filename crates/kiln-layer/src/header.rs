//! Deterministic tar headers.
//!
//! Format choice: ustar headers, plus a PAX extended header (`x`) only when an
//! entry needs something ustar cannot hold (a path or link target over 100
//! bytes, ids over 2097151, a size of 8 GiB or more, long user/group names, or
//! any xattr as `SCHILY.xattr.<name>`). This is what Go's `archive/tar` (and so
//! Docker, BuildKit and containerd) writes, so every runtime reads it, and the
//! output is a pure function of the entry: no atime/ctime, no user or group
//! names unless the caller gives them, mtimes in whole seconds (sub-second
//! times would need PAX on every entry and only add churn to reproducible
//! layers), and PAX headers with fixed names, mode and times.
//!
//! Headers are hand-assembled on top of the `tar` crate's raw [`tar::Header`]
//! because its `Builder` picks GNU long-name records and cannot be told to emit
//! a PAX header only when needed.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tar::{EntryType, Header};

/// Tar block size.
pub(crate) const BLOCK: usize = 512;
/// Largest value a 7-digit octal field holds (uid, gid).
const MAX_OCTAL_ID: u64 = 0o7_777_777;
/// Largest value an 11-digit octal field holds (size).
const MAX_OCTAL_SIZE: u64 = 0o77_777_777_777;
/// Length of the ustar name and linkname fields.
const NAME_FIELD: usize = 100;
/// Length of the ustar uname/gname fields (one byte kept for the NUL).
const OWNER_NAME_FIELD: usize = 31;

/// Everything that goes into one entry's header(s).
pub(crate) struct HeaderSpec<'a> {
    /// Entry path: normalized, with a trailing `/` for directories.
    pub path: &'a [u8],
    /// Link target for symlinks and hard links.
    pub link: Option<&'a [u8]>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub device: Option<(u32, u32)>,
    pub uname: Option<&'a str>,
    pub gname: Option<&'a str>,
    pub xattrs: &'a BTreeMap<String, Vec<u8>>,
}

/// Encodes the header block(s) for `spec`: an optional PAX header with its
/// padded records, then the ustar header. The entry's data follows.
pub(crate) fn encode(spec: &HeaderSpec<'_>) -> Vec<u8> {
    let mut records = Vec::new();
    if spec.path.len() > NAME_FIELD {
        pax_record(&mut records, b"path", spec.path);
    }
    if let Some(link) = spec.link.filter(|l| l.len() > NAME_FIELD) {
        pax_record(&mut records, b"linkpath", link);
    }
    if spec.uid > MAX_OCTAL_ID {
        pax_record(&mut records, b"uid", spec.uid.to_string().as_bytes());
    }
    if spec.gid > MAX_OCTAL_ID {
        pax_record(&mut records, b"gid", spec.gid.to_string().as_bytes());
    }
    if spec.size > MAX_OCTAL_SIZE {
        pax_record(&mut records, b"size", spec.size.to_string().as_bytes());
    }
    if let Some(name) = spec.uname.filter(|n| n.len() > OWNER_NAME_FIELD) {
        pax_record(&mut records, b"uname", name.as_bytes());
    }
    if let Some(name) = spec.gname.filter(|n| n.len() > OWNER_NAME_FIELD) {
        pax_record(&mut records, b"gname", name.as_bytes());
    }
    for (name, value) in spec.xattrs {
        let key = format!("SCHILY.xattr.{name}");
        pax_record(&mut records, key.as_bytes(), value);
    }

    let mut out = Vec::with_capacity(BLOCK * 2);
    if !records.is_empty() {
        let mut pax = Header::new_ustar();
        set_name(&mut pax, &pax_header_name(spec.path));
        pax.set_entry_type(EntryType::XHeader);
        pax.set_mode(0o644);
        pax.set_uid(0);
        pax.set_gid(0);
        pax.set_mtime(0);
        pax.set_size(records.len() as u64);
        pax.set_cksum();
        out.extend_from_slice(pax.as_bytes());
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }

    let mut header = Header::new_ustar();
    set_name(&mut header, truncate(spec.path, NAME_FIELD));
    if let Some(link) = spec.link {
        header.as_old_mut().linkname[..].fill(0);
        let link = truncate(link, NAME_FIELD);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    header.set_entry_type(spec.kind);
    header.set_mode(spec.mode & 0o7777);
    header.set_uid(if spec.uid > MAX_OCTAL_ID { 0 } else { spec.uid });
    header.set_gid(if spec.gid > MAX_OCTAL_ID { 0 } else { spec.gid });
    header.set_size(if spec.size > MAX_OCTAL_SIZE {
        0
    } else {
        spec.size
    });
    header.set_mtime(spec.mtime.min(MAX_OCTAL_SIZE));
    if let Some(ustar) = header.as_ustar_mut() {
        if let Some(name) = spec.uname {
            let name = truncate(name.as_bytes(), OWNER_NAME_FIELD);
            ustar.uname[..name.len()].copy_from_slice(name);
        }
        if let Some(name) = spec.gname {
            let name = truncate(name.as_bytes(), OWNER_NAME_FIELD);
            ustar.gname[..name.len()].copy_from_slice(name);
        }
    }
    let (major, minor) = spec.device.unwrap_or((0, 0));
    // Octal fields of 8 bytes hold up to 2097151; larger device numbers are
    // not representable in ustar and do not occur for real devices.
    let _ = header.set_device_major(major.min(MAX_OCTAL_ID as u32));
    let _ = header.set_device_minor(minor.min(MAX_OCTAL_ID as u32));
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out
}

/// Zero bytes needed after `len` data bytes to reach a block boundary.
pub(crate) fn padding(len: u64) -> usize {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the
/// whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The name of the PAX header preceding `path`: `<dir>/PaxHeaders.0/<base>`,
/// as Go writes it, cut to the ustar field.
fn pax_header_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let p = Path::new(std::ffi::OsStr::from_bytes(trimmed));
    let base = p.file_name().map(|b| b.as_bytes()).unwrap_or(b"");
    let mut name = Vec::new();
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        name.extend_from_slice(dir.as_os_str().as_bytes());
        name.push(b'/');
    }
    name.extend_from_slice(b"PaxHeaders.0/");
    name.extend_from_slice(base);
    truncate(&name, NAME_FIELD).to_vec()
}

fn truncate(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

fn set_name(header: &mut Header, name: &[u8]) {
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    let name = truncate(name, NAME_FIELD);
    field[..name.len()].copy_from_slice(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(path: &'a [u8], xattrs: &'a BTreeMap<String, Vec<u8>>) -> HeaderSpec<'a> {
        HeaderSpec {
            path,
            link: None,
            kind: EntryType::Regular,
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            mtime: 1_700_000_000,
            size: 5,
            device: None,
            uname: None,
            gname: None,
            xattrs,
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", b"x");
        assert_eq!(out, b"9 path=x\n");
        // Bodies around the two/three-digit boundary: 98 + 2 digits = 100 has
        // three digits, so the record is 101 bytes long.
        for value_len in [90, 94, 95, 96] {
            let mut out = Vec::new();
            pax_record(&mut out, b"k", &vec![b'v'; value_len]);
            let text = String::from_utf8(out.clone()).unwrap();
            let declared: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(declared, out.len(), "value of {value_len} bytes");
        }
    }

    #[test]
    fn short_entries_have_only_a_ustar_header() {
        let none = BTreeMap::new();
        let bytes = encode(&spec(b"etc/passwd", &none));
        assert_eq!(bytes.len(), BLOCK);
        let header = Header::from_byte_slice(&bytes);
        assert_eq!(header.path_bytes().as_ref(), b"etc/passwd");
        assert_eq!(header.mode().unwrap(), 0o4755);
        assert!(header.username_bytes().unwrap().is_empty());
        assert_eq!(&bytes[257..263], b"ustar\0");
    }

    #[test]
    fn long_paths_and_xattrs_go_to_pax() {
        let mut xattrs = BTreeMap::new();
        xattrs.insert("security.capability".to_string(), vec![1, 0, 0, 2]);
        let long = vec![b'a'; 150];
        let bytes = encode(&spec(&long, &xattrs));
        let pax = Header::from_byte_slice(&bytes[..BLOCK]);
        assert_eq!(pax.entry_type(), EntryType::XHeader);
        let records = &bytes[BLOCK..BLOCK + pax.size().unwrap() as usize];
        let text = String::from_utf8_lossy(records);
        assert!(text.contains(&format!("path={}\n", "a".repeat(150))));
        assert!(text.contains("SCHILY.xattr.security.capability="));
        assert_eq!(bytes.len() % BLOCK, 0);
    }
}
