//! The request as the layers above hand it down: a body that can be sent
//! again (after a challenge or a redirect), the scope that picks the
//! credentials, and the watchdog that bounds an upload by idleness rather
//! than by its total time.

use super::super::meter::Meter;
use super::super::options::Access;
use super::lock;
use crate::registry::error::RegistryError;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// In-memory request bodies are handed to the connection in pieces of this
/// size, so that the upload watchdog sees them move.
const BODY_PIECE: usize = 256 * 1024;

/// A request body that can be produced again (for the retry after a 401
/// challenge, or after a redirect).
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        /// Told how much of the blob has gone, for progress displays.
        meter: Option<Meter>,
    },
    /// A range of an open file, read with positioned reads: a blob still
    /// being written, whose path changes when it is complete.
    Handle {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
        /// As for [`Body::File`].
        meter: Option<Meter>,
    },
}

impl Body {
    pub(super) fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } | Body::Handle { len, .. } => *len,
        }
    }

    /// The body as reqwest sends it. Every piece the connection takes is
    /// stamped into `moved`, which is what the upload watchdog watches.
    pub(super) async fn to_reqwest(
        &self,
        moved: &Arc<Mutex<Instant>>,
    ) -> Result<reqwest::Body, RegistryError> {
        use futures::StreamExt;
        let stamp = {
            let moved = moved.clone();
            move |piece| {
                *lock(&moved) = Instant::now();
                piece
            }
        };
        match self {
            Body::Empty => Ok(reqwest::Body::from(Bytes::new())),
            Body::Bytes(b) => {
                let b = b.clone();
                let pieces = (0..b.len()).step_by(BODY_PIECE).map(move |at| {
                    Ok::<_, std::io::Error>(b.slice(at..b.len().min(at + BODY_PIECE)))
                });
                Ok(reqwest::Body::wrap_stream(
                    futures::stream::iter(pieces).map(stamp),
                ))
            }
            Body::File {
                path,
                offset,
                len,
                meter,
            } => {
                // Opened per request (a retry reads the file afresh), then
                // read as an open handle is.
                let file = std::fs::File::open(path).map_err(|source| RegistryError::Io {
                    path: path.clone(),
                    source,
                })?;
                let stream = pieces_at(Arc::new(file), *offset, *offset + *len);
                Ok(reqwest::Body::wrap_stream(
                    metered(stream, meter).map(stamp),
                ))
            }
            Body::Handle {
                file,
                offset,
                len,
                meter,
            } => {
                let stream = pieces_at(file.clone(), *offset, *offset + *len);
                Ok(reqwest::Body::wrap_stream(
                    metered(stream, meter).map(stamp),
                ))
            }
        }
    }
}

/// Tells `meter` how many bytes of `stream` have gone, piece by piece.
fn metered(
    stream: impl futures::Stream<Item = std::io::Result<Bytes>>,
    meter: &Option<Meter>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    use futures::StreamExt;
    let meter = meter.clone();
    let mut sent = 0u64;
    stream.map(move |piece| {
        if let (Ok(bytes), Some(meter)) = (&piece, &meter) {
            sent += bytes.len() as u64;
            meter.at(sent);
        }
        piece
    })
}

/// Bytes `start..end` of `file` in pieces, read at their offsets on the
/// blocking pool: the handle's shared file offset is never moved, so the
/// same handle serves every chunk, retry and destination at once.
fn pieces_at(
    file: Arc<std::fs::File>,
    start: u64,
    end: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::try_unfold(start, move |at| {
        let file = file.clone();
        async move {
            if at >= end {
                return Ok(None);
            }
            let want = (end - at).min(BODY_PIECE as u64) as usize;
            let piece = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Some((piece, at + want as u64)))
        }
    })
}

/// Which repository a request is for and what it needs to do there; decides
/// the token scope and the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scope {
    /// Normalised registry name, for credential lookup (`docker.io`).
    pub registry: String,
    /// API host (`registry-1.docker.io`).
    pub host: String,
    /// Repository path.
    pub repository: String,
    /// Pull or push.
    pub access: Access,
    /// Another repository to read from (cross-repo mount source).
    pub mount_from: Option<String>,
}

impl Scope {
    /// The token scopes, `repository:<name>:pull[,push]` and the mount source.
    pub fn scopes(&self) -> Vec<String> {
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        let mut v = vec![format!("repository:{}:{actions}", self.repository)];
        if let Some(from) = &self.mount_from {
            v.push(format!("repository:{from}:pull"));
        }
        v
    }
}

/// One request.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Req {
    pub fn new(method: Method, url: Url) -> Req {
        Req {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Req {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Req {
        self.body = body;
        self
    }
}

/// Waits for `fut` as long as something moves: it fails (`None`) once
/// `idle` has passed since the later of the start and the last time the
/// connection took a piece of the request body (stamped into `moved`).
///
/// This sees bytes handed to the connection, not bytes the registry
/// acknowledged: the last socket buffer of a body drains on the timeout's
/// clock, which only a link slower than the buffer per timeout would notice.
pub(super) async fn idle_bounded<F: Future>(
    fut: F,
    moved: &Mutex<Instant>,
    idle: Duration,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let deadline = *lock(moved) + idle;
        match tokio::time::timeout_at(deadline.into(), &mut fut).await {
            Ok(out) => return Some(out),
            // Pieces moved while we slept: wait from the last of them.
            Err(_) if *lock(moved) + idle > Instant::now() => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_for_pull_push_and_mount() {
        let mut s = Scope {
            registry: "r.io".into(),
            host: "r.io".into(),
            repository: "a/b".into(),
            access: Access::Pull,
            mount_from: None,
        };
        assert_eq!(s.scopes(), vec!["repository:a/b:pull"]);
        s.access = Access::Push;
        s.mount_from = Some("c/d".into());
        assert_eq!(
            s.scopes(),
            vec!["repository:a/b:pull,push", "repository:c/d:pull"]
        );
    }

    #[tokio::test]
    async fn the_upload_watchdog_resets_while_pieces_move() {
        let idle = Duration::from_millis(150);
        // Busy for 400 ms in all, longer than the bound, but never idle for
        // as long as it.
        let moved = Arc::new(Mutex::new(Instant::now()));
        let busy = {
            let moved = moved.clone();
            async move {
                for _ in 0..8 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    *lock(&moved) = Instant::now();
                }
                7
            }
        };
        assert_eq!(idle_bounded(busy, &moved, idle).await, Some(7));
        // Silent: ends after the bound, not after the 5 s it would take.
        let moved = Mutex::new(Instant::now());
        let started = Instant::now();
        let silent = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(idle_bounded(silent, &moved, idle).await, None);
        let took = started.elapsed();
        assert!(took >= idle && took < Duration::from_secs(1), "{took:?}");
    }
}
