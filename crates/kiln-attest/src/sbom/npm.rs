//! npm packages: the `package.json` at the top of each package directory
//! under a `node_modules` (`node_modules/NAME/` or
//! `node_modules/@SCOPE/NAME/`), at any depth of nesting; `package.json`
//! files deeper inside a package (tests, fixtures) are not packages.

use super::Package;
use crate::purl;

/// Whether the file at `path` is a package's own `package.json`.
pub fn wants(path: &str) -> bool {
    let Some(dir) = path.strip_suffix("/package.json") else {
        return false;
    };
    let Some((_, rest)) = dir.rsplit_once("node_modules/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [name] => !name.is_empty() && !name.starts_with('@') && !name.starts_with('.'),
        [scope, name] => scope.starts_with('@') && !name.is_empty(),
        _ => false,
    }
}

/// The package a `package.json` describes.
pub fn parse(text: &str, path: &str) -> Vec<Package> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let (Some(name), Some(version)) = (json["name"].as_str(), json["version"].as_str()) else {
        return Vec::new();
    };
    let (namespace, short) = match name.split_once('/') {
        Some((scope, n)) if scope.starts_with('@') => (Some(scope), n),
        _ => (None, name),
    };
    let license = match &json["license"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("type").and_then(|t| t.as_str()).map(str::to_string),
        _ => None,
    };
    let supplier = match &json["author"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("name").and_then(|t| t.as_str()).map(str::to_string),
        _ => None,
    };
    vec![Package {
        ecosystem: "npm",
        name: name.to_string(),
        version: version.to_string(),
        purl: purl::package("npm", namespace, short, version, &[]),
        license,
        supplier,
        found_in: format!("/{path}"),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_package_json_of_each_package() {
        assert!(wants("app/node_modules/express/package.json"));
        assert!(wants("app/node_modules/@types/node/package.json"));
        assert!(wants("app/node_modules/a/node_modules/b/package.json"));
        assert!(!wants("app/node_modules/express/lib/package.json"));
        assert!(!wants("app/package.json"));
        let p = &parse(
            r#"{"name":"@types/node","version":"20.1.0","license":"MIT"}"#,
            "node_modules/@types/node/package.json",
        )[0];
        assert_eq!(p.purl, "pkg:npm/%40types/node@20.1.0");
        assert_eq!(p.license.as_deref(), Some("MIT"));
    }
}
