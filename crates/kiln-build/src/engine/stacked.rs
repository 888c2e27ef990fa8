//! RUN upper dirs stacked over a stage's root while their layers are
//! written (see kiln-sandbox's `stack` module for why).
//!
//! A RUN followed directly by another RUN leaves its upper dir where it is:
//! its layer writer reads it, and the next RUN mounts it as a lower dir
//! above the root. Everything else that reads or changes the root (COPY,
//! WORKDIR, a cached step, chroot isolation, `COPY --from`, the stage's
//! end) first folds the stacked dirs into the root, bottom first, each once
//! its writer has stopped reading it ([`fold`]); a RUN that is not followed
//! by a RUN folds them after its command, as it folds its own changes. So
//! the root is a plain directory again everywhere but between two RUNs.

use super::signal::Signal;
use kiln_sandbox::Changes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most upper dirs stacked at once: each is one more lower dir in the next
/// RUN's overlay mount. A RUN that would make more folds the stack instead
/// (waiting for the oldest writers).
const MAX_STACKED: usize = 8;
/// Most bytes of lower dir paths in one overlay mount: its options (upper
/// and work dirs too) must fit in a page.
const LOWERS_BUDGET: usize = 2048;

/// A RUN's changes kept as an upper dir above the stage's root.
pub(crate) struct StackedUpper {
    /// The step's changes: an overlay upper dir.
    pub changes: Changes,
    /// Set once the step's layer writer has stopped reading the upper dir.
    pub written: Arc<Signal<()>>,
}

impl StackedUpper {
    /// The upper dir.
    pub fn upper(&self) -> &Path {
        // Only upper dirs are stacked (see `run_step::execute`).
        self.changes.upper_dir().unwrap_or(Path::new(""))
    }
}

/// Whether a step's `upper` dir may go on `stack` over `root`: the next
/// RUN's overlay mount must take them all.
pub(crate) fn has_room(stack: &[StackedUpper], root: &Path, upper: &Path) -> bool {
    let bytes: usize = lowers(stack, root)
        .iter()
        .chain([&upper.to_path_buf()])
        .map(|p| p.as_os_str().len() + 1)
        .sum();
    stack.len() < MAX_STACKED && bytes <= LOWERS_BUDGET
}

/// The upper dirs of `stack` (bottom first), topmost first: the order of
/// an overlay's lower dirs, before the root.
pub(crate) fn lowers(stack: &[StackedUpper], root: &Path) -> Vec<PathBuf> {
    stack
        .iter()
        .rev()
        .map(|s| s.upper().to_path_buf())
        .chain([root.to_path_buf()])
        .collect()
}

/// Folds `stack` into `root`, bottom first, each upper dir once its layer
/// writer is done with it, and removes what the folding leaves of it.
/// Blocks. On error (logged here) the root is half changed and must not be
/// used again: the caller has it rebuilt.
pub(crate) fn fold(stack: Vec<StackedUpper>, root: &Path) -> kiln_sandbox::Result<()> {
    for stacked in stack {
        stacked.written.wait();
        if let Err(e) = stacked.changes.absorb_into(root) {
            tracing::warn!(
                "folding a RUN step's changes into the root failed ({e}); it will be rebuilt"
            );
            return Err(e);
        }
        let _ = std::fs::remove_dir_all(stacked.upper());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stacked(upper: &str) -> StackedUpper {
        StackedUpper {
            changes: Changes::Upper {
                upper: upper.into(),
                exclude: Default::default(),
                ids: Default::default(),
            },
            written: Arc::default(),
        }
    }

    #[test]
    fn the_stack_is_bounded_by_depth_and_by_the_mount_options_length() {
        let root = Path::new("/w/root");
        let stack: Vec<_> = (0..8)
            .map(|i| stacked(&format!("/w/run/{i}/upper")))
            .collect();
        let next = Path::new("/w/run/8/upper");
        assert!(has_room(&stack[..7], root, next));
        assert!(!has_room(&stack, root, next));
        let long = format!("/w/{}", "x".repeat(1100));
        assert!(has_room(&[], root, Path::new(&long)));
        assert!(has_room(&[stacked(&long)], root, next));
        assert!(!has_room(&[stacked(&long)], root, Path::new(&long)));
        assert_eq!(
            lowers(&stack[..2], root),
            ["/w/run/1/upper", "/w/run/0/upper", "/w/root"].map(PathBuf::from)
        );
    }

    #[test]
    fn folding_waits_for_each_writer_and_applies_the_stack_bottom_first() {
        let t = tempfile::tempdir().unwrap();
        let [root, low, high] = ["root", "low", "high"].map(|n| t.path().join(n));
        for d in [&root, &low, &high] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(low.join("f"), "low").unwrap();
        std::fs::write(high.join("f"), "high").unwrap();
        let stack = vec![
            stacked(low.to_str().unwrap()),
            stacked(high.to_str().unwrap()),
        ];
        let writers: Vec<_> = stack.iter().map(|s| s.written.clone()).collect();
        let folding = {
            let root = root.clone();
            std::thread::spawn(move || fold(stack, &root))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!folding.is_finished(), "folded before the layers were read");
        assert!(!root.join("f").exists());
        for w in writers {
            w.set(());
        }
        folding.join().unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "high");
        assert!(!low.exists() && !high.exists());
    }
}
