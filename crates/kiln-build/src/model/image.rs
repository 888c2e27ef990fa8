//! The image a stage is building: its layers (by digest, wherever they live)
//! and its config. A step changes it by returning a new value; nothing here
//! touches the network or unpacks anything.

use kiln_oci::{Descriptor, Digest, History, ImageConfig, Reference};
use std::path::PathBuf;

/// The `PATH` of a `FROM scratch` image (BuildKit's default for Linux).
pub const SCRATCH_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a layer's blob can be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOrigin {
    /// Written by this build, on disk.
    Local(PathBuf),
    /// In a registry repository (a base image, another image, the cache repo).
    Remote(Reference),
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRef {
    /// The blob: media type, compressed digest and size.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Where the blob is.
    pub origin: LayerOrigin,
}

/// An image under construction.
#[derive(Debug, Clone)]
pub struct ImageState {
    /// Layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The config; `rootfs.diff_ids` and `history` are kept in step with `layers`.
    pub config: ImageConfig,
    /// True when the manifest should use OCI media types (else Docker schema 2).
    pub oci: bool,
    /// Manifest annotations: the base image's as pulled, then what the
    /// build adds (`--annotation`) once the base's are kept or dropped.
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl ImageState {
    /// The empty image of `FROM scratch`: no layers, and the defaults
    /// BuildKit gives it (a `PATH`, and `/` as working directory), so that a
    /// RUN or an ENV that extends `$PATH` sees what it sees under BuildKit.
    pub fn scratch(platform: &kiln_oci::Platform) -> ImageState {
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: Some(kiln_oci::ContainerConfig {
                env: Some(vec![SCRATCH_PATH_ENV.to_string()]),
                working_dir: Some("/".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut config = config;
        config.rootfs.kind = "layers".to_string();
        ImageState {
            layers: Vec::new(),
            config,
            oci: false,
            annotations: Default::default(),
        }
    }

    /// Appends a layer with its history entry.
    pub fn push_layer(&mut self, layer: LayerRef, history: History) {
        let at = (self.layers.len(), self.config.history.len());
        self.insert_layer(at, layer, history);
    }

    /// Inserts a layer and its history entry at the given positions (layer
    /// index, history index): a step recorded after later steps added theirs.
    pub fn insert_layer(
        &mut self,
        (layer_at, history_at): (usize, usize),
        layer: LayerRef,
        history: History,
    ) {
        self.config
            .rootfs
            .diff_ids
            .insert(layer_at, layer.diff_id.clone());
        self.layers.insert(layer_at, layer);
        self.config.history.insert(
            history_at,
            History {
                empty_layer: false,
                ..history
            },
        );
    }

    /// Appends a history entry for a step that adds no layer.
    pub fn push_empty(&mut self, history: History) {
        self.config.history.push(History {
            empty_layer: true,
            ..history
        });
    }

    /// The container config, created when absent.
    pub fn container_config(&mut self) -> &mut kiln_oci::ContainerConfig {
        self.config.config.get_or_insert_with(Default::default)
    }

    /// The config's `Env` as (name, value) pairs, in order.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .map(|env| {
                env.iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.clone(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_and_history_stay_in_step() {
        let mut img = ImageState::scratch(&kiln_oci::Platform::new("linux", "amd64", None));
        let d = Digest::sha256_of(b"x");
        img.push_empty(History {
            created_by: Some("ENV A=b".into()),
            ..Default::default()
        });
        img.push_layer(
            LayerRef {
                descriptor: Descriptor::new(kiln_oci::media::DOCKER_LAYER_GZIP, d.clone(), 1),
                diff_id: d.clone(),
                origin: LayerOrigin::Local("/x".into()),
            },
            History::default(),
        );
        assert_eq!(img.config.rootfs.diff_ids, vec![d]);
        assert_eq!(img.config.history.len(), 2);
        assert!(img.config.history[0].empty_layer);
        assert!(!img.config.history[1].empty_layer);
        assert_eq!(img.config.rootfs.kind, "layers");
    }

    #[test]
    fn scratch_has_buildkit_defaults() {
        let img = ImageState::scratch(&kiln_oci::Platform::new("linux", "amd64", None));
        let c = img.config.config.as_ref().unwrap();
        assert_eq!(c.env.as_deref(), Some(&[SCRATCH_PATH_ENV.to_string()][..]));
        assert_eq!(c.working_dir.as_deref(), Some("/"));
        assert!(img.layers.is_empty());
    }
}
