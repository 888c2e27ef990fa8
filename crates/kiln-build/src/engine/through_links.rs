//! A COPY/ADD plan re-pointed through the links the image already has.
//!
//! The planner works with paths as the Dockerfile names them. When a copied
//! tree holds `bin/tool` and the image's `/bin` is a link to `usr/bin` (a
//! merged-/usr Debian or Ubuntu base), writing `bin/` and `bin/tool` into
//! the layer would replace the link with a directory when the image is
//! unpacked, and `/bin/sh` would be gone. Kaniko writes through such links;
//! so does kiln: every entry's parent is resolved inside the image, and a
//! directory entry for a path the image has as a link to a directory is
//! dropped (the directory exists where the link leads). ADD is left alone:
//! BuildKit unpacks an archive entry by entry, and a directory entry there
//! replaces a link the image has at that path.
//!
//! It resolves nothing itself: the caller's `resolve` answers from the
//! image's listings or its unpacked root (`ImageView::resolve`), not from
//! this build's files on disk, which kiln-layer's `resolve::in_root` covers.

use std::collections::HashMap;

use crate::copy::{CopyPlan, EntryKind, EntrySource};

/// `plan` with each path's parent resolved through the image's links.
/// `resolve` maps an absolute image path to where it leads (every link
/// followed, the last component included; `None` for a loop); `is_dir`
/// says whether a path, links followed, is a directory in the image.
pub(crate) fn through_image_links(
    plan: CopyPlan,
    resolve: impl Fn(&str) -> Option<String>,
    is_dir: impl Fn(&str) -> bool,
) -> CopyPlan {
    // Entries come sorted, so parents repeat: resolve each one once.
    let mut parents: HashMap<String, String> = HashMap::new();
    let mut map = |path: &str| -> String {
        let (parent, name) = match path.rfind('/') {
            Some(0) | None => ("/", path.trim_start_matches('/')),
            Some(i) => (&path[..i], &path[i + 1..]),
        };
        let resolved = parents
            .entry(parent.to_string())
            .or_insert_with(|| resolve(parent).unwrap_or_else(|| parent.to_string()));
        if resolved == "/" {
            format!("/{name}")
        } else {
            format!("{resolved}/{name}")
        }
    };
    let mut out = Vec::with_capacity(plan.entries().len());
    for entry in plan.entries() {
        let mut e = entry.clone();
        let mapped = map(&e.path);
        if e.kind == EntryKind::Dir
            && resolve(&mapped).is_some_and(|r| r != mapped)
            && is_dir(&mapped)
        {
            continue;
        }
        if e.kind == EntryKind::HardLink {
            if let EntrySource::Link(target) = &e.source {
                e.source = EntrySource::Link(map(target));
            }
        }
        e.path = mapped;
        out.push(e);
    }
    CopyPlan::from_entries(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::PlanEntry;

    fn entry(path: &str, kind: EntryKind, source: EntrySource) -> PlanEntry {
        PlanEntry {
            path: path.into(),
            kind,
            source,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    /// An image with `/bin -> usr/bin` and `/etc/service -> ../srv/service`.
    fn resolve(p: &str) -> Option<String> {
        let p = p.to_string();
        for (link, to) in [("/bin", "/usr/bin"), ("/etc/service", "/srv/service")] {
            if p == link {
                return Some(to.into());
            }
            if let Some(rest) = p.strip_prefix(&format!("{link}/")) {
                return Some(format!("{to}/{rest}"));
            }
        }
        Some(p)
    }

    fn is_dir(p: &str) -> bool {
        ["/bin", "/usr/bin", "/etc", "/etc/service", "/srv/service"].contains(&p)
    }

    #[test]
    fn a_copied_tree_goes_through_the_image_links() {
        let plan = CopyPlan::from_entries([
            entry("/bin", EntryKind::Dir, EntrySource::None),
            entry(
                "/bin/tool",
                EntryKind::File,
                EntrySource::Bytes(b"x"[..].into()),
            ),
            entry(
                "/bin/alias",
                EntryKind::HardLink,
                EntrySource::Link("/bin/tool".into()),
            ),
            entry("/etc", EntryKind::Dir, EntrySource::None),
            entry("/etc/service", EntryKind::Dir, EntrySource::None),
            entry("/etc/service/web", EntryKind::Dir, EntrySource::None),
            entry("/etc/service/web/run", EntryKind::File, EntrySource::None),
            entry("/etc/app.conf", EntryKind::File, EntrySource::None),
            entry("/new", EntryKind::Dir, EntrySource::None),
        ]);
        let out = through_image_links(plan, resolve, is_dir);
        let paths: Vec<&str> = out.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc",
                "/etc/app.conf",
                "/new",
                "/srv/service/web",
                "/srv/service/web/run",
                "/usr/bin/alias",
                "/usr/bin/tool"
            ]
        );
        let alias = out.get("/usr/bin/alias").unwrap();
        assert_eq!(alias.source, EntrySource::Link("/usr/bin/tool".into()));
    }
}
