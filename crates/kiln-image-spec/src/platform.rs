//! Platforms (`linux/amd64`, `linux/arm/v7`): parsing, normalisation and the
//! matching used to pick a manifest from an index.
//!
//! Normalisation follows containerd's `platforms` package: architecture
//! aliases (`x86_64`, `aarch64`, `armhf`, …) map to their Go names, `arm64`'s
//! default variant is `v8`, `arm`'s is `v7`, `amd64`'s is `v1`.

use crate::manifest::Extra;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: {reason}")]
pub struct PlatformError {
    input: String,
    reason: &'static str,
}

/// An OS/architecture pair with optional variant and OS details, as found in
/// index entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Architecture in Go's naming (`amd64`, `arm64`, `arm`, `386`, …).
    pub architecture: String,
    /// Operating system (`linux`, `windows`).
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
    /// CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// CPU features (reserved by the spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Platform {
    /// A platform from its parts; the architecture is normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, alias_variant) = normalize_arch(architecture);
        let variant = variant
            .map(str::to_string)
            .or(alias_variant.map(str::to_string));
        Platform {
            architecture: architecture.to_string(),
            os: os.to_ascii_lowercase(),
            os_version: None,
            os_features: Vec::new(),
            variant,
            features: Vec::new(),
            extra: Extra::new(),
        }
    }

    /// The platform of the machine kiln runs on, with `linux` as the OS
    /// (images are Linux images wherever kiln runs).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new("linux", arch, None)
    }

    /// The variant with the architecture's default filled in (`arm64` → `v8`).
    pub fn normalized_variant(&self) -> Option<String> {
        let v = self
            .variant
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase);
        match (self.architecture.as_str(), v) {
            ("arm64", None) => Some("v8".into()),
            ("arm", None) => Some("v7".into()),
            ("amd64", None) => Some("v1".into()),
            (_, v) => v,
        }
    }

    /// True when an image for `self` can run on `wanted`: same OS and
    /// architecture, and a compatible variant. A `wanted` without a variant
    /// accepts any variant.
    pub fn matches(&self, wanted: &Platform) -> bool {
        let (arch, _) = normalize_arch(&self.architecture);
        let (want_arch, _) = normalize_arch(&wanted.architecture);
        if !self.os.eq_ignore_ascii_case(&wanted.os) || arch != want_arch {
            return false;
        }
        if wanted.variant.as_deref().is_none_or(str::is_empty) {
            return true;
        }
        match (self.normalized_variant(), wanted.normalized_variant()) {
            (Some(have), Some(want)) if arch == "arm" => {
                // Older ARM variants run on newer cores.
                variant_number(&have) <= variant_number(&want)
            }
            (have, want) => have == want,
        }
    }

    /// How well `self` fits `wanted` (higher is better): an exact variant
    /// beats the default variant, which beats an older compatible one.
    pub fn match_score(&self, wanted: &Platform) -> u32 {
        let have = self.normalized_variant();
        let want = wanted.normalized_variant();
        if have == want {
            100
        } else {
            have.as_deref().map_or(0, variant_number)
        }
    }
}

fn variant_number(v: &str) -> u32 {
    v.trim_start_matches('v').parse().unwrap_or(0)
}

/// Maps architecture aliases to Go's names; some aliases imply a variant.
fn normalize_arch(arch: &str) -> (&str, Option<&'static str>) {
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        "i386" | "386" => ("386", None),
        _ => (arch, None),
    }
}

/// Parses `os/arch[/variant]`.
impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PlatformError {
            input: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(err("empty or blank part; expected os/arch[/variant]"));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(err("expected os/arch[/variant]")),
        }
    }
}

/// `os/arch[/variant]`.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant.as_deref() {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm/v7").variant.as_deref(), Some("v7"));
        assert_eq!(p("linux/x86_64").architecture, "amd64");
        assert_eq!(p("linux/aarch64").architecture, "arm64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/ amd64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn matching_rules() {
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(!p("linux/arm64/v9").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(p("linux/amd64").matches(&p("linux/x86_64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("windows/amd64").matches(&p("linux/amd64")));
        let want = p("linux/arm/v7");
        assert!(p("linux/arm/v7").match_score(&want) > p("linux/arm/v6").match_score(&want));
        let want = p("linux/arm64");
        assert!(p("linux/arm64/v8").match_score(&want) > p("linux/arm64/v9").match_score(&want));
    }

    #[test]
    fn serde_uses_oci_keys() {
        let json = r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763","os.features":["win32k"]}"#;
        let plat: Platform = serde_json::from_str(json).unwrap();
        assert_eq!(plat.os_version.as_deref(), Some("10.0.17763"));
        assert_eq!(serde_json::to_string(&plat).unwrap(), json);
        assert!(!Platform::host().architecture.is_empty());
    }
}
