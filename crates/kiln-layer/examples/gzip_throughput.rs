//! Compression throughput on real bytes: kiln's parallel gzip with one
//! thread and with every core, beside flate2's single-threaded encoder and
//! multi-threaded zstd, all at the levels kiln uses.
//!
//! `cargo run --release -p kiln-layer --example gzip_throughput [DIR]`
//! compresses up to 64 MiB of the regular files under DIR (default
//! `/usr/lib`), the mix of binaries and text a real layer holds.

use kiln_layer::pgzip::{Deflate, GzipWriter};
use std::io::Write;
use std::time::Instant;

const LIMIT: usize = 64 << 20;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/usr/lib".into());
    let mut data = Vec::with_capacity(LIMIT);
    for entry in walkdir::WalkDir::new(&dir).into_iter().flatten() {
        if data.len() >= LIMIT {
            break;
        }
        if entry.file_type().is_file() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                data.extend_from_slice(&bytes[..bytes.len().min(LIMIT - data.len())]);
            }
        }
    }
    let mb = data.len() as f64 / 1e6;
    println!("{mb:.1} MB from {dir}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate = |name: &str, run: &dyn Fn()| {
        let start = Instant::now();
        run();
        println!("{name}: {:.0} MB/s", mb / start.elapsed().as_secs_f64());
    };
    for threads in [1, cores] {
        rate(
            &format!("parallel gzip, level 6, {threads} thread(s)"),
            &|| {
                let mut w = GzipWriter::new(
                    std::io::sink(),
                    flate2::Compression::new(6),
                    threads,
                    Deflate::Portable,
                )
                .unwrap();
                w.write_all(&data).unwrap();
                w.finish().unwrap();
            },
        );
    }
    rate("flate2 GzEncoder, level 6", &|| {
        let mut w = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(6));
        w.write_all(&data).unwrap();
        w.finish().unwrap();
    });
    rate(&format!("zstd level 3, {cores} worker(s)"), &|| {
        let mut z = zstd::stream::write::Encoder::new(std::io::sink(), 3).unwrap();
        z.multithread(cores as u32).unwrap();
        z.write_all(&data).unwrap();
        z.finish().unwrap();
    });
}
