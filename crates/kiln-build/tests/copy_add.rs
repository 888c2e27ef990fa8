//! ADD: local archives unpacked by content, URLs fetched from a local server.

use kiln_build::context::BuildContext;
use kiln_build::copy::{
    fetch_url, plan_copy, CopyError, CopyRequest, CopySource, EntryKind, EntrySource, FetchError,
    FileKind, Owner,
};
use kiln_oci::Digest;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

fn nothing(_: &str) -> Option<FileKind> {
    None
}

/// A tar with a dir, a file (mode 0750, uid 5, mtime 1000), a symlink and a hard link.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    // A header with every numeric field filled, as real tools write them.
    let new_header = || {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o644);
        h
    };
    let mut h = new_header();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o700);
    h.set_mtime(900);
    h.set_size(0);
    b.append_data(&mut h, "pkg/", std::io::empty()).unwrap();
    let mut h = new_header();
    h.set_mode(0o750);
    h.set_uid(5);
    h.set_gid(6);
    h.set_mtime(1000);
    h.set_size(5);
    b.append_data(&mut h, "pkg/tool", &b"hello"[..]).unwrap();
    let mut h = new_header();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "pkg/link", "tool").unwrap();
    let mut h = new_header();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "pkg/hard", "pkg/tool").unwrap();
    b.into_inner().unwrap()
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "tar" => data.to_vec(),
        "tar.gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "tar.bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "tar.xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "tar.zst" => zstd::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

fn setup(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, BuildContext, CopyRequest) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("ctx");
    fs::create_dir_all(&root).unwrap();
    for (name, body) in files {
        fs::write(root.join(name), body).unwrap();
    }
    let scratch = t.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let mut req = CopyRequest::new(vec![], "/opt");
    req.add = true;
    req.scratch_dir = Some(scratch);
    let ctx = BuildContext::from_dir(&root).unwrap();
    (t, ctx, req)
}

#[test]
fn add_unpacks_every_compression_with_entry_metadata() {
    for kind in ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst"] {
        // The name lies on purpose: detection is by content.
        let name = format!("archive.{kind}.bin");
        let (_t, ctx, mut req) = setup(&[(&name, compress(kind, &sample_tar()))]);
        req.sources = vec![CopySource::Path(name.clone())];
        let p = plan_copy(&ctx, &req, &nothing).unwrap();
        let paths: Vec<_> = p.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/opt",
                "/opt/pkg",
                "/opt/pkg/hard",
                "/opt/pkg/link",
                "/opt/pkg/tool"
            ],
            "{kind}"
        );
        let dir = p.get("/opt/pkg").unwrap();
        assert_eq!(
            (dir.kind, dir.mode, dir.mtime),
            (EntryKind::Dir, 0o700, 900)
        );
        let tool = p.get("/opt/pkg/tool").unwrap();
        assert_eq!(
            (tool.mode, tool.uid, tool.gid, tool.mtime),
            (0o750, 5, 6, 1000),
            "{kind}"
        );
        let EntrySource::Path(spool) = &tool.source else {
            panic!("{kind}: no spooled file")
        };
        assert_eq!(fs::read(spool).unwrap(), b"hello");
        assert_eq!(
            p.get("/opt/pkg/link").unwrap().source,
            EntrySource::Link("tool".into())
        );
        let hard = p.get("/opt/pkg/hard").unwrap();
        assert_eq!(
            (hard.kind, &hard.source),
            (
                EntryKind::HardLink,
                &EntrySource::Link("/opt/pkg/tool".into())
            )
        );
    }
}

#[test]
fn add_chown_overrides_archive_owners() {
    let (_t, ctx, mut req) = setup(&[("a.tgz", compress("tar.gz", &sample_tar()))]);
    req.sources = vec![CopySource::Path("a.tgz".into())];
    req.owner = Some(Owner { uid: 33, gid: 34 });
    let p = plan_copy(&ctx, &req, &nothing).unwrap();
    assert!(p.entries().iter().all(|e| (e.uid, e.gid) == (33, 34)));
}

#[test]
fn copy_does_not_unpack_and_add_copies_non_archives() {
    let (_t, ctx, mut req) = setup(&[
        ("a.tgz", compress("tar.gz", &sample_tar())),
        ("plain.gz", b"not gzip".to_vec()),
    ]);
    req.add = false;
    req.sources = vec![CopySource::Path("a.tgz".into())];
    req.dest = "/opt/".into();
    let p = plan_copy(&ctx, &req, &nothing).unwrap();
    assert_eq!(p.get("/opt/a.tgz").unwrap().kind, EntryKind::File);
    req.add = true;
    req.sources = vec![CopySource::Path("plain.gz".into())];
    let p = plan_copy(&ctx, &req, &nothing).unwrap();
    assert_eq!(p.get("/opt/plain.gz").unwrap().kind, EntryKind::File);
}

#[test]
fn add_rejects_archives_escaping_the_destination() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    // Header::set_path refuses "..", so write the raw name.
    h.as_old_mut().name[..11].copy_from_slice(b"../../evil\0");
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let (_t, ctx, mut req) = setup(&[("evil.tar", b.into_inner().unwrap())]);
    req.sources = vec![CopySource::Path("evil.tar".into())];
    let err = plan_copy(&ctx, &req, &nothing).unwrap_err();
    assert!(matches!(err, CopyError::Archive { .. }), "{err}");
    assert!(err.to_string().contains("../../evil"), "{err}");
}

/// Serves one canned response per connection, `count` times.
fn serve(body: &'static [u8], status: &'static str, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body).unwrap();
        }
    });
    format!("http://{addr}")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn add_url_fetches_verifies_and_plans() {
    let base = serve(b"#!/bin/sh\necho hi\n", "200 OK", 3);
    let t = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let url = format!("{base}/downloads/install.sh?x=1");
    let want = Digest::sha256_of(b"#!/bin/sh\necho hi\n");
    let fetched = rt()
        .block_on(fetch_url(&client, &url, Some(&want), t.path()))
        .unwrap();
    assert_eq!(fetched.file_name, "install.sh");
    assert_eq!(fetched.digest, want);
    assert_eq!(fetched.last_modified, Some(1445412480));
    assert_eq!(fs::read(&fetched.path).unwrap(), b"#!/bin/sh\necho hi\n");

    // A wrong checksum names both digests.
    let wrong = Digest::sha256_of(b"other");
    let err = rt()
        .block_on(fetch_url(&client, &url, Some(&wrong), t.path()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::ChecksumMismatch { .. }));
    assert!(
        msg.contains(&wrong.to_string()) && msg.contains(&want.to_string()),
        "{msg}"
    );

    // Planned: 0600, Last-Modified as mtime, URL name inside a directory dest.
    let ctx = BuildContext::from_dir(t.path()).unwrap();
    let mut req = CopyRequest::new(vec![CopySource::Fetched(fetched)], "/usr/local/bin/");
    req.add = true;
    let p = plan_copy(&ctx, &req, &nothing).unwrap();
    let e = p.get("/usr/local/bin/install.sh").unwrap();
    assert_eq!((e.mode, e.mtime, e.uid), (0o600, 1445412480, 0));
    // Not unpacked, and the URL must not reach the planner unfetched.
    req.sources = vec![CopySource::Path(url.clone())];
    assert!(matches!(
        plan_copy(&ctx, &req, &nothing),
        Err(CopyError::UrlNotFetched { .. })
    ));
    let fetched = rt()
        .block_on(fetch_url(&client, &url, None, t.path()))
        .unwrap();
    assert_eq!(fetched.size, 18);
}

#[test]
fn add_url_http_errors() {
    let base = serve(b"nope", "404 Not Found", 1);
    let t = tempfile::tempdir().unwrap();
    let err = rt()
        .block_on(fetch_url(
            &reqwest::Client::new(),
            &format!("{base}/x"),
            None,
            t.path(),
        ))
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );
}

#[test]
fn scratch_dir_is_required_for_archives() {
    let (_t, ctx, mut req) = setup(&[("a.tar", sample_tar())]);
    req.scratch_dir = None;
    req.sources = vec![CopySource::Path("a.tar".into())];
    assert!(matches!(
        plan_copy(&ctx, &req, &nothing),
        Err(CopyError::NoScratchDir { .. })
    ));
    let _ = Path::new("");
}
