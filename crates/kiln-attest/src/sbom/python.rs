//! Python distributions: the `METADATA` file of each `*.dist-info`
//! directory (pip, wheels) and the `PKG-INFO` of each `*.egg-info`
//! (setuptools; a directory, or a file of the same format), in any
//! `site-packages` or `dist-packages` directory. What `pip list --path`
//! reports for that directory.

use super::{field, paragraphs, Package};
use crate::purl;

/// Whether the file at `path` is a distribution's metadata.
pub fn wants(path: &str) -> bool {
    let in_packages = path.contains("site-packages/") || path.contains("dist-packages/");
    if !in_packages {
        return false;
    }
    let mut parts = path.rsplit('/');
    let (Some(file), Some(dir)) = (parts.next(), parts.next()) else {
        return false;
    };
    let parent = parts.next().unwrap_or("");
    let in_site = parent == "site-packages" || parent == "dist-packages";
    (in_site && file == "METADATA" && dir.ends_with(".dist-info"))
        || (in_site && file == "PKG-INFO" && dir.ends_with(".egg-info"))
        || ((dir == "site-packages" || dir == "dist-packages") && file.ends_with(".egg-info"))
}

/// The distribution a metadata file describes (only its header is read).
pub fn parse(text: &str, path: &str) -> Vec<Package> {
    // The header ends at the first blank line; the rest is the description.
    let header = text.split("\n\n").next().unwrap_or("");
    let Some(para) = paragraphs(header).into_iter().next() else {
        return Vec::new();
    };
    let (Some(name), Some(version)) = (field(&para, "Name"), field(&para, "Version")) else {
        return Vec::new();
    };
    let license = field(&para, "License-Expression")
        .or_else(|| field(&para, "License").filter(|l| !l.contains('\n') && l.len() < 100));
    vec![Package {
        ecosystem: "python",
        name: name.to_string(),
        version: version.to_string(),
        purl: purl::package("pypi", None, &normalized_name(name), version, &[]),
        license: license.map(str::to_string),
        supplier: field(&para, "Author").map(str::to_string),
        found_in: format!("/{path}"),
    }]
}

/// PEP 503's normalized name: lower case, runs of `-_.` as one `-`.
pub fn normalized_name(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_info_and_egg_info_are_read() {
        assert!(wants(
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA"
        ));
        assert!(wants(
            "usr/local/lib/python3.12/site-packages/Flask-3.0.dist-info/METADATA"
        ));
        assert!(wants(
            "usr/lib/python3/dist-packages/foo-1.0.egg-info/PKG-INFO"
        ));
        assert!(wants("usr/lib/python3/dist-packages/foo-1.0.egg-info"));
        assert!(!wants(
            "usr/lib/python3/dist-packages/pkg/vendored/x.dist-info/METADATA"
        ));
        let meta = "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\nLicense: MIT\n\n\
                    Name: not-this\n";
        let p = &parse(meta, "site-packages/Flask_Login-0.6.3.dist-info/METADATA")[0];
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("Flask_Login", "0.6.3")
        );
        assert_eq!(p.purl, "pkg:pypi/flask-login@0.6.3");
        assert_eq!(p.license.as_deref(), Some("MIT"));
    }
}
