//! `--build-arg`, `--label`, `--annotation`, `--secret` and `--ssh`: the specs given as text.

use std::path::PathBuf;

use kiln_build::options::{KeyValue, Secret, SecretSource, SshAgent};

use super::env::EnvLookup;
use super::error::{invalid, OptionsError};

pub(crate) fn split_key_value(flag: &'static str, pair: &str) -> Result<KeyValue, OptionsError> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        }),
        _ => Err(invalid(flag, pair, "expected KEY=VALUE")),
    }
}

pub(crate) fn resolve_build_args(
    args: &[String],
    env: EnvLookup<'_>,
) -> Result<Vec<KeyValue>, OptionsError> {
    args.iter()
        .map(|arg| {
            if arg.contains('=') {
                split_key_value("--build-arg", arg)
            } else if arg.is_empty() {
                Err(invalid("--build-arg", arg, "expected KEY=VALUE or KEY"))
            } else {
                // As Kaniko: a bare name takes the environment's value, empty when unset.
                Ok(KeyValue {
                    key: arg.clone(),
                    value: env(arg).unwrap_or_default(),
                })
            }
        })
        .collect()
}

/// `--ssh ID=SOCKET`, or `ID` alone for the agent in `SSH_AUTH_SOCK` (as
/// `docker build --ssh default`).
pub(crate) fn parse_ssh(spec: &str, env: EnvLookup<'_>) -> Result<SshAgent, OptionsError> {
    let (id, socket) = match spec.split_once('=') {
        Some((id, path)) => (id, PathBuf::from(path)),
        None => {
            let sock = env("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "--ssh",
                        spec,
                        "no socket given and SSH_AUTH_SOCK is not set",
                    )
                })?;
            (spec, PathBuf::from(sock))
        }
    };
    if id.is_empty() || id.contains(',') {
        return Err(invalid("--ssh", spec, "the id is empty or holds a comma"));
    }
    Ok(SshAgent {
        id: id.to_string(),
        socket,
    })
}

pub(crate) fn parse_secret(spec: &str, env: EnvLookup<'_>) -> Result<Secret, OptionsError> {
    let mut id = None;
    let mut source = None;
    for field in spec.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| invalid("--secret", spec, format!("{field:?} is not key=value")))?;
        if value.is_empty() {
            return Err(invalid("--secret", spec, format!("{key} is empty")));
        }
        let new_source = match key {
            "id" => {
                id = Some(value.to_string());
                continue;
            }
            "src" | "source" => SecretSource::File(PathBuf::from(value)),
            "env" => SecretSource::Env(value.to_string()),
            "type" if value == "file" || value == "env" => continue,
            _ => return Err(invalid("--secret", spec, format!("unknown field {key:?}"))),
        };
        if source.replace(new_source).is_some() {
            return Err(invalid("--secret", spec, "give one of src= or env="));
        }
    }
    let id = id.ok_or_else(|| invalid("--secret", spec, "missing id="))?;
    let source = source.ok_or_else(|| invalid("--secret", spec, "missing src= or env="))?;
    match &source {
        SecretSource::File(path) if !path.is_file() => {
            return Err(invalid(
                "--secret",
                spec,
                format!("{} is not a file", path.display()),
            ));
        }
        SecretSource::Env(name) if env(name).is_none() => {
            return Err(invalid(
                "--secret",
                spec,
                format!("environment variable {name} is not set"),
            ));
        }
        _ => {}
    }
    Ok(Secret { id, source })
}
