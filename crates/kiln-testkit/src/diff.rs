//! Comparing two flattened images, with messages meant for assertion output.

use crate::flatten::Flattened;

/// Differences between the filesystems of `a` and `b`, one readable line
/// each; empty when they match. Mtimes are never compared (they are not
/// recorded). A path in `ignore` is skipped together with everything below it.
///
/// ```
/// # use kiln_testkit::{diff, Flattened};
/// # fn check(kiln: &Flattened, buildah: &Flattened) {
/// let d = diff(kiln, buildah, &["/var/cache"]);
/// assert!(d.is_empty(), "images differ:\n{}", d.join("\n"));
/// # }
/// ```
pub fn diff(a: &Flattened, b: &Flattened, ignore: &[&str]) -> Vec<String> {
    let ignored = |p: &str| {
        ignore.iter().any(|i| {
            let i = i.trim_end_matches('/');
            p == i || p.strip_prefix(i).is_some_and(|rest| rest.starts_with('/'))
        })
    };
    let mut out = Vec::new();
    for (path, ea) in &a.entries {
        if ignored(path) {
            continue;
        }
        match b.entries.get(path) {
            None => out.push(format!("only in a: {path} ({ea})")),
            Some(eb) if !ea.same_as(eb) => {
                out.push(format!("differs:   {path}\n  a: {ea}\n  b: {eb}"))
            }
            Some(_) => {}
        }
    }
    for (path, eb) in &b.entries {
        if !ignored(path) && !a.entries.contains_key(path) {
            out.push(format!("only in b: {path} ({eb})"));
        }
    }
    out
}
