//! The Bearer token flow and redirect handling, against a small scripted
//! HTTP server (the distribution registry with htpasswd only does Basic).

use kiln_oci::auth::{Credential, CredentialStore};
use kiln_oci::registry::{Access, RegistryClient, RegistryError, RegistryOptions};
use kiln_oci::{Digest, Reference};
use std::sync::{Arc, Mutex};

mod support;
use support::{reply, serve, Handler, Seen};

fn options(host: &str, credentials: CredentialStore) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: vec![host.to_string()],
        credentials,
        ..RegistryOptions::default()
    }
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_scopes_and_reused() {
    let blob = b"blob-bytes".to_vec();
    let digest = Digest::sha256_of(&blob);
    let port_cell = Arc::new(Mutex::new(0u16));
    let pc = port_cell.clone();
    let digest_s = digest.to_string();
    let handler: Handler = Arc::new(move |req: &Seen| {
        let port = *pc.lock().unwrap();
        if req.target.starts_with("/token") {
            // user:pw in Basic, as Docker sends it to token servers.
            return if req.headers.get("authorization").map(String::as_str)
                == Some("Basic dXNlcjpwdw==")
            {
                reply(
                    200,
                    &[("Content-Type", "application/json")],
                    br#"{"token":"tok-1","expires_in":300}"#,
                )
            } else {
                reply(401, &[], b"")
            };
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok-1") {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:a/b:pull""#
            );
            return reply(
                401,
                &[("WWW-Authenticate", challenge.as_str())],
                br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            );
        }
        if req.target == format!("/v2/a/b/blobs/{digest_s}") {
            return reply(200, &[], &blob);
        }
        reply(404, &[], b"")
    });
    let (port, log) = serve(handler).await;
    *port_cell.lock().unwrap() = port;
    let host = format!("127.0.0.1:{port}");
    let r: Reference = format!("{host}/a/b:1").parse().unwrap();
    let creds =
        CredentialStore::anonymous().with_credential(&host, Credential::basic("user", "pw"));
    let client = RegistryClient::new(options(&host, creds)).unwrap();
    let repo = client.repository(&r, Access::Pull);
    let got = repo.get_blob_bytes(&digest, Some(10), 1024).await.unwrap();
    assert_eq!(&got[..], b"blob-bytes");
    repo.get_blob_bytes(&digest, Some(10), 1024).await.unwrap();

    let log = log.lock().unwrap().clone();
    let token_requests: Vec<&Seen> = log
        .iter()
        .filter(|s| s.target.starts_with("/token"))
        .collect();
    assert_eq!(token_requests.len(), 1, "token is cached: {log:#?}");
    assert_eq!(token_requests[0].method, "GET");
    let t = &token_requests[0].target;
    assert!(
        t.contains("service=fake") && t.contains("scope=repository%3Aa%2Fb%3Apull"),
        "{t}"
    );
    assert!(log
        .iter()
        .all(|s| s.headers["user-agent"].starts_with("kiln/")));

    // Wrong password: a clear error without the password.
    let creds = CredentialStore::anonymous()
        .with_credential(&host, Credential::basic("user", "not-the-pw-5678"));
    let client = RegistryClient::new(options(&host, creds)).unwrap();
    let err = client
        .repository(&r, Access::Push)
        .blob_exists(&digest)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{text}");
    assert!(text.contains("a/b") && text.contains(&host), "{text}");
    assert!(!text.contains("not-the-pw-5678"), "{text}");
}

#[tokio::test]
async fn redirects_to_another_host_never_carry_credentials() {
    // "storage" answers the blob and records what it was sent.
    let blob = b"redirected".to_vec();
    let digest = Digest::sha256_of(&blob);
    let b2 = blob.clone();
    let (storage_port, storage_log) =
        serve(Arc::new(move |_req: &Seen| reply(200, &[], &b2))).await;
    let target = format!("http://localhost:{storage_port}/data?sig=abc");
    let (port, _) = serve(Arc::new(move |req: &Seen| {
        if req.headers.get("authorization").map(String::as_str) != Some("Basic dTpw") {
            return reply(401, &[("WWW-Authenticate", r#"Basic realm="r""#)], b"");
        }
        reply(307, &[("Location", target.as_str())], b"")
    }))
    .await;
    let host = format!("127.0.0.1:{port}");
    let r: Reference = format!("{host}/x/y:1").parse().unwrap();
    let creds = CredentialStore::anonymous().with_credential(&host, Credential::basic("u", "p"));
    let mut opts = options(&host, creds);
    opts.insecure_registries
        .push(format!("localhost:{storage_port}"));
    let client = RegistryClient::new(opts).unwrap();
    let got = client
        .repository(&r, Access::Pull)
        .get_blob_bytes(&digest, None, 1024)
        .await
        .unwrap();
    assert_eq!(&got[..], &blob[..]);
    let seen = storage_log.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization")),
        "{seen:#?}"
    );
}

#[tokio::test]
async fn html_answers_and_retries_on_503() {
    let count = Arc::new(Mutex::new(0u32));
    let c2 = count.clone();
    let (port, _) = serve(Arc::new(move |req: &Seen| {
        if req.target.contains("/html") {
            return reply(
                502,
                &[("Content-Type", "text/html")],
                b"<html><body>Bad gateway</body></html>",
            );
        }
        let mut n = c2.lock().unwrap();
        *n += 1;
        if *n < 3 {
            reply(
                503,
                &[("Retry-After", "0")],
                br#"{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}"#,
            )
        } else {
            reply(
                404,
                &[],
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            )
        }
    }))
    .await;
    let host = format!("127.0.0.1:{port}");
    let mut opts = options(&host, CredentialStore::anonymous());
    opts.pull_retries = 3;
    opts.retry_initial_delay = std::time::Duration::from_millis(1);
    let client = RegistryClient::new(opts).unwrap();
    let r: Reference = format!("{host}/x/y:1").parse().unwrap();
    let repo = client.repository(&r, Access::Pull);
    assert_eq!(
        repo.blob_exists(&Digest::sha256_of(b"q")).await.unwrap(),
        None
    );
    assert_eq!(*count.lock().unwrap(), 3, "two 503s retried");

    let html: Reference = format!("{host}/html:1").parse().unwrap();
    let err = client
        .repository(&html, Access::Pull)
        .get_manifest("1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Html { status: 502, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTML"), "{err}");
}
