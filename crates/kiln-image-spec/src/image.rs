//! The image configuration (the JSON a manifest's `config` descriptor points
//! to), covering both the OCI config and Docker's superset of it.
//!
//! Our own struct rather than `oci-spec`'s: Docker's `Healthcheck`,
//! `OnBuild`, `Shell` and `ArgsEscaped` must survive a rebuild, maps are
//! `BTreeMap`s so the serialised bytes (and so the digest) are stable, and
//! every level keeps unknown fields in `extra`.

use crate::digest::Digest;
use crate::manifest::{to_vec, Extra, ManifestError};
use crate::platform::Platform;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An empty JSON object, the value type of `ExposedPorts` and `Volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// The image configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// CPU variant (`v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows).
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// How to run the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layers' uncompressed digests.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per build step, including steps without a layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields this crate does not model (`container_config`, `docker_version`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImageConfig {
    /// An empty config for `platform` (what `FROM scratch` starts from).
    pub fn for_platform(platform: &Platform) -> ImageConfig {
        ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            os_version: platform.os_version.clone(),
            os_features: platform.os_features.clone(),
            config: Some(ContainerConfig::default()),
            ..ImageConfig::default()
        }
    }

    /// Parses config JSON.
    ///
    /// # Errors
    /// [`ManifestError::Json`] when the bytes are not a config.
    pub fn from_slice(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "image config",
            source,
        })
    }

    /// Serialises to compact JSON; the same value always gives the same bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        to_vec(self)
    }

    /// The platform this config describes.
    pub fn platform(&self) -> Platform {
        let mut p = Platform::new(&self.os, &self.architecture, self.variant.as_deref());
        p.os_version = self.os_version.clone();
        p.os_features = self.os_features.clone();
        p
    }
}

/// The run-time defaults of the image (Docker's capitalised keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: keys like `80/tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    /// `ENV`, as `KEY=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `HEALTHCHECK` (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `ONBUILD` triggers (Docker extension).
    #[serde(default, rename = "OnBuild", skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// `SHELL` (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Windows: the command line is already escaped (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Fields this crate does not model (`Hostname`, `Image`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `HEALTHCHECK` settings; durations are Go `time.Duration` nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time before a check is considered hung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start-up grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Time between checks during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Consecutive failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The layer chain by uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// One `diff_id` per layer, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
            extra: Extra::new(),
        }
    }
}

/// One build step in the image's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The step, as Docker prints it (`/bin/sh -c #(nop)  CMD ["sh"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Docker-written config, trimmed; `container_config`, `Hostname` and
    /// friends are not modelled and must survive.
    const DOCKER_CONFIG: &str = r##"{
      "architecture": "amd64",
      "config": {"Hostname": "", "Env": ["PATH=/usr/bin"], "Cmd": ["sh"], "Image": "sha256:aa",
                 "Volumes": null, "WorkingDir": "/w", "Entrypoint": null, "OnBuild": ["RUN x"],
                 "Labels": {"b": "2", "a": "1"}, "ExposedPorts": {"80/tcp": {}},
                 "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000, "Retries": 3},
                 "Shell": ["/bin/bash", "-c"], "ArgsEscaped": true, "StopSignal": "SIGTERM", "User": "1000"},
      "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"sh\"]"]},
      "created": "2024-09-26T21:31:42.473544593Z",
      "docker_version": "23.0.11",
      "history": [{"created": "2024-09-26T21:31:42Z", "created_by": "ADD file:x in / "},
                  {"created": "2024-09-26T21:31:42Z", "created_by": "CMD [\"sh\"]", "empty_layer": true}],
      "os": "linux",
      "rootfs": {"type": "layers", "diff_ids": ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]}
    }"##;

    #[test]
    fn docker_config_keeps_everything_and_is_byte_stable() {
        let c = ImageConfig::from_slice(DOCKER_CONFIG.as_bytes()).unwrap();
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.on_build.as_deref(), Some(&["RUN x".to_string()][..]));
        assert_eq!(
            cc.healthcheck.as_ref().unwrap().interval,
            Some(30_000_000_000)
        );
        assert_eq!(cc.extra["Image"], serde_json::json!("sha256:aa"));
        assert!(c.extra.contains_key("container_config"));
        assert!(c.history[1].empty_layer);
        let once = c.to_vec();
        let again = ImageConfig::from_slice(&once).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.to_vec(), once, "second round trip changed bytes");
        let text = String::from_utf8(once).unwrap();
        // Labels are sorted; unknown fields are written back.
        assert!(text.contains(r#""Labels":{"a":"1","b":"2"}"#), "{text}");
        assert!(text.contains(r#""docker_version":"23.0.11""#), "{text}");
        assert!(text.contains(r#""OnBuild":["RUN x"]"#), "{text}");
        assert!(text.contains(r#""ExposedPorts":{"80/tcp":{}}"#), "{text}");
        assert!(
            !text.contains("Volumes"),
            "null options are not written: {text}"
        );
        assert!(!text.contains(r#""empty_layer":false"#), "{text}");
    }

    #[test]
    fn canonical_config_round_trips_exactly() {
        let json = r#"{"created":"2025-01-01T00:00:00Z","architecture":"arm64","variant":"v8","os":"linux","config":{"Env":["A=1"],"Cmd":["sh"],"x-new":1},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"RUN a","empty_layer":true}],"moby.buildkit.buildinfo.v1":"e30="}"#;
        let c = ImageConfig::from_slice(json.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(c.to_vec()).unwrap(), json);
        assert_eq!(c.platform().to_string(), "linux/arm64/v8");
    }

    #[test]
    fn scratch_config_and_errors() {
        let c = ImageConfig::for_platform(&"linux/arm/v7".parse().unwrap());
        let text = String::from_utf8(c.to_vec()).unwrap();
        assert_eq!(
            text,
            r#"{"architecture":"arm","variant":"v7","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
        );
        let err = ImageConfig::from_slice(b"{\"rootfs\": 5}").unwrap_err();
        assert!(err.to_string().contains("image config"), "{err}");
    }
}
