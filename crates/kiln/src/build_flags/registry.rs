//! The registry flags' values checked and collected into [`RegistryOptions`]; their grammar
//! lives in `kiln_oci::registry`.

use kiln_build::options::RegistryOptions;
use kiln_oci::registry::{
    parse_client_cert, parse_host_path, parse_pull_routes, REGISTRY_MAP_ENV, REGISTRY_MIRROR_ENV,
};

use super::env::EnvLookup;
use super::error::OptionsError;

/// `--credential-helpers`: every built-in source when not given; an empty
/// value (`--credential-helpers=`) turns them all off.
pub fn resolve_credential_helpers(
    given: Option<&[String]>,
) -> Result<Vec<kiln_oci::builtin_helpers::BuiltinHelper>, OptionsError> {
    let Some(given) = given else {
        return Ok(kiln_oci::builtin_helpers::ALL.to_vec());
    };
    let mut helpers = Vec::new();
    for name in given.iter().flat_map(|g| g.split(',')).map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let helper = name
            .parse()
            .map_err(|source| OptionsError::InvalidCredentialHelper {
                value: name.to_string(),
                source,
            })?;
        if !helpers.contains(&helper) {
            helpers.push(helper);
        }
    }
    Ok(helpers)
}

pub(crate) fn resolve_registry(
    mut registry: RegistryOptions,
    mirrors: &[String],
    maps: &[String],
    certificates: &[String],
    client_certs: &[String],
    env: EnvLookup<'_>,
) -> Result<RegistryOptions, OptionsError> {
    registry.set_pull_routes(parse_pull_routes(
        maps,
        env(REGISTRY_MAP_ENV).as_deref(),
        mirrors,
        env(REGISTRY_MIRROR_ENV).as_deref(),
    )?);
    for pair in certificates {
        let (host, path) = parse_host_path(pair)?;
        registry.ca_certificates.insert(host, path);
    }
    for pair in client_certs {
        let (host, cert) = parse_client_cert(pair)?;
        registry.client_certificates.insert(host, cert);
    }
    Ok(registry)
}
