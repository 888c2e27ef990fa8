//! OCI platform names (`linux/amd64`, `linux/arm64/v8`) and the host's.

use std::fmt;

/// An OCI platform: `os`, `architecture` and optional `variant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, ...
    pub architecture: String,
    /// e.g. `v8` for arm64, `v7` for arm.
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<arch>` with an optional variant.
    pub fn linux(architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// The platform of the machine running the tests, in OCI spelling.
    pub fn host() -> Self {
        match std::env::consts::ARCH {
            "x86_64" => Self::linux("amd64", None),
            "aarch64" => Self::linux("arm64", Some("v8")),
            "x86" => Self::linux("386", None),
            "arm" => Self::linux("arm", Some("v7")),
            "powerpc64" => Self::linux("ppc64le", None),
            other => Self::linux(other, None),
        }
    }

    /// A platform other than the host's, for "wrong architecture" images:
    /// arm64 on amd64 hosts and amd64 everywhere else.
    pub fn foreign() -> Self {
        if Self::host().architecture == "amd64" {
            Self::linux("arm64", Some("v8"))
        } else {
            Self::linux("amd64", None)
        }
    }

    /// The platform as an index entry's `platform` object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "os": self.os, "architecture": self.architecture });
        if let Some(var) = &self.variant {
            v["variant"] = var.clone().into();
        }
        v
    }

    /// Whether an index entry's `platform` object names this platform
    /// (a missing variant on either side matches any variant).
    pub fn matches_json(&self, p: &serde_json::Value) -> bool {
        let var_ok = match (p["variant"].as_str(), &self.variant) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        p["os"] == self.os.as_str() && p["architecture"] == self.architecture.as_str() && var_ok
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}
