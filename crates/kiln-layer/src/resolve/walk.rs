//! The component rules every in-root walk shares, whatever it holds for
//! each component reached (a name, an open directory): `..` drops the last
//! component reached and never rises above the root, a symlink's target is
//! spliced in place of the link, an absolute target starts again at the
//! root, and at most a fixed number of links are followed.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// More symlinks were met than the walk allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyLinks;

/// One walk of a path below a root.
pub(crate) struct Walk<T> {
    /// What each component reached so far below the root is (the root
    /// itself is not in it).
    reached: Vec<T>,
    /// Names still to visit, `..` among them.
    todo: VecDeque<OsString>,
    /// Links followed so far.
    links: usize,
    max_links: usize,
}

impl<T> Walk<T> {
    /// A walk of `path` (absolute or not: both start at the root) that
    /// follows at most `max_links` symlinks.
    pub fn new(path: &Path, max_links: usize) -> Walk<T> {
        Walk {
            reached: Vec::new(),
            todo: components(path).collect(),
            links: 0,
            max_links,
        }
    }

    /// The next name to look up below [`last`](Self::last), the `..`
    /// before it applied; `None` when the walk is done.
    pub fn next_name(&mut self) -> Option<OsString> {
        while let Some(name) = self.todo.pop_front() {
            if name.as_bytes() == b".." {
                self.reached.pop();
                continue;
            }
            return Some(name);
        }
        None
    }

    /// True when the name [`next_name`](Self::next_name) gave is the
    /// path's last component (nothing, not even `..`, follows it).
    pub fn at_last(&self) -> bool {
        self.todo.is_empty()
    }

    /// What the last component reached is; `None` at the root.
    pub fn last(&self) -> Option<&T> {
        self.reached.last()
    }

    /// What each component reached is, from the root down.
    pub fn reached(&self) -> &[T] {
        &self.reached
    }

    /// Records that the name just given was reached as `it`.
    pub fn push(&mut self, it: T) {
        self.reached.push(it);
    }

    /// The components reached, from the root down.
    pub fn into_reached(self) -> Vec<T> {
        self.reached
    }

    /// The name just given is a symlink to `target`: walks `target` next,
    /// from the root when it is absolute, then what followed the link.
    pub fn follow(&mut self, target: &Path) -> Result<(), TooManyLinks> {
        self.links += 1;
        if self.links > self.max_links {
            return Err(TooManyLinks);
        }
        if target.has_root() {
            self.reached.clear();
        }
        for (i, name) in components(target).enumerate() {
            self.todo.insert(i, name);
        }
        Ok(())
    }
}

/// The normal and `..` components of `path`, as owned names (`.`, empty
/// components and the root are no step of a walk).
pub(super) fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(walk: &mut Walk<OsString>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(name) = walk.next_name() {
            out.push(name.to_string_lossy().into_owned());
            walk.push(name);
        }
        out
    }

    #[test]
    fn dot_dot_never_rises_above_the_root() {
        let mut walk = Walk::new(Path::new("/../a/./b/../../../c"), 40);
        assert_eq!(names(&mut walk), ["a", "b", "c"]);
        assert_eq!(walk.into_reached(), [OsString::from("c")]);
    }

    #[test]
    fn a_target_is_walked_before_what_followed_the_link() {
        let mut walk: Walk<OsString> = Walk::new(Path::new("a/link/z"), 40);
        walk.next_name();
        walk.push("a".into());
        assert_eq!(walk.next_name().unwrap(), "link");
        walk.follow(Path::new("x/../y")).unwrap();
        assert_eq!(names(&mut walk), ["x", "y", "z"]);
        assert_eq!(
            walk.reached(),
            [OsString::from("a"), "y".into(), "z".into()]
        );

        let mut walk: Walk<OsString> = Walk::new(Path::new("a/link"), 40);
        walk.next_name();
        walk.push("a".into());
        walk.next_name();
        assert!(walk.at_last());
        walk.follow(Path::new("/b")).unwrap();
        assert_eq!(names(&mut walk), ["b"]);
        assert_eq!(walk.into_reached(), [OsString::from("b")]);
    }

    #[test]
    fn links_past_the_limit_are_refused() {
        let mut walk: Walk<()> = Walk::new(Path::new("l"), 2);
        walk.next_name();
        assert_eq!(walk.follow(Path::new("l")), Ok(()));
        walk.next_name();
        assert_eq!(walk.follow(Path::new("l")), Ok(()));
        walk.next_name();
        assert_eq!(walk.follow(Path::new("l")), Err(TooManyLinks));
    }
}
