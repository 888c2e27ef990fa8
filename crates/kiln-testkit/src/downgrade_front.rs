//! A hostile HTTPS front for a real registry, on 127.0.0.1, that tries to
//! lure its clients to plain HTTP: it terminates TLS with a fresh test CA
//! and relays each request to a plain-HTTP registry behind it (typically one
//! with htpasswd auth), except that one kind of answer is replaced by a
//! [`Lure`] pointing at `http://` on the front's own host and port.
//!
//! One listener speaks both: a connection whose first byte opens a TLS
//! handshake gets TLS, any other is plain HTTP. What arrives over plain HTTP
//! is recorded (with its `Authorization` header) and answered 404, so a test
//! can assert that no credentials ever travel there. The same host and port
//! on both sides is the point: a client that compares hosts without the
//! scheme takes the plain side for the registry itself.
//!
//! Hand-written rather than built on an HTTP server crate because it must
//! sniff the first byte of each connection and relay raw HTTP/1.1, which
//! is a few dozen lines over `rustls` and `std::net`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;

use crate::fault_proxy::read_chunked;
use crate::tls;

/// Connections one front accepts before it stops.
const MAX_CONNECTIONS: usize = 4096;
/// Time limit for any read or write on either side.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How the front tries to get the client onto plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lure {
    /// A blob `GET` that carries credentials is answered
    /// `307 Location: http://<front>/<same path>`.
    RedirectBlobGets,
    /// The `Location` of an upload session (the answer to
    /// `POST …/blobs/uploads/`) is rewritten to `http://<front>/…`.
    HttpUploadLocation,
    /// A 401 with a Basic challenge becomes a Bearer challenge whose realm
    /// is `http://<front>/token`.
    HttpTokenRealm,
}

/// One request that arrived over plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// The `Authorization` header, if the client sent one.
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    plain: Vec<PlainRequest>,
    lures: usize,
}

/// The front; stops on drop.
#[derive(Debug)]
pub struct DowngradeFront {
    host: String,
    ca_cert: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl DowngradeFront {
    /// Starts a front on a free 127.0.0.1 port relaying to `upstream`
    /// (`127.0.0.1:PORT`, plain HTTP), luring with `lure`.
    ///
    /// # Errors
    /// Fails if `upstream` is not a loopback address, no port is free, or
    /// the certificates cannot be made.
    pub fn start(upstream: &str, lure: Lure) -> Result<DowngradeFront> {
        anyhow::ensure!(
            upstream.starts_with("127.0.0.1:"),
            "the downgrade front only talks to 127.0.0.1, not {upstream}"
        );
        let dir = tempfile::Builder::new()
            .prefix("kiln-front-")
            .tempdir()
            .context("creating the front's temp dir")?;
        let files = tls::generate(&dir.path().join("tls"))?;
        let certs = CertificateDer::pem_file_iter(&files.server_cert)
            .context("reading the server certificate")?
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the server certificate")?;
        let key = PrivateKeyDer::from_pem_file(&files.server_key).context("reading the key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("TLS server config")?;
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the front")?;
        let host = listener.local_addr()?.to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            let (upstream, me) = (upstream.to_string(), host.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming().take(MAX_CONNECTIONS) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, upstream, me, config) =
                        (state.clone(), upstream.clone(), me.clone(), config.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &config, &upstream, &me, lure, &state);
                    });
                }
            })
        };
        Ok(DowngradeFront {
            host,
            ca_cert: files.ca_cert,
            state,
            stop,
            accept: Some(accept),
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT` of the front: use it in image references.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// The CA certificate (PEM) the front's HTTPS side is signed by.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert
    }

    /// Every request that arrived over plain HTTP, in order.
    pub fn plain_requests(&self) -> Vec<PlainRequest> {
        lock(&self.state).plain.clone()
    }

    /// How many times the lure was sent.
    pub fn lures_sent(&self) -> usize {
        lock(&self.state).lures
    }
}

impl Drop for DowngradeFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.host);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request read off a connection.
struct Request {
    method: String,
    path: String,
    /// Header lines as sent, without the request line.
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        header_in(&self.headers, name)
    }
}

fn header_in(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Reads one request (head and body); `None` when the connection closed
/// before a request line.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let request_line = head.first().cloned().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers: Vec<String> = head.into_iter().skip(1).collect();
    let chunked =
        header_in(&headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let length: usize = header_in(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// Handles one connection: TLS or plain, one request.
fn serve(
    conn: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    upstream: &str,
    me: &str,
    lure: Lure,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut first = [0u8; 1];
    if conn.peek(&mut first)? == 0 {
        return Ok(());
    }
    // 0x16: a TLS handshake record.
    if first[0] != 0x16 {
        return serve_plain(conn, state);
    }
    let tls = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(tls, conn);
    let request = {
        let mut reader = BufReader::new(&mut stream);
        read_request(&mut reader)?
    };
    let Some(request) = request else {
        return Ok(());
    };
    let response = answer(&request, upstream, me, lure, state)?;
    stream.write_all(&response)?;
    stream.flush()?;
    stream.conn.send_close_notify();
    let _ = stream.flush();
    stream.sock.shutdown(Shutdown::Both)
}

/// The plain-HTTP side: record and refuse.
fn serve_plain(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    if let Some(request) = read_request(&mut reader)? {
        lock(state).plain.push(PlainRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            authorization: request.header("authorization"),
        });
    }
    conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    conn.shutdown(Shutdown::Both)
}

/// The response to a request that came over TLS: the lure, or what the
/// registry answers (with the lure applied to it).
fn answer(
    request: &Request,
    upstream: &str,
    me: &str,
    lure: Lure,
    state: &Mutex<State>,
) -> std::io::Result<Vec<u8>> {
    if lure == Lure::RedirectBlobGets
        && request.method == "GET"
        && request.path.contains("/blobs/sha256:")
        && request.header("authorization").is_some()
    {
        lock(state).lures += 1;
        return Ok(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{me}{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            request.path
        )
        .into_bytes());
    }
    let response = relay(request, upstream)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    let (head, body) = response.split_at(split);
    let head = String::from_utf8_lossy(head).to_string();
    let mut lines: Vec<String> = head
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let status = lines
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let mut lured = false;
    for line in lines.iter_mut().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match lure {
            Lure::HttpUploadLocation
                if name == "location"
                    && request.method == "POST"
                    && request.path.contains("/blobs/uploads/") =>
            {
                *line = format!("Location: http://{me}{}", path_of(value));
                lured = true;
            }
            Lure::HttpTokenRealm
                if status == "401"
                    && name == "www-authenticate"
                    && value.to_ascii_lowercase().starts_with("basic") =>
            {
                *line = format!(
                    "WWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"{me}\""
                );
                lured = true;
            }
            _ => {}
        }
    }
    if lured {
        lock(state).lures += 1;
    }
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

/// The path and query of a URL or of an absolute path.
fn path_of(location: &str) -> &str {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    }
}

/// Sends `request` to the registry and returns its whole answer. The
/// registry is told the client came over HTTPS, so the URLs it writes are
/// `https://` ones.
fn relay(request: &Request, upstream: &str) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
    for h in &request.headers {
        let name = h
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "content-length" | "x-forwarded-proto"
        ) {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    out.push_str("X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(&request.body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_locations() {
        assert_eq!(
            path_of("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=1"),
            "/v2/a/blobs/uploads/x?_state=1"
        );
        assert_eq!(path_of("/v2/a/blobs/uploads/x"), "/v2/a/blobs/uploads/x");
        assert_eq!(path_of("https://h"), "/");
    }
}
