//! Base images pushed to the benchmark registry: busybox, busybox plus
//! random-content layers (cached as OCI layouts under `bench/work/bases`),
//! and the Debian bookworm base with python3 (cached by kiln-testkit).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use kiln_testkit::layout::{media, LayerBuilder, LayoutWriter};
use kiln_testkit::{
    add_busybox_rootfs, skopeo_copy_with, Access, BaseImage, CopyOptions, Platform, Registry,
    BUSYBOX_PATH_ENV,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Opts;

/// Size of each random-content layer of the large bases.
const CHUNK_MIB: usize = 100;

/// Bases pushed so far (name -> full reference).
pub struct Bases<'a> {
    opts: &'a Opts,
    reg: &'a Registry,
    pushed: HashMap<String, String>,
}

impl<'a> Bases<'a> {
    /// No bases pushed yet.
    pub fn new(opts: &'a Opts, reg: &'a Registry) -> Self {
        Self {
            opts,
            reg,
            pushed: HashMap::new(),
        }
    }

    /// The busybox base.
    pub fn busybox(&mut self) -> Result<String> {
        if let Some(r) = self.pushed.get("busybox") {
            return Ok(r.clone());
        }
        let img = BaseImage::busybox()?;
        let r = img.push_to(self.reg, "bench/busybox:latest")?;
        self.pushed.insert("busybox".into(), r.clone());
        Ok(r)
    }

    /// busybox for this machine's platform and a foreign one (arm64 on
    /// x86-64), as one index: the base of the two-platform workload.
    pub fn busybox_two_platforms(&mut self) -> Result<String> {
        if let Some(r) = self.pushed.get("busybox-multi") {
            return Ok(r.clone());
        }
        let img = BaseImage::busybox_for_platforms(&[Platform::host(), Platform::foreign()])?;
        let r = img.push_to(self.reg, "bench/busybox:multi")?;
        self.pushed.insert("busybox-multi".into(), r.clone());
        Ok(r)
    }

    /// Debian bookworm with python3, venv and pip.
    pub fn debian(&mut self) -> Result<String> {
        if let Some(r) = self.pushed.get("debian") {
            return Ok(r.clone());
        }
        let img = debian_base()?;
        let r = img.push_to(self.reg, "bench/debian:bookworm")?;
        self.pushed.insert("debian".into(), r.clone());
        Ok(r)
    }

    /// busybox plus `chunks` layers of 100 MiB of random bytes each.
    pub fn busybox_plus(&mut self, chunks: usize) -> Result<String> {
        let name = format!("busybox-plus-{chunks}x{CHUNK_MIB}mib");
        if let Some(r) = self.pushed.get(&name) {
            return Ok(r.clone());
        }
        let dir = self.opts.work.join("bases").join(&name);
        if !dir.join("index.json").exists() {
            eprintln!("==> making base {name} (cached in {})", dir.display());
            make_big_base(&dir, chunks)?;
        }
        let full = self.reg.image_ref(&format!("bench/{name}:latest"));
        let opts = CopyOptions {
            dest: Access::for_registry(self.reg),
            preserve_digests: true,
            ..CopyOptions::default()
        };
        skopeo_copy_with(
            &format!("oci:{}:latest", dir.display()),
            &format!("docker://{full}"),
            &opts,
        )
        .with_context(|| format!("pushing {name}"))?;
        self.pushed.insert(name, full.clone());
        Ok(full)
    }
}

fn debian_base() -> Result<BaseImage> {
    eprintln!("==> Debian bookworm base with python3 (made once per machine by kiln-testkit)");
    BaseImage::debian()
}

/// A deterministic, incompressible byte stream (xorshift64*).
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn make_big_base(dir: &Path, chunks: usize) -> Result<()> {
    let tmp = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let mut w = LayoutWriter::create(&tmp)?;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();

    let mut b = LayerBuilder::new();
    add_busybox_rootfs(&mut b)?;
    let bb = b.finish()?;
    layers.push(w.write_blob(media::LAYER_GZIP, &bb.gzip)?.to_json());
    diff_ids.push(bb.diff_id);

    for k in 0..chunks {
        let size = CHUNK_MIB << 20;
        let mut data = vec![0u8; size];
        Noise(0x9e37_79b9_7f4a_7c15 ^ ((chunks as u64) << 32) ^ (k as u64 + 1)).fill(&mut data);
        let mut tar = tar::Builder::new(Vec::with_capacity(size + 4096));
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, "opt/filler/", std::io::empty())?;
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, format!("opt/filler/chunk{k:02}.bin"), &data[..])?;
        drop(data);
        let tar = tar.into_inner()?;
        diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(&tar))));
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar)?;
        let gz = gz.finish()?;
        layers.push(w.write_blob(media::LAYER_GZIP, &gz)?.to_json());
    }

    let p = Platform::host();
    let history: Vec<_> = (0..diff_ids.len())
        .map(|i| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("kiln-bench: layer {}", i + 1)}))
        .collect();
    let cfg = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": p.architecture,
        "os": p.os,
        "config": { "Env": [BUSYBOX_PATH_ENV], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    let cfg_desc = w.write_json(media::CONFIG, &cfg)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": cfg_desc.to_json(),
        "layers": layers,
    });
    let m = w.write_json(media::MANIFEST, &manifest)?;
    w.tag("latest", &m);
    w.finish()?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir)?;
    Ok(())
}
