//! Registry tokens that expire during a build: a small token-auth front on
//! 127.0.0.1 in front of a real registry issues Bearer tokens and refuses
//! each one (401 `invalid_token`) after a few requests. kiln renews them
//! and the build, its pull and its push complete (expiry in the middle of
//! a chunked upload is covered by kiln-oci's token_expiry tests); a front that
//! refuses every token ends the build with one clear line, quickly.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Flattened, Registry};

const TIMEOUT: Duration = Duration::from_secs(300);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct FrontState {
    issued: u32,
    refused: u32,
    /// Uses of each token so far.
    uses: std::collections::HashMap<String, u32>,
}

/// The token-auth front: `/token` issues `tok-N`; any other request needs a
/// token that has been used fewer than `per_token` times (`0`: every token
/// is refused), and is then relayed to the registry without it.
struct TokenFront {
    host: String,
    state: Arc<Mutex<FrontState>>,
    stop: Arc<AtomicBool>,
}

impl Drop for TokenFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.host);
    }
}

impl TokenFront {
    fn start(upstream: &str, per_token: u32) -> TokenFront {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(FrontState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp, up, me) = (
            state.clone(),
            stop.clone(),
            upstream.to_string(),
            host.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().take(20_000) {
                if stp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (st, up, me) = (st.clone(), up.clone(), me.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(conn, &st, &up, &me, per_token);
                });
            }
        });
        TokenFront { host, state, stop }
    }

    fn issued(&self) -> u32 {
        self.state.lock().unwrap().issued
    }

    fn refused(&self) -> u32 {
        self.state.lock().unwrap().refused
    }
}

fn serve_one(
    conn: TcpStream,
    state: &Mutex<FrontState>,
    upstream: &str,
    me: &str,
    per_token: u32,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let len: usize = get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let target = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let mut out = conn;
    let answer = |out: &mut TcpStream, status: &str, extra: &str, body: &str| {
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    if target.starts_with("/token") {
        let token = {
            let mut st = state.lock().unwrap();
            st.issued += 1;
            format!("tok-{}", st.issued)
        };
        let json = format!(r#"{{"token":"{token}","expires_in":300}}"#);
        return answer(&mut out, "200 OK", "", &json);
    }
    let challenge = |error: &str| {
        format!("WWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"front\"{error}\r\n")
    };
    let unauthorized =
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
    let Some(token) = get("authorization").and_then(|a| a.strip_prefix("Bearer ")) else {
        return answer(&mut out, "401 Unauthorized", &challenge(""), unauthorized);
    };
    let accepted = {
        let mut st = state.lock().unwrap();
        let issued = token
            .strip_prefix("tok-")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n <= st.issued);
        let uses = st.uses.entry(token.to_string()).or_default();
        let ok = issued && *uses < per_token;
        if ok {
            *uses += 1;
        } else {
            st.refused += 1;
        }
        ok
    };
    if !accepted {
        let c = challenge(r#",error="invalid_token",error_description="token expired""#);
        return answer(&mut out, "401 Unauthorized", &c, unauthorized);
    }
    // Relay to the registry without the token, one request per connection.
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = request_line.clone();
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("authorization") && !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    std::io::copy(&mut up, &mut out)?;
    Ok(())
}

fn setup(per_token: u32) -> (Registry, TokenFront, tempfile::TempDir) {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let front = TokenFront::start(&reg.host(), per_token);
    let ctx = tempfile::tempdir().unwrap();
    // A layer of its own, uploaded across token renewals.
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(ctx.path().join("big.bin"), &big).unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nCOPY big.bin /big.bin\nRUN echo ran > /ran\n",
            front.host
        ),
    )
    .unwrap();
    (reg, front, ctx)
}

fn build(ctx: &tempfile::TempDir, front: &TokenFront, tag: &str) -> Output {
    let kiln_dir = tempfile::tempdir().unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    fs::write(docker_config.path().join("config.json"), "{}").unwrap();
    Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "--context"])
        .arg(ctx.path())
        .args(["--destination", &format!("{}/{tag}", front.host)])
        .args(["--insecure", "--insecure-pull", "--isolation", "chroot"])
        .arg("--kiln-dir")
        .arg(kiln_dir.path())
        .env("DOCKER_CONFIG", docker_config.path())
        .timeout(TIMEOUT)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tokens_that_expire_during_the_build_are_renewed() {
    let (reg, front, ctx) = setup(4);
    let out = build(&ctx, &front, "renewed:1");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("error"), "{all}");
    // Tokens were refused mid-build and each refusal was answered by a
    // renewal. How many depends on how the concurrent blob pushes share a
    // token, so only the lower bounds are fixed.
    assert!(front.refused() >= 1, "refused {}:\n{all}", front.refused());
    assert!(
        front.issued() > front.refused(),
        "issued {} for {} refusals:\n{all}",
        front.issued(),
        front.refused()
    );
    assert!(!all.contains("tok-"), "a token was logged:\n{all}");

    let img = Flattened::from_registry(&reg, "renewed:1").unwrap();
    assert_eq!(img.text("/ran").as_deref(), Some("ran\n"));
    assert_eq!(
        img.get("/big.bin").map(|f| f.size),
        Some(300_000),
        "the upload arrived whole"
    );
    assert!(img.get("/bin/busybox").is_some());
}

#[test]
fn tokens_that_are_always_refused_fail_with_one_line() {
    let (reg, front, ctx) = setup(0);
    let started = Instant::now();
    let out = build(&ctx, &front, "refused:1");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    assert!(started.elapsed() < Duration::from_secs(60), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{all}");
    assert!(
        errors[0].contains(&format!("registry {} rejected a new token", front.host))
            && errors[0].contains("invalid_token"),
        "{all}"
    );
    // Bounded: the base image lookup gives up after one renewal.
    assert!(front.issued() <= 4, "issued {}:\n{all}", front.issued());
    assert!(!all.contains("tok-"), "a token was logged:\n{all}");
    assert!(Flattened::from_registry(&reg, "refused:1").is_err());
}
