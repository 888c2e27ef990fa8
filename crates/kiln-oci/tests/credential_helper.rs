//! Credential helpers are real processes found on PATH; this test binary
//! owns its process environment, so it may point PATH at a fake helper.

use kiln_oci::auth::{Credential, CredentialStore, Secret};
use std::os::unix::fs::PermissionsExt;

#[test]
fn cred_helpers_and_creds_store_are_run_with_the_server_url() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-kilntest");
    // Answers for h.io and for Docker Hub's legacy URL, a token for t.io,
    // and "not found" for anything else.
    std::fs::write(
        &helper,
        r#"#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  h.io) echo '{"ServerURL":"h.io","Username":"hu","Secret":"hs"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hub","Secret":"hubsecret"}' ;;
  t.io) echo '{"ServerURL":"t.io","Username":"<token>","Secret":"refresh"}' ;;
  broken.io) echo 'boom' >&2; exit 3 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::env::set_var("PATH", path);

    let cfg = tmp.path().join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        r#"{"credsStore":"kilntest","credHelpers":{"https://h.io":"kilntest"},
            "auths":{"file.io":{"username":"f","password":"fp"}}}"#,
    )
    .unwrap();
    let store = CredentialStore::from_config_dirs(vec![cfg]);
    assert_eq!(
        store.lookup("h.io").unwrap(),
        Some(Credential::basic("hu", "hs"))
    );
    assert_eq!(
        store.lookup("docker.io").unwrap(),
        Some(Credential::basic("hub", "hubsecret"))
    );
    assert_eq!(
        store.lookup("t.io").unwrap(),
        Some(Credential::IdentityToken(Secret::new("refresh")))
    );
    assert_eq!(
        store.lookup("file.io").unwrap(),
        Some(Credential::basic("f", "fp"))
    );
    assert_eq!(store.lookup("unknown.io").unwrap(), None);
    let err = store.lookup("broken.io").unwrap_err().to_string();
    assert!(
        err.contains("docker-credential-kilntest") && err.contains("boom"),
        "{err}"
    );
}
