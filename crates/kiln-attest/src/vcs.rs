//! The revision a build context was checked out at, for the provenance's
//! `buildkit_metadata.vcs` (as buildx records it for a local context in a
//! git checkout): the commit `HEAD` names and the `origin` remote's URL.
//!
//! Read from the files of the `.git` directory (or the `gitdir:` a
//! worktree's `.git` file names): CI images often have no `git` binary, and
//! these three files are all it takes (a library such as gix would be most
//! of kiln's build time for them).

use std::fs;
use std::path::{Path, PathBuf};

/// Where the context came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcs {
    /// The `origin` remote's URL, credentials cut; `None` without one.
    pub source: Option<String>,
    /// The commit checked out (40 or 64 hex digits).
    pub revision: String,
}

/// The git checkout `dir` is in (it or a parent holds `.git`), if any.
pub fn detect(dir: &Path) -> Option<Vcs> {
    let mut at = Some(dir);
    while let Some(d) = at {
        let dot_git = d.join(".git");
        if dot_git.exists() {
            return read(&dot_git);
        }
        at = d.parent();
    }
    None
}

fn read(dot_git: &Path) -> Option<Vcs> {
    let git_dir = if dot_git.is_file() {
        // A worktree or submodule: `gitdir: PATH`.
        let text = fs::read_to_string(dot_git).ok()?;
        let target = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
        if target.is_absolute() {
            target
        } else {
            dot_git.parent()?.join(target)
        }
    } else {
        dot_git.to_path_buf()
    };
    // A worktree's refs and config live in the common directory.
    let common = fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.clone());
    let head = fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let revision = match head.strip_prefix("ref:") {
        Some(name) => resolve_ref(&git_dir, &common, name.trim())?,
        None => head.to_string(),
    };
    if !is_object_id(&revision) {
        return None;
    }
    let source = origin_url(&common).map(|u| crate::provenance::redact_url_credentials(&u));
    Some(Vcs { source, revision })
}

fn resolve_ref(git_dir: &Path, common: &Path, name: &str) -> Option<String> {
    for dir in [git_dir, common] {
        if let Ok(id) = fs::read_to_string(dir.join(name)) {
            return Some(id.trim().to_string());
        }
    }
    let packed = fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (id, r) = l.split_once(' ')?;
        (r.trim() == name).then(|| id.to_string())
    })
}

/// `url` of `[remote "origin"]` in the repository's config.
fn origin_url(common: &Path) -> Option<String> {
    let config = fs::read_to_string(common.join("config")).ok()?;
    let mut in_origin = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_origin = line.replace(' ', "") == "[remote\"origin\"]";
            continue;
        }
        if in_origin {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "url" {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_through_a_ref_a_packed_ref_and_a_worktree() {
        let root = std::env::temp_dir().join(format!("kiln-vcs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let git = root.join("repo/.git");
        fs::create_dir_all(git.join("refs/heads")).unwrap();
        let id = "a".repeat(40);
        fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(git.join("refs/heads/main"), format!("{id}\n")).unwrap();
        fs::write(
            git.join("config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://ci:tok@git.example/app.git\n",
        )
        .unwrap();
        let sub = root.join("repo/services/api");
        fs::create_dir_all(&sub).unwrap();
        let found = detect(&sub).unwrap();
        assert_eq!(found.revision, id);
        assert_eq!(found.source.as_deref(), Some("https://git.example/app.git"));

        // A packed ref.
        fs::remove_file(git.join("refs/heads/main")).unwrap();
        let packed = "b".repeat(40);
        fs::write(
            git.join("packed-refs"),
            format!("# pack-refs\n{packed} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(detect(&sub).unwrap().revision, packed);

        // A worktree: `.git` is a file naming its gitdir, refs in the common dir.
        let wt_git = git.join("worktrees/wt");
        fs::create_dir_all(&wt_git).unwrap();
        fs::write(wt_git.join("HEAD"), format!("{}\n", "c".repeat(40))).unwrap();
        fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        let wt = root.join("wt");
        fs::create_dir_all(&wt).unwrap();
        fs::write(wt.join(".git"), format!("gitdir: {}\n", wt_git.display())).unwrap();
        let found = detect(&wt).unwrap();
        assert_eq!(found.revision, "c".repeat(40));
        assert_eq!(found.source.as_deref(), Some("https://git.example/app.git"));
        let _ = fs::remove_dir_all(&root);
    }
}
