//! The SPDX 2.3 JSON document: the image as the package the document
//! describes, each package found as one it contains, and each regular file
//! with its SHA-1 and SHA-256, contained by the packages whose databases
//! list it, or else by the image. A package containing files says
//! `filesAnalyzed: true` (SPDX forbids files in a package that says
//! `false`); its verification code, optional since SPDX 2.3, is left out.
//! File names are relative to the image's root with SPDX's `./` prefix.
//!
//! Declared licences go to `licenseComments` as the package states them,
//! with `licenseDeclared` left `NOASSERTION`: package databases hold free
//! text ("BSD License", "GPLv2+"), not SPDX expressions, and a document
//! with an invalid expression does not validate.

use super::{Inventory, Package};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;

/// What the document says about itself.
#[derive(Debug, Clone)]
pub struct DocumentInfo {
    /// The image's name (a destination, or `kiln-build`).
    pub image_name: String,
    /// The image's config digest (`sha256:…`), which names its contents.
    pub image_id: String,
    /// Creation time, `YYYY-MM-DDThh:mm:ssZ`.
    pub created: String,
    /// What sets this build apart from any other (its invocation id): SPDX
    /// wants every document's namespace to be its own, and two builds of
    /// one image within a second would otherwise write the same document.
    pub invocation_id: String,
    /// The creating tool, `kiln-VERSION`.
    pub tool: String,
}

/// The SPDX 2.3 document for what `inventory` found in the image `info`
/// names.
pub fn document(info: &DocumentInfo, inventory: &Inventory) -> Value {
    let packages = &inventory.packages;
    let mut hasher = Sha256::new();
    hasher.update(info.image_id.as_bytes());
    hasher.update(info.created.as_bytes());
    hasher.update(info.invocation_id.as_bytes());
    for p in packages {
        hasher.update(p.purl.as_bytes());
        hasher.update(p.found_in.as_bytes());
    }
    for f in &inventory.files {
        hasher.update(f.path.as_bytes());
        hasher.update(f.digests.sha256);
    }
    let unique = hex::encode(hasher.finalize());
    let owning: BTreeSet<usize> = inventory
        .files
        .iter()
        .flat_map(|f| f.owners.clone())
        .collect();
    let image_has_files = inventory.files.iter().any(|f| f.owners.is_empty());
    let mut spdx_packages = vec![json!({
        "name": info.image_name,
        "SPDXID": "SPDXRef-Image",
        "versionInfo": info.image_id,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": image_has_files,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    let mut ids = Vec::with_capacity(packages.len());
    for (index, p) in packages.iter().enumerate() {
        let id = package_id(p);
        ids.push(id.clone());
        let mut pkg = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": owning.contains(&index),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("{} database: {}", p.ecosystem, p.found_in),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        });
        if let Some(license) = &p.license {
            pkg["licenseComments"] = Value::String(format!("declared: {license}"));
        }
        if let Some(supplier) = p.supplier.as_deref().filter(|s| !s.contains('\n')) {
            pkg["supplier"] = Value::String(format!("Person: {supplier}"));
        }
        spdx_packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut files = Vec::with_capacity(inventory.files.len());
    let mut file_ids = BTreeSet::new();
    for f in &inventory.files {
        let id = file_id(&f.path, &mut file_ids);
        files.push(json!({
            "fileName": format!(".{}", f.path),
            "SPDXID": id,
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": hex::encode(f.digests.sha1)},
                {"algorithm": "SHA256", "checksumValue": hex::encode(f.digests.sha256)},
            ],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }));
        let containers: Vec<&str> = if f.owners.is_empty() {
            vec!["SPDXRef-Image"]
        } else {
            f.owners.iter().map(|&o| ids[o].as_str()).collect()
        };
        for container in containers {
            relationships.push(json!({
                "spdxElementId": container,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": id,
            }));
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("sbom-{}", info.image_name),
        "documentNamespace": format!(
            "https://github.com/kiln-build/kiln/spdx/{}-{unique}",
            sanitize(&info.image_name)
        ),
        "creationInfo": {
            "created": info.created,
            "creators": [format!("Tool: {}", info.tool)],
        },
        "packages": spdx_packages,
        "files": files,
        "relationships": relationships,
    })
}

/// `SPDXRef-Package-ECOSYSTEM-NAME-HASH`: unique per package and place.
fn package_id(p: &Package) -> String {
    let mut hasher = Sha256::new();
    hasher.update(p.purl.as_bytes());
    hasher.update(p.found_in.as_bytes());
    let hash = hex::encode(hasher.finalize());
    format!(
        "SPDXRef-Package-{}-{}-{}",
        p.ecosystem,
        sanitize(&p.name),
        &hash[..12]
    )
}

/// `SPDXRef-File-HASH`, from the path (so the same file keeps its id from
/// one build to the next), made unique among `taken` if two paths' hashes
/// ever share a prefix.
fn file_id(path: &str, taken: &mut BTreeSet<String>) -> String {
    let hash = hex::encode(Sha256::digest(path.as_bytes()));
    let mut id = format!("SPDXRef-File-{}", &hash[..16]);
    let mut n = 1;
    while !taken.insert(id.clone()) {
        n += 1;
        id = format!("SPDXRef-File-{}-{n}", &hash[..16]);
    }
    id
}

/// Only the characters SPDX ids and URIs allow.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Digests, ImageFile};
    use super::*;

    fn info() -> DocumentInfo {
        DocumentInfo {
            image_name: "registry:5000/app:v1".into(),
            image_id: "sha256:00".into(),
            created: "2026-01-01T00:00:00Z".into(),
            invocation_id: "0123456789abcdef0123456789".into(),
            tool: "kiln-0.1.0".into(),
        }
    }

    #[test]
    fn two_builds_of_one_image_in_one_second_write_two_documents() {
        let empty = || Inventory {
            packages: vec![],
            files: vec![],
        };
        let first = document(&info(), &empty());
        let mut other = info();
        other.invocation_id = "fedcba9876543210fedcba9876".into();
        let second = document(&other, &empty());
        assert_eq!(first["creationInfo"], second["creationInfo"]);
        assert_ne!(first["documentNamespace"], second["documentNamespace"]);
        assert_eq!(first, document(&info(), &empty()));
    }

    #[test]
    fn every_package_is_contained_by_the_image() {
        let pkgs = super::super::npm::parse(
            r#"{"name":"@scope/x_y","version":"1.0.0","license":"MIT"}"#,
            "node_modules/@scope/x_y/package.json",
        );
        let doc = document(
            &info(),
            &Inventory {
                packages: pkgs,
                files: vec![],
            },
        );
        assert_eq!(doc["packages"].as_array().unwrap().len(), 2);
        let id = doc["packages"][1]["SPDXID"].as_str().unwrap();
        assert!(id.starts_with("SPDXRef-Package-npm--scope-x-y-"), "{id}");
        assert_eq!(doc["relationships"][1]["relatedSpdxElement"], id);
        assert_eq!(doc["packages"][1]["licenseDeclared"], "NOASSERTION");
        assert_eq!(doc["packages"][0]["filesAnalyzed"], false);
        assert_eq!(doc["files"], serde_json::json!([]));
    }

    #[test]
    fn files_carry_both_checksums_and_are_contained_by_their_owner_or_the_image() {
        let pkgs = super::super::npm::parse(
            r#"{"name":"a","version":"1.0.0"}"#,
            "node_modules/a/package.json",
        );
        let file = |path: &str, owners: Vec<usize>| ImageFile {
            path: path.into(),
            digests: Digests::of(path.as_bytes()),
            owners,
        };
        let doc = document(
            &info(),
            &Inventory {
                packages: pkgs,
                files: vec![
                    file("/etc/motd", vec![]),
                    file("/node_modules/a/index.js", vec![0]),
                ],
            },
        );
        let files = doc["files"].as_array().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0]["fileName"], "./etc/motd");
        assert_eq!(files[0]["checksums"][0]["algorithm"], "SHA1");
        assert_eq!(
            files[0]["checksums"][0]["checksumValue"],
            hex::encode(Digests::of(b"/etc/motd").sha1)
        );
        assert_eq!(files[0]["checksums"][1]["algorithm"], "SHA256");
        let contains = |from: &Value, to: &Value| {
            doc["relationships"].as_array().unwrap().iter().any(|r| {
                r["spdxElementId"] == *from
                    && r["relationshipType"] == "CONTAINS"
                    && r["relatedSpdxElement"] == *to
            })
        };
        let (image, package) = (&doc["packages"][0], &doc["packages"][1]);
        assert!(contains(&image["SPDXID"], &files[0]["SPDXID"]));
        assert!(contains(&package["SPDXID"], &files[1]["SPDXID"]));
        assert!(!contains(&image["SPDXID"], &files[1]["SPDXID"]));
        // SPDX allows files only in a package whose files were analysed.
        assert_eq!(image["filesAnalyzed"], true);
        assert_eq!(package["filesAnalyzed"], true);
        let mut taken = BTreeSet::new();
        let a = file_id("/x", &mut taken);
        assert_ne!(a, file_id("/x", &mut taken), "ids stay unique");
    }
}
