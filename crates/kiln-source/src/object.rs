//! Opening a context object in S3, GCS or Azure Blob with `object_store`,
//! configured from each cloud's usual environment, plus Kaniko's own
//! variables: `S3_ENDPOINT` and `S3_FORCE_PATH_STYLE` for S3-compatible
//! stores, and `STORAGE_EMULATOR_HOST` for a GCS emulator (as Google's
//! client libraries read it).

use crate::error::ObjectError;
use crate::Env;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::ObjectStore;
use std::sync::Arc;

/// Which store and what object in it.
pub enum Object<'a> {
    /// S3: bucket and key.
    S3(&'a str, &'a str),
    /// GCS: bucket and name.
    Gcs(&'a str, &'a str),
    /// Azure: optional account, container and blob name.
    Azure(Option<&'a str>, &'a str, &'a str),
}

/// The object's bytes as a stream.
pub async fn open(
    object: Object<'_>,
    env: &Env,
) -> Result<BoxStream<'static, std::io::Result<bytes::Bytes>>, ObjectError> {
    let (store, key): (Arc<dyn ObjectStore>, &str) = match object {
        Object::S3(bucket, key) => (Arc::new(s3(bucket, env)?), key),
        Object::Gcs(bucket, key) => (Arc::new(gcs(bucket, env)?), key),
        Object::Azure(account, container, key) => (Arc::new(azure(account, container, env)?), key),
    };
    let path = object_store::path::Path::from(key);
    let result = store.get(&path).await?;
    Ok(result
        .into_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed())
}

fn s3(bucket: &str, env: &Env) -> Result<object_store::aws::AmazonS3, ObjectError> {
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    for (key, value) in env.vars_with_prefix("AWS_") {
        if let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(config, value);
        }
    }
    let region_from_profile = if env.get("AWS_ACCESS_KEY_ID").is_none() {
        let settings = aws_profile(env);
        let has_region = settings
            .iter()
            .any(|(k, _)| *k == AmazonS3ConfigKey::Region);
        for (key, value) in settings {
            builder = builder.with_config(key, value);
        }
        has_region
    } else {
        false
    };
    if env.get("AWS_REGION").is_none()
        && env.get("AWS_DEFAULT_REGION").is_none()
        && !region_from_profile
    {
        // The SDK's default region; an S3-compatible store ignores it.
        builder = builder.with_region("us-east-1");
    }
    if let Some(endpoint) = env.get("S3_ENDPOINT").filter(|e| !e.is_empty()) {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    // Kaniko's S3_FORCE_PATH_STYLE; object_store uses path-style requests
    // unless virtual-hosted style is asked for.
    let force_path_style = env
        .get("S3_FORCE_PATH_STYLE")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    builder = builder
        .with_virtual_hosted_style_request(!force_path_style && env.get("S3_ENDPOINT").is_none());
    Ok(builder.build()?)
}

/// The keys and region of the AWS shared-config profile (`AWS_PROFILE`, else
/// `default`) from `~/.aws/credentials` and `~/.aws/config` (or
/// `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`). object_store reads no
/// profile files; these few INI lines are read here rather than through the
/// whole AWS SDK.
fn aws_profile(env: &Env) -> Vec<(AmazonS3ConfigKey, String)> {
    let profile = env
        .get("AWS_PROFILE")
        .unwrap_or_else(|| "default".to_string());
    let home = env.get("HOME").unwrap_or_default();
    let credentials = env
        .get("AWS_SHARED_CREDENTIALS_FILE")
        .unwrap_or_else(|| format!("{home}/.aws/credentials"));
    let config = env
        .get("AWS_CONFIG_FILE")
        .unwrap_or_else(|| format!("{home}/.aws/config"));
    let mut found = Vec::new();
    let sections = [
        (credentials, profile.clone()),
        (config.clone(), format!("profile {profile}")),
        (config, profile),
    ];
    for (file, section) in sections {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut inside = false;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = name.trim() == section;
                continue;
            }
            let Some((key, value)) = line.split_once('=').filter(|_| inside) else {
                continue;
            };
            let key = match key.trim() {
                "aws_access_key_id" => AmazonS3ConfigKey::AccessKeyId,
                "aws_secret_access_key" => AmazonS3ConfigKey::SecretAccessKey,
                "aws_session_token" => AmazonS3ConfigKey::Token,
                "region" => AmazonS3ConfigKey::Region,
                _ => continue,
            };
            if !found.iter().any(|(k, _)| *k == key) {
                found.push((key, value.trim().to_string()));
            }
        }
    }
    found
}

fn gcs(bucket: &str, env: &Env) -> Result<object_store::gcp::GoogleCloudStorage, ObjectError> {
    let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
    for (key, value) in env.vars_with_prefix("GOOGLE_") {
        if let Ok(config) = key.to_ascii_lowercase().parse::<GoogleConfigKey>() {
            builder = builder.with_config(config, value);
        }
    }
    if let Some(path) = env.get("GOOGLE_APPLICATION_CREDENTIALS") {
        builder = builder.with_application_credentials(path);
    }
    if let Some(host) = env.get("STORAGE_EMULATOR_HOST").filter(|h| !h.is_empty()) {
        // object_store takes a base URL only from a service-account key;
        // an emulator needs no token, so the key says so.
        let base = if host.contains("://") {
            host
        } else {
            format!("http://{host}")
        };
        let key = serde_json::json!({
            "gcs_base_url": base.trim_end_matches('/'),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_service_account_key(key.to_string())
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true));
    }
    Ok(builder.build()?)
}

fn azure(
    account: Option<&str>,
    container: &str,
    env: &Env,
) -> Result<object_store::azure::MicrosoftAzure, ObjectError> {
    let mut builder = MicrosoftAzureBuilder::new().with_container_name(container);
    for (key, value) in env.vars_with_prefix("AZURE_") {
        if let Ok(config) = key.to_ascii_lowercase().parse::<AzureConfigKey>() {
            builder = builder.with_config(config, value);
        }
    }
    if let Some(account) = account {
        builder = builder.with_account(account);
    }
    Ok(builder.build()?)
}
