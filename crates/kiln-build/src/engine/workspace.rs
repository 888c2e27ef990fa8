//! The private working directory of one build.
//!
//! Every build works in a fresh directory of its own under `--kiln-dir` and
//! removes it when it ends (also on error and on panic, through `Drop`). Two
//! builds that share the kiln dir, one after another or at once, never see
//! each other's files: this is what makes several builds in one CI job safe.
//!
//! The kiln dir and every build's directory are mode 0700 from the moment
//! they exist: a base layer's setuid-root files (`su`, `mount`, `passwd`)
//! and whatever a RUN step makes setuid must be out of reach of the
//! machine's other users while the build runs. A build holds a lock on its
//! directory, so that the next build can tell and remove a directory whose
//! build died ([`super::leftovers`]).

use super::leftovers;
use super::pending::GateSignal;
use super::signal::{SetOnDrop, Signal};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The private directories of the builds a caller runs, so that an
/// interrupted process can remove them before it exits (its build threads
/// never get to run their `Drop`). The caller owns it and hands a clone to
/// each build it starts; builds given different registries share nothing.
#[derive(Debug, Clone, Default)]
pub struct Workspaces(Arc<Mutex<Registry>>);

#[derive(Debug, Default)]
struct Registry {
    live: Vec<PathBuf>,
    /// Set by [`Workspaces::remove_all_after_interrupt`]: no new workspace
    /// may start.
    interrupted: bool,
}

impl Workspaces {
    /// Removes the private directory of every build still running with
    /// this registry and refuses new ones. Call it on SIGINT/SIGTERM,
    /// after the RUN steps' processes are gone
    /// (`kiln_sandbox::terminate_running`), right before exiting.
    pub fn remove_all_after_interrupt(&self) {
        let live = {
            let mut registry = self.lock();
            registry.interrupted = true;
            std::mem::take(&mut registry.live)
        };
        for root in live {
            // A build thread may still be writing: retry a few times.
            for _ in 0..5 {
                if remove_tree(&root) {
                    break;
                }
            }
        }
    }

    /// The directories of the builds running now.
    pub fn live(&self) -> Vec<PathBuf> {
        self.lock().live.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A build's private directory and its fixed subdirectories.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    keep: bool,
    busy: BusyTrees,
    /// Deferred RUN layer writers not yet told to write or to discard.
    gates: Gates,
    /// Where the directory is registered while the build runs.
    registry: Workspaces,
    /// Numbers the RUN steps' private directories and mounts.
    runs: AtomicUsize,
    /// The open directory whose `flock` tells other builds this one lives.
    _lock: fs::File,
}

/// Trees inside the workspace that other threads still read or remove (a
/// RUN layer's shadow, removed by its writer once the layer is written).
#[derive(Default)]
struct BusyTrees(Mutex<Vec<Arc<Signal<()>>>>);

impl std::fmt::Debug for BusyTrees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().unwrap_or_else(|e| e.into_inner()).len();
        write!(f, "BusyTrees({n})")
    }
}

/// The trees other threads use, as a step that changes a root in place
/// found them when it began. Deferred layer writers are let start first:
/// one still to start would read, through the hard links its shadow
/// shares with the root, what the step changed.
pub(crate) struct TreesInUse {
    gates: Vec<Arc<GateSignal>>,
    busy: Vec<Arc<Signal<()>>>,
}

impl TreesInUse {
    /// Blocks until no other thread reads or removes those trees.
    pub(crate) fn wait(&self) {
        for gate in &self.gates {
            gate.set_if_unset(true);
        }
        for done in &self.busy {
            done.wait();
        }
    }
}

/// The gates of deferred RUN layer writers (see `engine::pending`).
#[derive(Default)]
struct Gates(Mutex<Vec<Arc<GateSignal>>>);

impl Gates {
    /// The gates still undecided, forgetting the others.
    fn undecided(&self) -> Vec<Arc<GateSignal>> {
        let mut gates = self.0.lock().unwrap_or_else(|e| e.into_inner());
        gates.retain(|g| g.get().is_none());
        gates.clone()
    }
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().unwrap_or_else(|e| e.into_inner()).len();
        write!(f, "Gates({n})")
    }
}

impl Workspace {
    /// Creates `<parent>/build-<pid>-<random>` (and `parent` if missing),
    /// both mode 0700, locks it, registers it in `registry`, and removes
    /// what dead builds left in `parent`.
    pub fn create(parent: &Path, registry: &Workspaces) -> io::Result<Workspace> {
        make_private_dir(parent)?;
        // Made and locked under a name no sweep looks at, then renamed: a
        // `build-*` without its lock is always one whose build is dead.
        let dir = tempfile::Builder::new()
            .prefix(&format!(".new-{}-", std::process::id()))
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        let lock = leftovers::open_dir(dir.path())?;
        if !leftovers::try_lock(&lock)? {
            return Err(io::Error::other("a new build directory is locked already"));
        }
        let name = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().replacen(".new-", leftovers::PREFIX, 1))
            .unwrap_or_default();
        let root = parent.join(name);
        fs::rename(dir.path(), &root)?;
        // The TempDir no longer names anything: forget it.
        let _ = dir.keep();
        leftovers::sweep(parent, &root);
        {
            let mut registered = registry.lock();
            if registered.interrupted {
                let _ = fs::remove_dir_all(&root);
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            registered.live.push(root.clone());
        }
        for sub in ["blobs", "layers", "rootfs", "scratch", "context"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Workspace {
            root,
            keep: false,
            busy: BusyTrees::default(),
            gates: Gates::default(),
            registry: registry.clone(),
            runs: AtomicUsize::new(0),
            _lock: lock,
        })
    }

    /// Notes a tree in the workspace that another thread uses until `done`
    /// is set (it must be set however that thread ends).
    pub(crate) fn track_busy(&self, done: Arc<Signal<()>>) {
        let mut busy = self.busy.0.lock().unwrap_or_else(|e| e.into_inner());
        busy.retain(|d| d.get().is_none());
        busy.push(done);
    }

    /// Notes a deferred layer writer's gate; its tree is tracked as busy
    /// too ([`Workspace::track_busy`]), from the start.
    pub(crate) fn track_gate(&self, gate: Arc<GateSignal>) {
        let mut gates = self.gates.0.lock().unwrap_or_else(|e| e.into_inner());
        gates.retain(|g| g.get().is_none());
        gates.push(gate);
    }

    /// What a step that changes a root in place must wait for (see
    /// [`TreesInUse`]).
    pub(crate) fn trees_in_use(&self) -> TreesInUse {
        TreesInUse {
            gates: self.gates.undecided(),
            busy: self.busy_trees(),
        }
    }

    /// Tells every deferred layer writer still waiting that no one will
    /// ask for its layer: once the stages are done, and before waiting
    /// for the busy trees (an undecided writer never ends).
    pub(crate) fn close_gates(&self) {
        for gate in self.gates.undecided() {
            gate.set_if_unset(false);
        }
    }

    /// What marks the end of each tree still in use: a step that changes a
    /// root in place waits for them all (unlinking a shadow's hard links
    /// changes the ctime of the root's files, which a chroot snapshot of
    /// that root would take for a change).
    pub(crate) fn busy_trees(&self) -> Vec<Arc<Signal<()>>> {
        let mut busy = self.busy.0.lock().unwrap_or_else(|e| e.into_inner());
        busy.retain(|d| d.get().is_none());
        busy.clone()
    }

    /// Starts removing `dirs` (trees no step reads any more) with
    /// [`remove_bulk`] on a thread of its own, while the build goes on; the
    /// workspace waits for it before removing the rest.
    pub(crate) fn remove_in_background(&self, dirs: Vec<PathBuf>) {
        if self.keep || dirs.is_empty() {
            return;
        }
        let done = Arc::new(Signal::default());
        self.track_busy(done.clone());
        let spawned = std::thread::Builder::new()
            .name("remove-trees".into())
            .spawn(move || {
                let _done = SetOnDrop(done);
                remove_bulk(dirs);
            });
        if let Err(e) = spawned {
            // The closure (and its signal) is dropped: the trees go with
            // the rest of the workspace.
            tracing::debug!("removing trees in the background: {e}");
        }
    }

    /// Blocks until no thread uses a tree in the workspace any more: before
    /// the workspace's directories are removed.
    pub fn wait_until_idle(&self) {
        self.close_gates();
        for done in self.busy_trees() {
            done.wait();
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where downloaded blobs are kept, content-addressed.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where layers written by this build go.
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Where root filesystems are materialized, one directory per name.
    pub fn rootfs(&self, name: &str) -> PathBuf {
        self.root.join("rootfs").join(name)
    }

    /// A number no other RUN step or mount of this build has had, for
    /// naming its private directories.
    pub(crate) fn next_run_number(&self) -> usize {
        self.runs.fetch_add(1, Ordering::Relaxed)
    }

    /// Scratch space (ADD archive spooling, downloads in progress).
    pub fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }

    /// The directories holding most of the build's files (root
    /// filesystems, RUN scratch, unpacked contexts): what [`remove_bulk`]
    /// takes once the image no longer needs them.
    pub fn bulk_dirs(&self) -> Vec<PathBuf> {
        if self.keep {
            return Vec::new();
        }
        ["rootfs", "run", "scratch", "context"]
            .iter()
            .map(|d| self.root.join(d))
            .collect()
    }

    /// The root filesystems of stage `index`: its own, and the copy made for
    /// `COPY --from` or RUN bind mounts.
    pub fn stage_roots(&self, index: usize) -> Vec<PathBuf> {
        if self.keep {
            return Vec::new();
        }
        let own = format!("stage-{index}");
        let own_renamed = format!("stage-{index}-");
        let read_from = format!("from-stage-{index}");
        fs::read_dir(self.root.join("rootfs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name == own || name.starts_with(&own_renamed) || name == read_from
            })
            .map(|e| e.path())
            .collect()
    }

    /// Where a `tar://` context is unpacked.
    pub fn context(&self) -> PathBuf {
        self.root.join("context")
    }

    /// Keeps the directory after the build (for debugging with `KILN_KEEP_WORKDIR`).
    pub fn keep(&mut self) {
        self.keep = true;
        // Later builds must not sweep it away either.
        let _ = fs::write(self.root.join(leftovers::KEEP_MARKER), b"");
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        self.wait_until_idle();
        if !self.keep {
            remove_tree(&self.root);
        }
        // Only now: an interrupt meanwhile must still wait for the removal.
        self.registry.lock().live.retain(|root| root != &self.root);
    }
}

/// Removes the build's root filesystems and scratch space — nearly all of
/// its files — several subtrees at a time. Called once the image is
/// assembled, while the outputs are written: unlinking is I/O-bound (on
/// disks mounted with `discard`, slower than writing the files was), so
/// it overlaps the push and keeps the disk's queue full.
pub fn remove_bulk(paths: Vec<PathBuf>) {
    let units = removal_units(&paths);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 4;
    let queue = std::sync::Mutex::new(units.into_iter());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                yield_to_the_build();
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(path) = next else { break };
                    if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                        remove_tree(&path);
                    } else {
                        let _ = fs::remove_file(&path);
                    }
                }
            });
        }
    });
    for dir in &paths {
        remove_tree(dir);
    }
}

/// How deep below each path [`removal_units`] splits directories.
const SPLIT_DEPTH: usize = 5;
/// How many units [`removal_units`] makes at most: enough to keep every
/// thread busy, few enough that listing them costs nothing.
const MAX_UNITS: usize = 20_000;

/// What [`remove_bulk`]'s threads share out: the entries of `paths` and of
/// the directories below them, level by level down to [`SPLIT_DEPTH`] (or
/// until there are [`MAX_UNITS`]), whatever is not split further being one
/// unit. Going by levels rather than a fixed depth matters for the trees
/// a build makes: a RUN that installs a 150,000-file environment under
/// `/opt/env/site-packages` leaves it four levels down, and as one unit it
/// was removed by one thread while the others had finished. The emptied
/// directories above the units go last, with `paths`.
fn removal_units(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut units = Vec::new();
    let mut level: Vec<PathBuf> = paths.to_vec();
    for depth in 0..SPLIT_DEPTH {
        let mut next = Vec::new();
        let mut dirs = level.into_iter();
        for dir in dirs.by_ref() {
            match fs::read_dir(&dir) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        // The entry's own type: a symlink is never followed.
                        if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            next.push(entry.path());
                        } else {
                            units.push(entry.path());
                        }
                    }
                }
                // Unreadable: its removal sorts it out (or the last pass).
                Err(_) if depth > 0 => units.push(dir),
                Err(_) => {}
            }
            if units.len() + next.len() >= MAX_UNITS {
                break;
            }
        }
        // Directories not listed (enough units already) stay whole.
        units.extend(dirs.filter(|_| depth > 0));
        level = next;
        if units.len() + level.len() >= MAX_UNITS {
            break;
        }
    }
    units.extend(level);
    units
}

/// Lowers the calling thread's CPU priority (nice 10): removal runs beside
/// the build's own work (a layer being compressed, a push, a RUN), which
/// must not wait for it; when nothing else runs it costs nothing.
fn yield_to_the_build() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// Makes `dir` (and its missing parents), `dir` itself mode 0700. One that
/// exists is left as it is (it may be a shared directory such as `/tmp`):
/// what kiln keeps in it is private on its own (`build-*`, the RUN cache
/// directories). One that belongs to another user gets a warning: that user
/// could rename the builds' directories away under them.
fn make_private_dir(dir: &Path) -> io::Result<()> {
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(up)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::metadata(dir)?;
    // SAFETY: geteuid has no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        tracing::warn!(
            "the kiln dir {} belongs to uid {}, not to this user ({me}); pass --kiln-dir with a \
             directory of your own",
            dir.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// Makes `dir` (a directory kiln alone uses inside the kiln dir, such as
/// the RUN cache's) mode 0700, tightening one an older kiln made wider.
pub(crate) fn make_own_private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Removes `root`; true when it is gone.
pub(super) fn remove_tree(root: &Path) -> bool {
    // Files written as another user or made read-only by a layer are still
    // removable by the owner of the parent directory, but a read-only
    // directory must be made writable first.
    if fs::remove_dir_all(root).is_err() {
        make_writable(root);
        let _ = fs::remove_dir_all(root);
    }
    !root.exists()
}

fn make_writable(root: &Path) {
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workspaces_are_separate_and_removed() {
        let parent = tempfile::tempdir().unwrap();
        let a = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        let b = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        assert_ne!(a.root(), b.root());
        fs::write(a.scratch().join("x"), b"x").unwrap();
        assert!(!b.scratch().join("x").exists());
        let (ra, rb) = (a.root().to_path_buf(), b.root().to_path_buf());
        drop(a);
        assert!(!ra.exists());
        assert!(rb.exists());
        drop(b);
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_kiln_dir_and_the_build_dir_are_private_from_creation() {
        let top = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        let fresh = top.path().join("a/kiln");
        let ws = Workspace::create(&fresh, &Workspaces::default()).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(ws.root()), 0o700);
        assert!(ws
            .root()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("build-"));
        // One that exists (`/tmp`, say) is left as it is; what kiln puts
        // in it is private on its own.
        let existing = top.path().join("b");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o1777)).unwrap();
        let ws2 = Workspace::create(&existing, &Workspaces::default()).unwrap();
        assert_eq!(mode(&existing), 0o1777);
        assert_eq!(mode(ws2.root()), 0o700);
        let cache = existing.join("run-cache");
        fs::create_dir(&cache).unwrap();
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).unwrap();
        make_own_private_dir(&cache).unwrap();
        make_own_private_dir(&existing.join("run-cache-locks")).unwrap();
        assert_eq!(mode(&cache), 0o700);
        assert_eq!(mode(&existing.join("run-cache-locks")), 0o700);
    }

    #[test]
    fn a_live_build_keeps_its_directory_and_a_dead_ones_goes() {
        let parent = tempfile::tempdir().unwrap();
        let a = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        // What a build killed with SIGKILL leaves: a build dir, no lock.
        let dead = parent.path().join("build-1-dead");
        fs::create_dir_all(dead.join("rootfs/stage-0/usr/bin")).unwrap();
        let b = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        assert!(a.root().exists(), "a running build's directory was swept");
        assert!(!dead.exists(), "the dead build's directory stayed");
        drop((a, b));
    }

    #[test]
    fn bulk_removal_empties_the_big_dirs_and_keeps_the_rest() {
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        for stage in ["stage-0", "stage-1"] {
            for dir in ["bin", "usr/lib", "etc"] {
                let d = ws.rootfs(stage).join(dir);
                fs::create_dir_all(&d).unwrap();
                for i in 0..50 {
                    fs::write(d.join(format!("f{i}")), b"x").unwrap();
                }
            }
            std::os::unix::fs::symlink("usr/lib", ws.rootfs(stage).join("lib")).unwrap();
        }
        fs::write(ws.layers().join("blob"), b"layer").unwrap();
        remove_bulk(ws.bulk_dirs());
        assert!(!ws.root().join("rootfs").exists());
        assert!(
            ws.layers().join("blob").exists(),
            "layers are still needed by the outputs"
        );
    }

    #[test]
    fn a_deep_narrow_tree_is_split_among_the_threads_and_removed_whole() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("root");
        // The shape of a RUN's environment: one chain of directories, then
        // a wide one with many small subtrees, and a symlink out of the
        // tree that must not be followed.
        let wide = root.join("opt/env/site-packages");
        for p in 0..40 {
            let pkg = wide.join(format!("pkg{p:03}"));
            fs::create_dir_all(&pkg).unwrap();
            for m in 0..5 {
                fs::write(pkg.join(format!("mod{m}.py")), b"x").unwrap();
            }
        }
        let outside = parent.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("opt/link")).unwrap();

        let units = removal_units(std::slice::from_ref(&root));
        // Split below the wide directory, not left whole above it.
        assert!(!units.iter().any(|u| wide.starts_with(u)), "{units:?}");
        let below = units.iter().filter(|u| u.starts_with(&wide)).count();
        assert!(below >= 40, "at least a unit per package: {units:?}");
        assert!(units.contains(&root.join("opt/link")));

        remove_bulk(vec![root.clone()]);
        assert!(!root.exists());
        assert!(outside.join("keep").exists(), "a symlink is not followed");
    }

    #[test]
    fn read_only_dirs_are_removed_too() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        let ro = ws.rootfs("s0").join("ro");
        fs::create_dir_all(&ro).unwrap();
        fs::write(ro.join("f"), b"x").unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let root = ws.root().to_path_buf();
        drop(ws);
        assert!(!root.exists());
    }

    #[test]
    fn a_tree_removed_in_the_background_is_gone_once_the_workspace_is_idle() {
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        let root = ws.rootfs("stage-0");
        for dir in ["usr/lib", "etc"] {
            fs::create_dir_all(root.join(dir)).unwrap();
            for i in 0..100 {
                fs::write(root.join(dir).join(format!("f{i}")), b"x").unwrap();
            }
        }
        ws.remove_in_background(vec![root.clone()]);
        assert!(ws.busy_trees().len() <= 1);
        ws.wait_until_idle();
        assert!(!root.exists());
        assert!(ws.busy_trees().is_empty());
    }

    #[test]
    fn the_workspace_waits_for_a_thread_still_using_it_before_it_goes() {
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        let done = Arc::new(Signal::default());
        ws.track_busy(done.clone());
        let root = ws.root().to_path_buf();
        let late = root.join("run").join("late");
        let worker = std::thread::spawn(move || {
            let _done = SetOnDrop(done);
            std::thread::sleep(std::time::Duration::from_millis(100));
            // Had the workspace not waited, this would outlive its removal.
            fs::create_dir_all(late.parent().unwrap()).unwrap();
            fs::write(&late, b"written late").unwrap();
        });
        drop(ws);
        worker.join().unwrap();
        assert!(
            !root.exists(),
            "the late file was written after the removal"
        );
    }

    /// A deferred writer: waits at its gate, reports what it was told.
    fn deferred_writer(ws: &Workspace) -> (Arc<GateSignal>, std::thread::JoinHandle<bool>) {
        let (done, gate) = (Arc::new(Signal::default()), Arc::new(GateSignal::default()));
        ws.track_busy(done.clone());
        ws.track_gate(gate.clone());
        let wait = gate.clone();
        let writer = std::thread::spawn(move || {
            let _done = SetOnDrop(done);
            wait.wait()
        });
        (gate, writer)
    }

    #[test]
    fn a_deferred_writer_no_one_let_go_is_told_to_drop_its_layer_when_the_workspace_goes() {
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        let (_gate, writer) = deferred_writer(&ws);
        // Waiting for the busy trees would never end without this.
        drop(ws);
        assert!(!writer.join().unwrap(), "told to drop");
    }

    #[test]
    fn a_step_that_changes_a_root_in_place_lets_deferred_writers_go_and_waits_for_them() {
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create(parent.path(), &Workspaces::default()).unwrap();
        let (gate, writer) = deferred_writer(&ws);
        ws.trees_in_use().wait();
        assert_eq!(gate.get(), Some(true));
        assert!(writer.join().unwrap());
        // Decided once: closing afterwards changes nothing.
        ws.close_gates();
        assert_eq!(gate.get(), Some(true));
    }

    #[test]
    fn an_interrupt_removes_the_builds_of_its_registry_only() {
        let parent = tempfile::tempdir().unwrap();
        let (mine, other) = (Workspaces::default(), Workspaces::default());
        let a = Workspace::create(parent.path(), &mine).unwrap();
        let b = Workspace::create(parent.path(), &other).unwrap();
        assert_eq!(mine.live(), vec![a.root().to_path_buf()]);
        assert_eq!(other.live(), vec![b.root().to_path_buf()]);
        // Each build numbers its own RUN steps.
        assert_eq!((a.next_run_number(), a.next_run_number()), (0, 1));
        assert_eq!(b.next_run_number(), 0);
        mine.remove_all_after_interrupt();
        assert!(
            !a.root().exists(),
            "the interrupted build's directory stayed"
        );
        assert!(b.root().exists(), "another registry's build was removed");
        let refused = Workspace::create(parent.path(), &mine).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::Interrupted);
        let c = Workspace::create(parent.path(), &other).unwrap();
        drop((a, b, c));
        assert!(other.live().is_empty());
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
