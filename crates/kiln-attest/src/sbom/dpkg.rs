//! Debian packages: dpkg's status database (`var/lib/dpkg/status`) and the
//! one-file-per-package form distroless images use (`var/lib/dpkg/status.d/`).
//!
//! A package counts when dpkg-query would list it as present: its status's
//! state is anything but `not-installed` and `config-files` (removed,
//! configuration kept).

use super::{field, paragraphs, Package};
use crate::purl;

/// Whether the file at `path` is a dpkg status database.
pub fn wants(path: &str) -> bool {
    path == "var/lib/dpkg/status"
        || path
            .strip_prefix("var/lib/dpkg/status.d/")
            .is_some_and(|f| !f.is_empty() && !f.contains('/') && !f.ends_with(".md5sums"))
}

/// The packages in a status file.
pub fn parse(text: &str, path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in paragraphs(text) {
        let (Some(name), Some(version)) = (field(&para, "Package"), field(&para, "Version")) else {
            continue;
        };
        // status.d files carry no Status field: what is there is installed.
        let state = field(&para, "Status")
            .and_then(|s| s.split_whitespace().nth(2))
            .unwrap_or("installed");
        if matches!(state, "not-installed" | "config-files") {
            continue;
        }
        let arch = field(&para, "Architecture").unwrap_or("");
        let mut qualifiers = vec![("arch", arch)];
        let upstream;
        if let Some(source) = field(&para, "Source") {
            // `Source: name (version)` names the source package.
            upstream = source.split_whitespace().next().unwrap_or("").to_string();
            qualifiers.push(("upstream", &upstream));
        }
        out.push(Package {
            ecosystem: "dpkg",
            name: name.to_string(),
            version: version.to_string(),
            purl: purl::package("deb", Some("debian"), name, version, &qualifiers),
            license: None,
            supplier: field(&para, "Maintainer").map(str::to_string),
            found_in: format!("/{path}"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_packages_only_with_their_arch_and_source() {
        let status = "Package: bash\nStatus: install ok installed\nArchitecture: amd64\n\
                      Version: 5.2.15-2+b2\nMaintainer: Matthias Klose <doko@debian.org>\n\
                      Description: GNU Bourne Again SHell\n Bash is an sh-compatible shell\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                      Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
                      Source: glibc (2.36-9)\nVersion: 2.36-9+deb12u4\n";
        let pkgs = parse(status, "var/lib/dpkg/status");
        let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "libc6"]);
        assert_eq!(pkgs[0].purl, "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64");
        assert_eq!(
            pkgs[1].purl,
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc"
        );
        assert!(wants("var/lib/dpkg/status.d/base"));
        assert!(!wants("var/lib/dpkg/status-old"));
        assert!(!wants("var/lib/dpkg/status.d/base.md5sums"));
    }
}
