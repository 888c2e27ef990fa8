//! Alpine packages: apk's installed database (`lib/apk/db/installed`), one
//! paragraph of one-letter fields per package (`P:` name, `V:` version,
//! `A:` arch, `L:` licence, `o:` origin, `m:` maintainer), and each
//! package's files (`F:` a directory, `R:` a file in the last `F:`).

use super::files::{FileList, Owner};
use super::Package;
use crate::purl;

/// Whether the file at `path` is apk's database.
pub fn wants(path: &str) -> bool {
    path == "lib/apk/db/installed"
}

/// The packages in the database.
pub fn parse(text: &str, path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let get = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let (Some(name), Some(version)) = (get("P"), get("V")) else {
            continue;
        };
        let arch = get("A").unwrap_or("");
        let origin = get("o").unwrap_or("");
        out.push(Package {
            ecosystem: "apk",
            name: name.to_string(),
            version: version.to_string(),
            purl: purl::package(
                "apk",
                Some("alpine"),
                name,
                version,
                &[("arch", arch), ("upstream", origin)],
            ),
            license: get("L").map(str::to_string),
            supplier: get("m").map(str::to_string),
            found_in: format!("/{path}"),
        });
    }
    out
}

/// Each package's files, as the database lists them.
pub fn file_lists(text: &str) -> Vec<FileList> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut dir = "";
        let mut paths = Vec::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("P:") {
                name = Some(n.trim().to_string());
            } else if let Some(d) = line.strip_prefix("F:") {
                dir = d.trim().trim_matches('/');
            } else if let Some(f) = line.strip_prefix("R:") {
                let f = f.trim();
                if !f.is_empty() && !f.contains('/') {
                    paths.push(if dir.is_empty() {
                        f.to_string()
                    } else {
                        format!("{dir}/{f}")
                    });
                }
            }
        }
        if let Some(name) = name.filter(|_| !paths.is_empty()) {
            out.push(FileList {
                owner: Owner::Apk { name },
                paths,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_version_arch_and_licence() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\n\
                  C:Q1def=\nP:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\n\n";
        let pkgs = parse(db, "lib/apk/db/installed");
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "musl");
        assert_eq!(
            pkgs[0].purl,
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&upstream=musl"
        );
        assert_eq!(pkgs[1].license.as_deref(), Some("GPL-2.0-only"));
    }

    #[test]
    fn each_packages_files_are_its_r_lines_in_their_f_directory() {
        let db = "P:busybox\nV:1\nF:bin\nR:busybox\nR:sh\nF:etc/udhcpd\nR:udhcpd.conf\n\n\
                  P:empty\nV:1\nF:var\n\n";
        let lists = file_lists(db);
        assert_eq!(lists.len(), 1);
        assert_eq!(
            lists[0].owner,
            Owner::Apk {
                name: "busybox".into()
            }
        );
        assert_eq!(
            lists[0].paths,
            ["bin/busybox", "bin/sh", "etc/udhcpd/udhcpd.conf"]
        );
    }
}
