//! Package URLs (<https://github.com/package-url/purl-spec>) for the
//! documents: images, Debian, Alpine, PyPI and npm packages. Only the
//! percent-encoding purl asks for is done here; a crate for it would be the
//! larger part of this module.

/// Percent-encodes everything but unreserved characters (and `/` where the
/// caller allows it, for namespaces).
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric()
            || matches!(c, '-' | '.' | '_' | '~')
            || (keep_slash && c == '/')
        {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pkg:docker/NAME@VERSION?platform=P`, as BuildKit names images in its
/// provenance: NAME is the repository as familiar as it gets (`alpine`,
/// `localhost:5000/team/app`), VERSION a tag or a digest.
pub fn docker(name: &str, version: &str, platform: Option<&str>) -> String {
    let mut out = format!(
        "pkg:docker/{}@{}",
        encode(name, true),
        encode(version, false)
    );
    if let Some(p) = platform {
        out.push_str("?platform=");
        out.push_str(&encode(p, false));
    }
    out
}

/// A package URL of `kind` (`deb`, `apk`, `pypi`, `npm`, `golang`) with an
/// optional namespace and qualifiers.
pub fn package(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        out.push_str(&encode(ns, true));
        out.push('/');
    }
    out.push_str(&encode(name, false));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&encode(version, false));
    }
    let qualifiers: Vec<String> = qualifiers
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v, false)))
        .collect();
    if !qualifiers.is_empty() {
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_packages_are_encoded_as_purl_asks() {
        assert_eq!(
            docker("localhost:5000/team/app", "v1", Some("linux/amd64")),
            "pkg:docker/localhost%3A5000/team/app@v1?platform=linux%2Famd64"
        );
        assert_eq!(
            package(
                "deb",
                Some("debian"),
                "libc6",
                "2.36-9+deb12u4",
                &[("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
        );
        assert_eq!(
            package("npm", Some("@types"), "node", "20.1.0", &[]),
            "pkg:npm/%40types/node@20.1.0"
        );
    }
}
