//! ADD: local archives unpacked by content, URLs fetched from a local server.

use kiln_build::context::BuildContext;
use kiln_build::copy::{
    plan_copy, CopyError, CopyRequest, CopySource, EntryKind, EntrySource, FetchError, FileKind,
    Owner, UrlFetcher,
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
        // `hard` comes first in the layer, so it holds the content (and
        // the inode's metadata) and `tool` links to it: no link may be
        // written before its target.
        let holder = p.get("/opt/pkg/hard").unwrap();
        assert_eq!(
            (
                holder.kind,
                holder.mode,
                holder.uid,
                holder.gid,
                holder.mtime
            ),
            (EntryKind::File, 0o750, 5, 6, 1000),
            "{kind}"
        );
        let EntrySource::Path(spool) = &holder.source else {
            panic!("{kind}: no spooled file")
        };
        assert_eq!(fs::read(spool).unwrap(), b"hello");
        assert_eq!(
            p.get("/opt/pkg/link").unwrap().source,
            EntrySource::Link("tool".into())
        );
        let tool = p.get("/opt/pkg/tool").unwrap();
        assert_eq!(
            (tool.kind, &tool.source),
            (
                EntryKind::HardLink,
                &EntrySource::Link("/opt/pkg/hard".into())
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
    let client = UrlFetcher::new(&kiln_oci::RegistryOptions::default()).unwrap();
    let url = format!("{base}/downloads/install.sh?x=1");
    let want = Digest::sha256_of(b"#!/bin/sh\necho hi\n");
    let fetched = rt()
        .block_on(client.fetch(&url, Some(&want), t.path()))
        .unwrap();
    assert_eq!(fetched.file_name, "install.sh");
    assert_eq!(fetched.digest, want);
    assert_eq!(fetched.last_modified, Some(1445412480));
    assert_eq!(fs::read(&fetched.path).unwrap(), b"#!/bin/sh\necho hi\n");

    // A wrong checksum names both digests.
    let wrong = Digest::sha256_of(b"other");
    let err = rt()
        .block_on(client.fetch(&url, Some(&wrong), t.path()))
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
    let fetched = rt().block_on(client.fetch(&url, None, t.path())).unwrap();
    assert_eq!(fetched.size, 18);
}

#[test]
fn add_url_http_errors() {
    let base = serve(b"nope", "404 Not Found", 1);
    let t = tempfile::tempdir().unwrap();
    let err = rt()
        .block_on(
            UrlFetcher::new(&kiln_oci::RegistryOptions::default())
                .unwrap()
                .fetch(&format!("{base}/x"), None, t.path()),
        )
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

/// How a hostile server treats an ADD download.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Reads the request and never answers.
    Silent,
    /// Announces 1000 bytes, sends 400, then goes quiet.
    StallMidBody,
    /// Announces 1000 bytes, sends 400, then closes.
    CloseEarly,
}

/// A server on 127.0.0.1 that misbehaves on every connection; returns its
/// URL and a counter of the connections it took. Held connections are
/// released after a minute, long after any test gave up on them.
fn hostile(how: Misbehaviour) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                if !matches!(how, Misbehaviour::Silent) {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n",
                    );
                    let _ = s.write_all(&[b'x'; 400]);
                    let _ = s.flush();
                }
                if !matches!(how, Misbehaviour::CloseEarly) {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                }
            });
        }
    });
    (format!("http://{addr}/tool.tar.gz"), seen)
}

/// A fetcher that gives up after half a second of silence and retries
/// twice, quickly.
fn impatient() -> UrlFetcher {
    UrlFetcher::new(&kiln_oci::RegistryOptions {
        read_timeout: std::time::Duration::from_millis(500),
        pull_retries: 2,
        retry_initial_delay: std::time::Duration::from_millis(10),
        ..kiln_oci::RegistryOptions::default()
    })
    .unwrap()
}

/// Fetches `url` with [`impatient`], returning the error and how long it took.
fn fetch_failing(url: &str) -> (FetchError, std::time::Duration, Vec<std::path::PathBuf>) {
    let t = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = rt()
        .block_on(impatient().fetch(url, None, t.path()))
        .unwrap_err();
    let left = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    (err, started.elapsed(), left)
}

#[test]
fn add_url_from_a_server_that_never_answers_times_out_after_retries() {
    let (url, connections) = hostile(Misbehaviour::Silent);
    let (err, took, left) = fetch_failing(&url);
    let msg = err.to_string();
    assert!(matches!(err, FetchError::TimedOut { .. }), "{msg}");
    assert!(
        msg.contains("timed out") && msg.contains("127.0.0.1") && msg.contains("500ms"),
        "{msg}"
    );
    assert!(msg.contains("KILN_REGISTRY_READ_TIMEOUT"), "{msg}");
    // Three attempts of half a second each, not a hang.
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn add_url_from_a_server_that_stalls_mid_body_times_out() {
    let (url, connections) = hostile(Misbehaviour::StallMidBody);
    let (err, took, left) = fetch_failing(&url);
    let msg = err.to_string();
    assert!(matches!(err, FetchError::TimedOut { .. }), "{msg}");
    assert!(msg.contains("sent no data for 500ms"), "{msg}");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(left.is_empty(), "a failed download left {left:?}");
}

#[test]
fn add_url_that_breaks_off_says_how_many_bytes_of_how_many_arrived() {
    let (url, connections) = hostile(Misbehaviour::CloseEarly);
    let (err, took, left) = fetch_failing(&url);
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            FetchError::BrokeOff {
                received: 400,
                expected: Some(1000),
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("broke off after 400 of 1000 bytes")
            && !msg.contains("error decoding response body"),
        "{msg}"
    );
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(left.is_empty(), "{left:?}");
}
