//! Tokens that expire during a build: a registry that starts refusing a
//! token (401 `invalid_token`) gets a new one, once, for every kind of
//! request including the PATCH and PUT of a chunked upload; a token server
//! whose tokens are always refused ends in one clear error after a bounded
//! number of requests; `expires_in`/`issued_at` renew tokens before they
//! are refused.

use kiln_oci::auth::CredentialStore;
use kiln_oci::registry::{
    Access, BlobSource, PushOutcome, RegistryClient, RegistryError, RegistryOptions,
};
use kiln_oci::{Digest, Reference};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod support;
use support::{reply, serve, Reply, Seen};

/// How the fake registry treats the tokens its token server issued.
#[derive(Clone, Copy)]
enum Policy {
    /// Each token is good for this many registry requests, then refused.
    ExpireAfter(u32),
    /// Every token is refused (a token server and registry that disagree).
    RefuseAll,
}

#[derive(Default)]
struct State {
    port: u16,
    issued: u32,
    uses: HashMap<String, u32>,
    /// The token response's `expires_in` and `issued_at`, when set.
    expires_in: Option<u64>,
    issued_at: Option<String>,
    uploads: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
}

/// A registry with a token server on one port, serving repository `a/b`.
async fn token_registry(policy: Policy) -> (String, Arc<Mutex<State>>, Arc<Mutex<Vec<Seen>>>) {
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    let (port, log) = serve(Arc::new(move |req: &Seen| {
        handle(&mut st.lock().unwrap(), policy, req)
    }))
    .await;
    state.lock().unwrap().port = port;
    (format!("127.0.0.1:{port}"), state, log)
}

fn handle(st: &mut State, policy: Policy, req: &Seen) -> Reply {
    if req.target.starts_with("/token") {
        st.issued += 1;
        let mut answer = serde_json::json!({ "token": format!("tok-{}", st.issued) });
        if let Some(e) = st.expires_in {
            answer["expires_in"] = e.into();
        }
        if let Some(i) = &st.issued_at {
            answer["issued_at"] = i.clone().into();
        }
        return reply(
            200,
            &[("Content-Type", "application/json")],
            answer.to_string().as_bytes(),
        );
    }
    let challenge = |error: Option<&str>| {
        let mut c = format!(
            r#"Bearer realm="http://127.0.0.1:{}/token",service="fake",scope="repository:a/b:pull,push""#,
            st.port
        );
        if let Some(e) = error {
            c.push_str(&format!(
                r#",error="{e}",error_description="token expired""#
            ));
        }
        c
    };
    let Some(token) = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        let c = challenge(None);
        return reply(
            401,
            &[("WWW-Authenticate", &c)],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        );
    };
    let uses = st.uses.entry(token.to_string()).or_default();
    let refused = match policy {
        Policy::ExpireAfter(n) => *uses >= n,
        Policy::RefuseAll => true,
    };
    if refused {
        let c = challenge(Some("invalid_token"));
        return reply(
            401,
            &[("WWW-Authenticate", &c)],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}"#,
        );
    }
    *uses += 1;

    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let uploads = "/v2/a/b/blobs/uploads/";
    match (req.method.as_str(), path) {
        ("HEAD" | "GET", p) if p.starts_with("/v2/a/b/blobs/sha256:") => {
            match st.blobs.get(&p["/v2/a/b/blobs/".len()..]) {
                Some(b) => reply(200, &[], if req.method == "GET" { b } else { &[] }),
                None => reply(404, &[], b""),
            }
        }
        ("POST", p) if p == uploads => {
            let id = format!("u{}", st.uploads.len() + 1);
            st.uploads.insert(id.clone(), Vec::new());
            reply(202, &[("Location", &format!("{uploads}{id}"))], b"")
        }
        ("PATCH" | "PUT", p) if p.starts_with(uploads) => {
            let id = &p[uploads.len()..];
            let Some(data) = st.uploads.get_mut(id) else {
                return reply(404, &[], br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}"#);
            };
            if req.method == "PATCH" {
                // Chunks must arrive in order, each exactly once.
                let start = req
                    .header("content-range")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<usize>().ok());
                if start != Some(data.len()) {
                    return reply(416, &[], br#"{"errors":[{"code":"BLOB_UPLOAD_INVALID"}]}"#);
                }
                data.extend_from_slice(&req.body);
                let range = format!("0-{}", data.len() - 1);
                return reply(202, &[("Location", p), ("Range", &range)], b"");
            }
            data.extend_from_slice(&req.body);
            let want = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .map(|d| d.replace("%3A", ":"))
                .unwrap_or_default();
            let data = st.uploads.remove(id).unwrap_or_default();
            if Digest::sha256_of(&data).to_string() != want {
                return reply(400, &[], br#"{"errors":[{"code":"DIGEST_INVALID"}]}"#);
            }
            st.blobs.insert(want, data);
            reply(201, &[], b"")
        }
        _ => reply(404, &[], b""),
    }
}

fn new_client(host: &str, chunked: bool) -> RegistryClient {
    let mut options = RegistryOptions {
        insecure_registries: vec![host.to_string()],
        credentials: CredentialStore::anonymous(),
        push_retries: 3,
        pull_retries: 3,
        retry_initial_delay: Duration::from_millis(1),
        ..RegistryOptions::default()
    };
    if chunked {
        options.monolithic_upload_limit = 1024;
        options.upload_chunk_size = 1000;
    }
    RegistryClient::new(options).unwrap()
}

fn repo_ref(host: &str) -> Reference {
    format!("{host}/a/b:1").parse().unwrap()
}

fn count(log: &Mutex<Vec<Seen>>, f: impl Fn(&Seen) -> bool) -> usize {
    log.lock().unwrap().iter().filter(|s| f(s)).count()
}

#[tokio::test]
async fn a_token_that_expires_mid_upload_is_renewed_and_the_push_completes() {
    let (host, state, log) = token_registry(Policy::ExpireAfter(4)).await;
    let client = new_client(&host, true);
    let repo = client.repository(&repo_ref(&host), Access::Push);
    let blob: Vec<u8> = (0..5500u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = Digest::sha256_of(&blob);
    let started = Instant::now();
    let outcome = repo
        .push_blob(
            &BlobSource::Bytes(blob.clone().into()),
            &digest,
            blob.len() as u64,
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, PushOutcome::Uploaded);
    assert!(started.elapsed() < Duration::from_secs(10));

    // HEAD, POST, 6 PATCH, PUT = 9 accepted requests at 4 per token: the
    // first token and two renewals, each after one refused request (the
    // third PATCH and the final PUT).
    {
        let st = state.lock().unwrap();
        assert_eq!(
            st.blobs.get(&digest.to_string()),
            Some(&blob),
            "stored intact"
        );
        assert_eq!(st.issued, 3, "{:#?}", log.lock().unwrap());
    }
    let refused = |s: &Seen| {
        s.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    };
    let seen = log.lock().unwrap().clone();
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    // One PATCH was refused with the old token and sent again, whole, with the new one.
    assert_eq!(patches.len(), 7, "{patches:#?}");
    let repeated: Vec<_> = patches
        .windows(2)
        .filter(|w| w[0].header("content-range") == w[1].header("content-range"))
        .collect();
    assert_eq!(repeated.len(), 1, "{patches:#?}");
    assert_ne!(
        repeated[0][0].header("authorization"),
        repeated[0][1].header("authorization")
    );
    assert_eq!(repeated[0][0].body, repeated[0][1].body);
    // The final PUT was refused once too, then completed with a new token.
    let puts: Vec<&Seen> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(puts.len(), 2, "{puts:#?}");
    assert!(puts.iter().all(|s| refused(s)));
    assert_ne!(
        puts[0].header("authorization"),
        puts[1].header("authorization")
    );

    // Reading it back crosses another expiry and is verified.
    let pull = client.repository(&repo_ref(&host), Access::Pull);
    for _ in 0..4 {
        let got = pull
            .get_blob_bytes(&digest, Some(blob.len() as u64), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&got[..], &blob[..]);
    }
}

#[tokio::test]
async fn tokens_that_are_always_refused_end_in_one_clear_error() {
    let (host, state, log) = token_registry(Policy::RefuseAll).await;
    let client = new_client(&host, false);
    let repo = client.repository(&repo_ref(&host), Access::Push);
    let blob = b"never stored".to_vec();
    let digest = Digest::sha256_of(&blob);
    let started = Instant::now();
    let err = repo
        .push_blob(
            &BlobSource::Bytes(blob.clone().into()),
            &digest,
            blob.len() as u64,
            None,
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, RegistryError::TokenRejected { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(401));
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.starts_with(&format!(
            "registry {host} rejected a new token for a/b from token server http://{host}/token"
        )),
        "{text}"
    );
    assert!(text.contains("invalid_token: token expired"), "{text}");
    assert!(!text.contains("tok-"), "no token in messages: {text}");
    // Bounded despite three push retries: the challenge, one token, one refusal.
    assert_eq!(state.lock().unwrap().issued, 1);
    assert_eq!(count(&log, |s| !s.target.starts_with("/token")), 2);

    // The refused token is not kept: the next operation starts with a new
    // one, renews it once when it is refused, and stops.
    let again = repo.blob_exists(&digest).await.unwrap_err();
    assert!(
        matches!(again, RegistryError::TokenRejected { .. }),
        "{again:?}"
    );
    assert_eq!(state.lock().unwrap().issued, 3);
    assert_eq!(count(&log, |s| !s.target.starts_with("/token")), 4);
}

/// Seconds since 2000-01-01T00:00:00Z.
fn since_2000() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 946_684_800
}

#[tokio::test]
async fn issued_at_and_expires_in_renew_tokens_before_the_registry_refuses_them() {
    // Issued long ago with a lifetime that ends in 5 seconds: too close to
    // its end to reuse, so each operation fetches a new token up front and
    // no request is ever refused for carrying a stale one.
    let (host, state, log) = token_registry(Policy::ExpireAfter(100)).await;
    {
        let mut st = state.lock().unwrap();
        st.issued_at = Some("2000-01-01T00:00:00Z".into());
        st.expires_in = Some(since_2000() + 5);
    }
    let client = new_client(&host, false);
    let repo = client.repository(&repo_ref(&host), Access::Pull);
    let digest = Digest::sha256_of(b"absent");
    for _ in 0..3 {
        assert_eq!(repo.blob_exists(&digest).await.unwrap(), None);
    }
    assert_eq!(state.lock().unwrap().issued, 3);
    assert_eq!(
        count(&log, |s| s.header("authorization").is_none()
            && !s.target.starts_with("/token")),
        1,
        "only the first request met a challenge"
    );

    // The same, with an hour left: one token serves every request.
    let (host, state, _) = token_registry(Policy::ExpireAfter(100)).await;
    {
        let mut st = state.lock().unwrap();
        st.issued_at = Some("2000-01-01T00:00:00Z".into());
        st.expires_in = Some(since_2000() + 3600);
    }
    let client = new_client(&host, false);
    let repo = client.repository(&repo_ref(&host), Access::Pull);
    for _ in 0..3 {
        assert_eq!(repo.blob_exists(&digest).await.unwrap(), None);
    }
    assert_eq!(state.lock().unwrap().issued, 1);
}
