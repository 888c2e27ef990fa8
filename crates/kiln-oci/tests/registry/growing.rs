//! Blobs pushed while they are written (`Repository::push_growing_blob`),
//! through the fault proxy so that every request is seen.

use super::*;
use kiln_oci::registry::{GrowingBlob, GrowingEnd, TransferObserver};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A blob file the test appends to step by step, as a layer writer would.
struct Feeder {
    out: Mutex<File>,
    read: Arc<File>,
    written: AtomicU64,
    end: Mutex<Option<GrowingEnd>>,
}

impl Feeder {
    fn new(tmp: &tempfile::TempDir, name: &str) -> Arc<Feeder> {
        let path = tmp.path().join(name);
        let out = File::create(&path).unwrap();
        Arc::new(Feeder {
            out: Mutex::new(out),
            read: Arc::new(File::open(&path).unwrap()),
            written: AtomicU64::new(0),
            end: Mutex::new(None),
        })
    }

    fn grow(&self, bytes: &[u8]) {
        self.out.lock().unwrap().write_all(bytes).unwrap();
        self.written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
    }

    fn finish(&self, digest: &Digest) {
        let size = self.written();
        *self.end.lock().unwrap() = Some(GrowingEnd::Complete {
            digest: digest.clone(),
            size,
        });
    }

    fn fail(&self) {
        *self.end.lock().unwrap() = Some(GrowingEnd::Failed);
    }
}

impl GrowingBlob for Feeder {
    fn file(&self) -> Option<Arc<File>> {
        Some(self.read.clone())
    }
    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
    fn end(&self) -> Option<GrowingEnd> {
        self.end.lock().unwrap().clone()
    }
}

/// The most bytes an upload said it had sent.
#[derive(Default)]
struct Furthest(AtomicU64);

impl TransferObserver for Furthest {
    fn transferred(&self, bytes: u64) {
        self.0.fetch_max(bytes, Ordering::SeqCst);
    }
}

/// Waits (up to 20 s) until the proxy's log satisfies `done`.
async fn until(proxy: &FaultProxy, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&proxy.log()) {
        assert!(
            Instant::now() < deadline,
            "never saw {what}: {:?}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The methods of the requests on `repository`, in order.
fn methods(proxy: &FaultProxy, repository: &str) -> Vec<String> {
    proxy
        .log()
        .iter()
        .filter(|l| l.contains(&format!("/v2/{repository}/")))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// A registry, the proxy in front of it, and a directory for blob files.
fn proxied_registry() -> (Registry, FaultProxy, tempfile::TempDir) {
    let reg = Registry::plain().unwrap();
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    (reg, proxy, tempfile::tempdir().unwrap())
}

/// Starts pushing what `feeder` writes, as a build's upload task does.
fn spawn_push(
    repo: &kiln_oci::Repository,
    feeder: &Arc<Feeder>,
) -> tokio::task::JoinHandle<Result<PushOutcome, kiln_oci::RegistryError>> {
    let (repo, feeder) = (repo.clone(), feeder.clone());
    tokio::spawn(async move { repo.push_growing_blob(&*feeder).await })
}

fn accepted_patches(log: &[String]) -> usize {
    log.iter()
        .filter(|l| l.starts_with("PATCH ") && l.ends_with("-> 202"))
        .count()
}

/// Pushes a blob of `chunks` chunks and 1000 bytes to `repository` as it is
/// written: `first` chunks, then (once the registry has accepted a chunk,
/// with the writer not finished) the rest. Checks the stored blob and
/// returns its size.
async fn chunk_before_the_end(
    reg: &Registry,
    proxy: &FaultProxy,
    tmp: &tempfile::TempDir,
    repo: &kiln_oci::Repository,
    repository: &str,
    chunks: u64,
    first: u64,
) -> u64 {
    let blob = noise(chunks * CHUNK + 1000);
    let digest = Digest::sha256_of(&blob);
    let feeder = Feeder::new(tmp, repository.rsplit('/').next().unwrap_or("blob"));
    let upload = spawn_push(repo, &feeder);
    feeder.grow(&blob[..(first * CHUNK) as usize]);
    until(proxy, "a chunk accepted", |log| accepted_patches(log) >= 1).await;
    assert!(!upload.is_finished(), "the upload waits for the writer");
    feeder.grow(&blob[(first * CHUNK) as usize..]);
    feeder.finish(&digest);

    assert_eq!(upload.await.unwrap().unwrap(), PushOutcome::Uploaded);
    let size = blob.len() as u64;
    assert_eq!(
        stored_blob(reg, repository, &digest, size).await,
        Bytes::from(blob)
    );
    size
}

#[tokio::test]
async fn a_growing_blob_is_sent_in_chunks_before_its_writer_finishes() {
    let (reg, proxy, tmp) = proxied_registry();
    let observer = Arc::new(Furthest::default());
    let repo = chunked_client(&proxy, "kiln/growing").observed(observer.clone());
    // Three chunks written: the registry takes the first ones while the
    // rest of the blob does not exist yet.
    let size = chunk_before_the_end(&reg, &proxy, &tmp, &repo, "kiln/growing", 8, 3).await;
    // One session; the three chunks written first in one PATCH, the rest
    // in one or two (as the writer's end and its last chunks meet the
    // upload); the check that the blob was not there already (made when
    // the writer finished); the final PUT. Chunk by chunk, nine PATCHes.
    let sent = methods(&proxy, "kiln/growing");
    assert_eq!(sent.first().map(String::as_str), Some("POST"));
    assert_eq!(sent.last().map(String::as_str), Some("PUT"));
    let count = |m: &str| sent.iter().filter(|s| *s == m).count();
    assert_eq!((count("HEAD"), count("POST"), count("PUT")), (1, 1, 1));
    assert!((2..=3).contains(&count("PATCH")), "{:?}", proxy.log());
    assert_eq!(sent.len(), 3 + count("PATCH"), "{sent:?}");
    assert_eq!(proxy.request_bytes(Some("PATCH"), "/blobs/uploads/"), size);
    assert_eq!(observer.0.load(Ordering::SeqCst), size);
}

#[tokio::test]
async fn a_blob_one_put_could_carry_starts_streaming_once_it_holds_a_chunk() {
    // The layer sizes a build writes most (tens of MiB) are under the
    // monolithic limit: waiting for that limit would send them all at the
    // end. A whole chunk written is enough to open the session.
    let (reg, proxy, tmp) = proxied_registry();
    let client = RegistryClient::new(RegistryOptions {
        monolithic_upload_limit: 8 * CHUNK,
        upload_chunk_size: CHUNK,
        ..proxied_options(&proxy)
    })
    .unwrap();
    let reference: Reference = format!("{}/kiln/mid-growing", proxy.host())
        .parse()
        .unwrap();
    let repo = client.repository(&reference, Access::Push);
    let size = chunk_before_the_end(&reg, &proxy, &tmp, &repo, "kiln/mid-growing", 3, 2).await;
    assert_eq!(proxy.request_bytes(Some("PATCH"), "/blobs/uploads/"), size);
}

#[tokio::test]
async fn a_growing_blob_that_stays_small_costs_what_a_complete_one_does() {
    let (reg, proxy, tmp) = proxied_registry();

    let blob = noise(CHUNK / 2);
    let digest = Digest::sha256_of(&blob);
    let feeder = Feeder::new(&tmp, "small");
    let repo = chunked_client(&proxy, "kiln/small-growing");
    let upload = spawn_push(&repo, &feeder);
    feeder.grow(&blob[..1000]);
    feeder.grow(&blob[1000..]);
    feeder.finish(&digest);
    assert_eq!(upload.await.unwrap().unwrap(), PushOutcome::Uploaded);
    let size = blob.len() as u64;
    assert_eq!(
        stored_blob(&reg, "kiln/small-growing", &digest, size).await,
        Bytes::from(blob.clone())
    );

    let path = tmp.path().join("complete");
    std::fs::write(&path, &blob).unwrap();
    chunked_client(&proxy, "kiln/small-file")
        .push_blob_file(&path, &digest, size, None)
        .await
        .unwrap();
    let growing = methods(&proxy, "kiln/small-growing");
    assert_eq!(growing, ["HEAD", "POST", "PUT"]);
    assert_eq!(growing, methods(&proxy, "kiln/small-file"));
}

#[tokio::test]
async fn a_writer_that_fails_cancels_the_upload_and_leaves_nothing() {
    let (reg, proxy, tmp) = proxied_registry();
    let feeder = Feeder::new(&tmp, "failing");
    let repo = chunked_client(&proxy, "kiln/failing");
    let upload = spawn_push(&repo, &feeder);
    feeder.grow(&noise(3 * CHUNK));
    until(&proxy, "a chunk accepted", |log| accepted_patches(log) >= 1).await;
    feeder.fail();

    let err = upload.await.unwrap().unwrap_err();
    assert!(matches!(err, RegistryError::SourceFailed), "{err}");
    assert_eq!(err.status(), None, "no registry error: {err}");
    let log = proxy.log();
    let cancelled: Vec<_> = log.iter().filter(|l| l.starts_with("DELETE ")).collect();
    assert_eq!(cancelled.len(), 1, "{log:?}");
    assert!(cancelled[0].ends_with("-> 204"), "{log:?}");
    assert!(!log.iter().any(|l| l.starts_with("PUT ")), "{log:?}");
    // The registry keeps neither a blob nor the session's bytes (the
    // distribution registry leaves only a hash state file behind).
    let storage = reg.storage_dir().join("docker/registry/v2");
    let blobs = walkdir_files(&storage.join("blobs"));
    assert!(blobs.is_empty(), "{blobs:?}");
    let uploads = walkdir_files(&storage.join("repositories/kiln/failing/_uploads"));
    let data: Vec<_> = uploads.iter().filter(|p| p.ends_with("data")).collect();
    assert!(data.is_empty(), "{uploads:?}");

    // A writer that never starts costs no request at all.
    let feeder = Feeder::new(&tmp, "never");
    feeder.fail();
    let before = proxy.log().len();
    let err = repo.push_growing_blob(&*feeder).await.unwrap_err();
    assert!(matches!(err, RegistryError::SourceFailed), "{err}");
    assert_eq!(proxy.log().len(), before);
}

/// Every file under `dir` (none when it does not exist).
fn walkdir_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                todo.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Pushes a growing 8-chunk blob through `fault` on its third PATCH, the
/// upload going on after the break while the blob still grows (a chunk at
/// a time, each once the one before was taken, so that each PATCH carries
/// one); checks the registry's copy and returns the blob size and the
/// PATCH bytes sent.
async fn push_through_a_break(repository: &str, fault: Fault) -> (FaultProxy, u64, u64) {
    let (reg, proxy, tmp) = proxied_registry();
    let blob = noise(8 * CHUNK + 1000);
    let digest = Digest::sha256_of(&blob);
    let size = blob.len() as u64;
    let feeder = Feeder::new(&tmp, "blob");
    let repo = chunked_client(&proxy, repository);
    proxy.inject_after(Some("PATCH"), "/blobs/uploads/", fault, 2, 1);
    let upload = spawn_push(&repo, &feeder);
    // A byte past each chunk: a session opens once the blob is past one.
    let mut grown = 0;
    for i in 1..=3u64 {
        let to = (i * CHUNK + 1) as usize;
        feeder.grow(&blob[grown..to]);
        grown = to;
        if i < 3 {
            let taken = i as usize;
            until(&proxy, "the chunk taken", |log| {
                accepted_patches(log) >= taken
            })
            .await;
        }
    }
    // Broken, asked where the session stands, and gone on: all before the
    // writer finishes.
    until(&proxy, "the upload go on after the break", |log| {
        let asked = log
            .iter()
            .any(|l| l.starts_with("GET ") && l.contains("/blobs/uploads/"));
        asked && accepted_patches(log) >= 3
    })
    .await;
    assert_eq!(proxy.faults_applied(), 1);
    feeder.grow(&blob[grown..]);
    feeder.finish(&digest);

    assert_eq!(upload.await.unwrap().unwrap(), PushOutcome::Uploaded);
    assert_eq!(
        stored_blob(&reg, repository, &digest, size).await,
        Bytes::from(blob)
    );
    let sent = proxy.request_bytes(Some("PATCH"), "/blobs/uploads/");
    (proxy, size, sent)
}

#[tokio::test]
async fn a_growing_upload_resumes_after_a_connection_breaks_midway() {
    // The connection dies halfway through the chunk, before the registry
    // sees any of it.
    let (proxy, size, sent) =
        push_through_a_break("kiln/growing-resume", Fault::DropRequestMidBody).await;
    let log = proxy.log();
    assert_eq!(count(&log, "POST "), 1, "{log:?}");
    // The blob once, and the half chunk that was lost: nothing the
    // registry had confirmed was sent again.
    assert_eq!(sent, size + CHUNK / 2);
}

#[tokio::test]
async fn a_growing_upload_whose_registry_kept_half_a_chunk_still_ends_right() {
    // The registry gets half of the chunk, the client no answer: what the
    // registry holds is no longer what the client last heard.
    let (_, size, sent) =
        push_through_a_break("kiln/growing-half", Fault::RelayHalfRequestBody).await;
    // Never more than the blob, the lost half and a restart's worth.
    assert!(sent <= size + 3 * CHUNK, "{sent}");
}
