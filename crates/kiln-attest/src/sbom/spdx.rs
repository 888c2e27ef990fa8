//! The SPDX 2.3 JSON document: the image as the package the document
//! describes, and each package found as one it contains.
//!
//! Declared licences go to `licenseComments` as the package states them,
//! with `licenseDeclared` left `NOASSERTION`: package databases hold free
//! text ("BSD License", "GPLv2+"), not SPDX expressions, and a document
//! with an invalid expression does not validate.

use super::Package;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// What the document says about itself.
#[derive(Debug, Clone)]
pub struct DocumentInfo {
    /// The image's name (a destination, or `kiln-build`).
    pub image_name: String,
    /// The image's config digest (`sha256:…`), which names its contents.
    pub image_id: String,
    /// Creation time, `YYYY-MM-DDThh:mm:ssZ`.
    pub created: String,
    /// The creating tool, `kiln-VERSION`.
    pub tool: String,
}

/// The SPDX 2.3 document for `packages` found in the image `info` names.
pub fn document(info: &DocumentInfo, packages: &[Package]) -> Value {
    let mut hasher = Sha256::new();
    hasher.update(info.image_id.as_bytes());
    hasher.update(info.created.as_bytes());
    for p in packages {
        hasher.update(p.purl.as_bytes());
        hasher.update(p.found_in.as_bytes());
    }
    let unique = hex::encode(hasher.finalize());
    let mut spdx_packages = vec![json!({
        "name": info.image_name,
        "SPDXID": "SPDXRef-Image",
        "versionInfo": info.image_id,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
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
    for p in packages {
        let id = package_id(p);
        let mut pkg = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
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
    use super::*;

    #[test]
    fn every_package_is_contained_by_the_image() {
        let pkgs = super::super::npm::parse(
            r#"{"name":"@scope/x_y","version":"1.0.0","license":"MIT"}"#,
            "node_modules/@scope/x_y/package.json",
        );
        let doc = document(
            &DocumentInfo {
                image_name: "registry:5000/app:v1".into(),
                image_id: "sha256:00".into(),
                created: "2026-01-01T00:00:00Z".into(),
                tool: "kiln-0.1.0".into(),
            },
            &pkgs,
        );
        assert_eq!(doc["packages"].as_array().unwrap().len(), 2);
        let id = doc["packages"][1]["SPDXID"].as_str().unwrap();
        assert!(id.starts_with("SPDXRef-Package-npm--scope-x-y-"), "{id}");
        assert_eq!(doc["relationships"][1]["relatedSpdxElement"], id);
        assert_eq!(doc["packages"][1]["licenseDeclared"], "NOASSERTION");
    }
}
