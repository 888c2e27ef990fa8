//! A fault-injecting HTTP/1.1 proxy in front of a real registry, on
//! 127.0.0.1 only: each rule matches a method and a path substring and
//! applies its fault to the next `count` matching requests (optionally after
//! letting a number of them through); everything else is relayed unchanged.
//! Faults act on responses (status, drops, stalls, damage) or on request
//! bodies (a connection that dies during an upload).
//!
//! One thread per connection, one request per connection (every response
//! is sent with `Connection: close`), at most [`MAX_CONNECTIONS`]
//! connections in the proxy's lifetime, so a test can never hang on it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Connections one proxy accepts before it stops.
pub const MAX_CONNECTIONS: usize = 4096;
/// Time limit for any read or write on either side.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (500, 503, 429, ...) without asking the registry,
    /// with `Retry-After: <seconds>` when given.
    Status(u16, Option<u32>),
    /// Answer this status with this JSON body without asking the registry:
    /// a refusal with the registry's error codes.
    Refuse(u16, String),
    /// Relay the response head and half the body, then close the connection.
    DropMidBody,
    /// Relay a response whose body is cut in half, `Content-Length` adjusted
    /// so that the short body looks complete.
    Truncate,
    /// Relay the response with one byte of the body changed.
    Corrupt,
    /// Wait this long, then relay the response unchanged.
    Delay(Duration),
    /// Relay the response head and half the body, wait this long, then
    /// relay the rest: a transfer that stalls midway.
    StallMidBody(Duration),
    /// Relay the response in eight pieces with this pause before each but
    /// the first: slow, but never silent for longer than the pause.
    Trickle(Duration),
    /// Read half the request body, then close the connection without
    /// asking the registry: an upload whose connection dies before the
    /// registry sees any of it (as behind a front that buffers requests).
    DropRequestMidBody,
    /// Relay the request head and half its body to the registry, let it
    /// answer the short request, then close the client's connection without
    /// an answer: the registry keeps a partial write the client never hears of.
    RelayHalfRequestBody,
}

#[derive(Debug)]
struct Rule {
    method: Option<String>,
    path: String,
    fault: Fault,
    skip: usize,
    remaining: usize,
    applied: usize,
}

/// One request as the proxy saw it.
#[derive(Debug)]
struct Seen {
    at: Instant,
    method: String,
    path: String,
    /// Request body bytes read from the client.
    body_bytes: u64,
    what: String,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Seen>,
}

/// The proxy; stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    host: String,
    started: Instant,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port relaying to `upstream`
    /// (`127.0.0.1:PORT`, plain HTTP).
    ///
    /// # Errors
    /// Fails if `upstream` is not a loopback address or no port is free.
    pub fn start(upstream: &str) -> Result<FaultProxy> {
        anyhow::ensure!(
            upstream.starts_with("127.0.0.1:"),
            "the fault proxy only talks to 127.0.0.1, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fault proxy")?;
        let host = listener.local_addr()?.to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop, upstream) = (state.clone(), stop.clone(), upstream.to_string());
            std::thread::spawn(move || {
                for client in listener.incoming().take(MAX_CONNECTIONS) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (state, upstream) = (state.clone(), upstream.clone());
                    std::thread::spawn(move || {
                        let _ = serve(client, &upstream, &state);
                    });
                }
            })
        };
        Ok(FaultProxy {
            host,
            started: Instant::now(),
            state,
            stop,
            accept: Some(accept),
        })
    }

    /// `127.0.0.1:PORT` of the proxy: use it in image references.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// Applies `fault` to the next `count` requests whose method is `method`
    /// (any when `None`) and whose path contains `path`. Rules are tried in
    /// the order they were added.
    pub fn inject(&self, method: Option<&str>, path: &str, fault: Fault, count: usize) {
        self.inject_after(method, path, fault, 0, count);
    }

    /// As [`FaultProxy::inject`], but the first `skip` matching requests are
    /// relayed untouched (and not offered to later rules) before the fault
    /// applies to the `count` after them: "drop the fifth PATCH".
    pub fn inject_after(
        &self,
        method: Option<&str>,
        path: &str,
        fault: Fault,
        skip: usize,
        count: usize,
    ) {
        lock(&self.state).rules.push(Rule {
            method: method.map(str::to_string),
            path: path.to_string(),
            fault,
            skip,
            remaining: count,
            applied: 0,
        });
    }

    /// How many times faults were applied, over all rules.
    pub fn faults_applied(&self) -> usize {
        lock(&self.state).rules.iter().map(|r| r.applied).sum()
    }

    /// Every request seen, as `METHOD PATH -> what happened`, in the order
    /// they were done with.
    pub fn log(&self) -> Vec<String> {
        self.timed_log().into_iter().map(|(_, l)| l).collect()
    }

    /// [`FaultProxy::log`] with the time since the proxy started at which
    /// each request was done with (answered, dropped or relayed).
    pub fn timed_log(&self) -> Vec<(Duration, String)> {
        lock(&self.state)
            .log
            .iter()
            .map(|s| {
                (
                    s.at.duration_since(self.started),
                    format!("{} {} -> {}", s.method, s.path, s.what),
                )
            })
            .collect()
    }

    /// Request body bytes the proxy read from clients, over all requests
    /// whose method is `method` (any when `None`) and whose path contains
    /// `path`: what the client sent, faults or not.
    pub fn request_bytes(&self, method: Option<&str>, path: &str) -> u64 {
        lock(&self.state)
            .log
            .iter()
            .filter(|s| method.is_none_or(|m| m == s.method) && s.path.contains(path))
            .map(|s| s.body_bytes)
            .sum()
    }
}

impl Drop for FaultProxy {
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

/// The fault for this request, if a rule still has some to give.
fn take_fault(state: &Mutex<State>, method: &str, path: &str) -> Option<Fault> {
    let mut state = lock(state);
    let rule = state.rules.iter_mut().find(|r| {
        r.remaining > 0 && r.method.as_deref().is_none_or(|m| m == method) && path.contains(&r.path)
    })?;
    if rule.skip > 0 {
        rule.skip -= 1;
        return None;
    }
    rule.remaining -= 1;
    rule.applied += 1;
    Some(rule.fault.clone())
}

/// Handles one request on `client`.
fn serve(client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n" || line == "\n";
        head.push(line.trim_end().to_string());
        if end {
            break;
        }
    }
    let request_line = head.first().cloned().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let header = |name: &str| {
        head.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fault = take_fault(state, &method, &path);
    let body_bytes = std::cell::Cell::new(0u64);
    let note = |what: String| {
        lock(state).log.push(Seen {
            at: Instant::now(),
            method: method.clone(),
            path: path.clone(),
            body_bytes: body_bytes.get(),
            what,
        });
    };
    if fault == Some(Fault::DropRequestMidBody) {
        // Read half of what the client sends, as a connection that dies
        // partway through an upload would have carried.
        let mut half = vec![0; length / 2];
        reader.read_exact(&mut half)?;
        body_bytes.set(half.len() as u64);
        note(format!(
            "dropped after {} of {length} request body bytes",
            half.len()
        ));
        return client.shutdown(Shutdown::Both);
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    body_bytes.set(body.len() as u64);

    if let Some(Fault::Status(code, retry_after)) = &fault {
        let mut response =
            format!("HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n");
        if let Some(seconds) = retry_after {
            response.push_str(&format!("Retry-After: {seconds}\r\n"));
        }
        response.push_str("\r\n");
        note(format!("injected {code}"));
        client.write_all(response.as_bytes())?;
        return client.shutdown(Shutdown::Both);
    }
    if let Some(Fault::Refuse(code, body)) = &fault {
        let response = format!(
            "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        note(format!("injected {code}"));
        client.write_all(response.as_bytes())?;
        return client.shutdown(Shutdown::Both);
    }

    // Relay: same head less hop-by-hop headers, a plain body, then close.
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut out = format!("{request_line}\r\n");
    for h in head.iter().skip(1).filter(|h| !h.is_empty()) {
        let name = h
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "content-length"
        ) {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    if !body.is_empty() || chunked || header("content-length").is_some() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    if fault == Some(Fault::RelayHalfRequestBody) {
        // The registry gets a short body (the head promised more) and
        // answers it; the client hears nothing.
        up.write_all(&body[..body.len() / 2])?;
        up.shutdown(Shutdown::Write)?;
        let mut answer = Vec::new();
        let _ = up.read_to_end(&mut answer);
        let status = String::from_utf8_lossy(&answer)
            .split_whitespace()
            .nth(1)
            .unwrap_or("no answer")
            .to_string();
        note(format!(
            "relayed {} of {} request body bytes (registry: {status}), dropped",
            body.len() / 2,
            body.len()
        ));
        return client.shutdown(Shutdown::Both);
    }
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;

    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    let (resp_head, resp_body) = response.split_at(split);
    let status = String::from_utf8_lossy(resp_head)
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_string();
    match fault {
        Some(Fault::Delay(d)) => {
            std::thread::sleep(d);
            note(format!("{status} after a delay"));
            client.write_all(&response)?;
        }
        Some(Fault::StallMidBody(d)) => {
            let half = resp_body.len() / 2;
            client.write_all(resp_head)?;
            client.write_all(&resp_body[..half])?;
            client.flush()?;
            std::thread::sleep(d);
            // The client has usually given up by now; the write may fail.
            let finished = client.write_all(&resp_body[half..]).is_ok();
            note(format!(
                "{status}, stalled mid-body{}",
                if finished { "" } else { ", client gone" }
            ));
        }
        Some(Fault::Trickle(pause)) => {
            let piece = resp_body.len().div_ceil(8).max(1);
            client.write_all(resp_head)?;
            for (i, part) in resp_body.chunks(piece).enumerate() {
                if i > 0 {
                    std::thread::sleep(pause);
                }
                client.write_all(part)?;
                client.flush()?;
            }
            note(format!("{status}, trickled"));
        }
        Some(Fault::DropMidBody) => {
            note(format!("{status}, dropped mid-body"));
            client.write_all(resp_head)?;
            client.write_all(&resp_body[..resp_body.len() / 2])?;
        }
        Some(Fault::Truncate) => {
            note(format!("{status}, body truncated"));
            let short = &resp_body[..resp_body.len() / 2];
            client.write_all(&with_length(resp_head, short.len()))?;
            client.write_all(short)?;
        }
        Some(Fault::Corrupt) if !resp_body.is_empty() => {
            note(format!("{status}, body corrupted"));
            let mut body = resp_body.to_vec();
            let mid = body.len() / 2;
            body[mid] ^= 0x5a;
            client.write_all(resp_head)?;
            client.write_all(&body)?;
        }
        _ => {
            note(status);
            client.write_all(&response)?;
        }
    }
    client.flush()?;
    client.shutdown(Shutdown::Both)
}

/// `head` with its Content-Length set to `length`.
fn with_length(head: &[u8], length: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("Content-Length: {length}\r\n"));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Reads a chunked request body (bounded by the I/O timeout).
pub(crate) fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size_text = line
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        let size = usize::from_str_radix(&size_text, 16).map_err(|_| bad("chunk size"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}
