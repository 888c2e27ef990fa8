//! Parallel gzip output read by outside readers. (Throughput figures come
//! from `cargo run --release -p kiln-layer --example gzip_throughput`.)

use kiln_image_spec::media::Compression;
use kiln_layer::pgzip::BLOCK_SIZE;
use kiln_layer::{Entry, EntryKind, EntryMeta, LayerOptions, LayerWriter};
use std::io::Read;
use std::process::Command;

/// Mildly compressible bytes, like binaries and text in a real layer.
fn sample(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let words: [&[u8]; 6] = [
        b"usr/lib/",
        b"\x00\x00\x00\x00",
        b"kiln ",
        b"layer\n",
        b"\x7fELF",
        b"0123456789",
    ];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 3 {
            0 => out.push((state >> 24) as u8),
            _ => out.extend_from_slice(words[(state % 6) as usize]),
        }
    }
    out.truncate(len);
    out
}

#[test]
fn big_layer_is_read_by_system_gzip_and_tar() {
    let dir = tempfile::tempdir().unwrap();
    let content = sample(5 * BLOCK_SIZE + 1234);
    let mut w = LayerWriter::new(
        dir.path(),
        &LayerOptions::new(Compression::Gzip).with_threads(2),
    )
    .unwrap();
    let entry = Entry::new(
        "data/big.bin",
        EntryKind::File {
            size: content.len() as u64,
        },
        EntryMeta::with_mode(0o644),
    );
    w.append(&entry, Some(&mut &content[..])).unwrap();
    let blob = w.finish().unwrap();

    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&blob.path)
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "data/big.bin\n");
    let test = Command::new("gzip")
        .arg("-t")
        .arg(&blob.path)
        .status()
        .unwrap();
    assert!(test.success());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc < {} | tar -xOf - data/big.bin",
            blob.path.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout == content, "extracted content differs");

    let mut multi = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&blob.path).unwrap())
        .read_to_end(&mut multi)
        .unwrap();
    assert_eq!(kiln_image_spec::Digest::sha256_of(&multi), blob.diff_id);
}
