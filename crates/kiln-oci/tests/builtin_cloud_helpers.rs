//! The `google`, `ecr` and `acr` built-in sources run the cloud's Docker
//! credential helper found on PATH, for that cloud's registries only. This
//! test binary owns its process environment, so it may point PATH at fake
//! helpers (each answers with its own name, so the test sees which ran).

use kiln_oci::auth::{Credential, CredentialStore};
use kiln_oci::builtin_helpers::{BuiltinHelper, ALL};
use std::os::unix::fs::PermissionsExt;

const ECR: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const GAR: &str = "europe-west1-docker.pkg.dev";
const ACR: &str = "team.azurecr.io";

#[test]
fn cloud_sources_run_their_own_helper_for_their_own_registries() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["ecr-login", "gcr", "acr-env"] {
        let helper = bin.join(format!("docker-credential-{name}"));
        std::fs::write(
            &helper,
            format!(
                r#"#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  *fail*) echo 'token service unreachable' >&2; exit 3 ;;
  *) echo '{{"ServerURL":"'"$server"'","Username":"{name}","Secret":"from-{name}"}}' ;;
esac
"#
            ),
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::env::set_var("PATH", path);

    let no_files = CredentialStore::from_config_dirs(vec![tmp.path().join("none")]);
    let all = no_files.clone().with_builtin_helpers(ALL.to_vec());
    assert_eq!(
        all.lookup(ECR).unwrap(),
        Some(Credential::basic("ecr-login", "from-ecr-login"))
    );
    assert_eq!(
        all.lookup(GAR).unwrap(),
        Some(Credential::basic("gcr", "from-gcr"))
    );
    assert_eq!(
        all.lookup(ACR).unwrap(),
        Some(Credential::basic("acr-env", "from-acr-env"))
    );
    // No cloud helper is asked about anyone else's registry.
    assert_eq!(all.lookup("registry.example.com").unwrap(), None);

    // Only what is selected is asked.
    let gitlab_only = no_files
        .clone()
        .with_builtin_helpers(vec![BuiltinHelper::Gitlab]);
    assert_eq!(gitlab_only.lookup(ECR).unwrap(), None);
    assert_eq!(no_files.lookup(ACR).unwrap(), None);

    // A helper that fails for its own registry is an error naming it.
    let err = all
        .lookup("fail.dkr.ecr.us-east-1.amazonaws.com")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("docker-credential-ecr-login") && err.contains("unreachable"),
        "{err}"
    );
}
