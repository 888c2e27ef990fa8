//! Image config comparison across builders.

use serde_json::{Map, Value};

/// Labels builders stamp on their own images.
const BUILDER_LABELS: &[&str] = &["io.buildah.version"];

/// Top-level config fields dropped by [`normalized_config`].
const DROPPED_TOP: &[&str] = &[
    "created",
    "author",
    "container",
    "container_config",
    "docker_version",
    "moby.buildkit.buildinfo.v1",
];

/// Fields of `config` dropped by [`normalized_config`].
const DROPPED_RUNTIME: &[&str] = &["Image", "ArgsEscaped", "Hostname", "Domainname"];

/// The parts of an image config that two correct builders of the same
/// Dockerfile must agree on.
///
/// Dropped, and why:
/// * `created`, `history[].created`: build times.
/// * `history[].created_by`, `history[].comment`, `history[].author`: free
///   text whose wording is each builder's own (`/bin/sh -c #(nop) ENV ...`
///   versus `ENV ...`). The number of history entries and each entry's
///   `empty_layer` flag are kept: they must match the layers.
/// * `rootfs.diff_ids` values: tar bytes legitimately differ (entry order,
///   mtimes, PAX headers); each is replaced by `"<diff_id>"` so the layer
///   count is still compared. Compare content with [`crate::diff`].
/// * `author`, `container`, `container_config`, `docker_version`,
///   `moby.buildkit.buildinfo.v1`: Docker/BuildKit bookkeeping.
/// * `config.Image`, `config.ArgsEscaped`, `config.Hostname`,
///   `config.Domainname`: legacy Docker fields with no effect on Linux
///   containers built from a Dockerfile.
/// * the `io.buildah.version` label (and `config.Labels` if that empties it).
/// * any `config` field that is `null`, `""`, `false` or `{}`: Docker writes
///   every field with its zero value, others omit them; the meaning is the
///   same. Empty arrays are kept, since `CMD []` differs from no `CMD`.
pub fn normalized_config(config: &Value) -> Value {
    let mut c = config.clone();
    let Some(top) = c.as_object_mut() else {
        return c;
    };
    for k in DROPPED_TOP {
        top.remove(*k);
    }
    if let Some(rc) = top.get_mut("config").and_then(Value::as_object_mut) {
        for k in DROPPED_RUNTIME {
            rc.remove(*k);
        }
        if let Some(labels) = rc.get_mut("Labels").and_then(Value::as_object_mut) {
            for l in BUILDER_LABELS {
                labels.remove(*l);
            }
        }
        rc.retain(|_, v| !is_zero(v));
    }
    if let Some(history) = top.get_mut("history").and_then(Value::as_array_mut) {
        for h in history.iter_mut().filter_map(Value::as_object_mut) {
            for k in ["created", "created_by", "comment", "author"] {
                h.remove(k);
            }
            if h.get("empty_layer") == Some(&Value::Bool(false)) {
                h.remove("empty_layer");
            }
        }
    }
    if let Some(ids) = top
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
    {
        for id in ids.iter_mut() {
            *id = Value::String("<diff_id>".into());
        }
    }
    c
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Object(m) => m == &Map::new(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_and_buildah_styles_normalize_alike() {
        let docker = json!({
            "created": "2024-05-01T10:00:00Z",
            "docker_version": "24.0.0",
            "architecture": "amd64", "os": "linux",
            "config": {"Hostname": "", "User": "", "Env": ["A=b"], "Cmd": ["sh"],
                       "Labels": null, "Image": "sha256:abc", "ArgsEscaped": true, "Volumes": null},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:1", "sha256:2"]},
            "history": [{"created": "x", "created_by": "/bin/sh -c #(nop) ADD file"},
                        {"created": "y", "created_by": "/bin/sh -c #(nop) ENV A=b", "empty_layer": true},
                        {"created": "z", "created_by": "/bin/sh -c #(nop) COPY file:abc in /"}],
        });
        let buildah = json!({
            "created": "2026-01-01T00:00:00Z",
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["A=b"], "Cmd": ["sh"], "Labels": {"io.buildah.version": "1.28.2"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:9", "sha256:8"]},
            "history": [{"created": "a", "created_by": "ADD", "comment": "FROM busybox"},
                        {"created": "b", "created_by": "ENV A=b", "empty_layer": true},
                        {"created": "c", "created_by": "COPY hello /", "empty_layer": false}],
        });
        assert_eq!(normalized_config(&docker), normalized_config(&buildah));
    }

    #[test]
    fn meaningful_fields_survive() {
        let a = json!({"config": {"Env": ["A=1"], "Cmd": []}});
        let b = json!({"config": {"Env": ["A=2"]}});
        assert_ne!(normalized_config(&a), normalized_config(&b));
        assert_eq!(normalized_config(&a)["config"]["Cmd"], json!([]));
    }
}
