//! Which top-level module of kiln-build may import which: every
//! `crate::X` path in src/ is checked against the table below, and the
//! table itself must have no cycle. A failure names the file and line of
//! the import that breaks the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and the modules it may import. A module may not import one
/// that (directly or through others) may import it back.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    // Leaves: what the user asked for, the tar rules, the progress events.
    // Everything else reads them; they read nothing of this crate.
    ("options", &[]),
    ("archive", &[]),
    ("progress", &[]),
    // The OCI image layout format (marker, blobs, index.json, its tar):
    // one writer and reader for the cache, warm, the outputs and the
    // several-platform join, so it sits below all of them.
    ("layout", &[]),
    // The image under construction, its blob store and its assembly: below
    // everything that builds, caches or writes an image. Its blob store
    // reports transfers as progress events.
    ("model", &["progress"]),
    // The build context unpacks tar contexts.
    ("context", &["archive"]),
    // COPY/ADD planning reads the context and writes layers as tars.
    ("copy", &["archive", "context"]),
    // Cache keys hash what a COPY plans; entries hold model layers; the
    // cache options say where it lives.
    ("cache", &["copy", "layout", "model", "options"]),
    // Outputs write a model image where the options say.
    ("output", &["layout", "model", "options", "progress"]),
    // The several-platform index names the attestation manifests outputs make.
    ("index", &["options", "output"]),
    // The engine drives everything; nothing imports it back.
    (
        "engine",
        &[
            "archive", "cache", "context", "copy", "index", "layout", "model", "options", "output",
            "progress",
        ],
    ),
];

fn table() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    MAY_IMPORT
        .iter()
        .map(|(module, allowed)| (*module, allowed.iter().copied().collect()))
        .collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every .rs file below `dir`, in a stable order.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to; None for lib.rs.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("a file below src/");
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(stem) => Some(stem.to_string()),
        None => Some(first.to_string()),
    }
}

/// The modules a line names as `crate::X` or `crate::{X, Y}`; comments
/// (including doc links) are not imports.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `kiln_build::crate::` does not exist, but `some_crate::x` would
        // match without this check.
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            found.extend(group.split(',').map(|item| ident(item.trim())));
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

#[test]
fn every_import_between_modules_is_allowed_by_the_table() {
    let table = table();
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files below {}",
        files.len(),
        src.display()
    );
    let mut offences = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        seen_modules.insert(module.clone());
        let allowed = table.get(module.as_str()).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` is not in the table of tests/module_layers.rs",
                file.display()
            )
        });
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for (number, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                // Paths to items of the crate root (`crate::build`) or to
                // the module itself are not imports between modules.
                if target == module || !table.contains_key(target.as_str()) {
                    continue;
                }
                if !allowed.contains(target.as_str()) {
                    offences.push(format!(
                        "{}:{}: `{module}` may not import `{target}`: {}",
                        file.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "imports against the table:\n{}",
        offences.join("\n")
    );
    // A row for a module that no longer exists would hide a rename.
    let listed: BTreeSet<String> = table.keys().map(|m| m.to_string()).collect();
    assert_eq!(
        listed, seen_modules,
        "the table and src/ list different modules"
    );
}

#[test]
fn the_table_has_no_cycle() {
    let table = table();
    // Depth-first search from each module, with the path walked so far.
    fn walk<'a>(
        table: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        module: &'a str,
        path: &mut Vec<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module);
            panic!("modules import each other: {}", cycle.join(" -> "));
        }
        path.push(module);
        for next in table.get(module).into_iter().flatten() {
            walk(table, next, path);
        }
        path.pop();
    }
    for module in table.keys() {
        walk(&table, module, &mut Vec::new());
    }
    for (module, allowed) in &table {
        for target in allowed {
            assert!(
                table.contains_key(target),
                "`{module}` may import unknown `{target}`"
            );
        }
    }
}

#[test]
fn the_line_reader_finds_paths_and_groups_and_skips_comments() {
    assert_eq!(crate_paths("use crate::model::image::LayerRef;"), ["model"]);
    assert_eq!(
        crate_paths("use crate::{cache, output::push};"),
        ["cache", "output"]
    );
    assert_eq!(
        crate_paths("/// See [`crate::engine`]."),
        Vec::<String>::new()
    );
    assert_eq!(crate_paths("x(); // crate::engine"), Vec::<String>::new());
    assert_eq!(crate_paths("use kiln_crate::engine;"), Vec::<String>::new());
}
