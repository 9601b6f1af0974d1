//! The scan: a thread that counts, while the backup runs, the files and
//! bytes below the roots, so that the progress can show a percentage and
//! the time left. It only reads (`readdir`, `lstat`), never changes what
//! is backed up, ignores every error (the backup's own walk reports
//! them), and stops when told to.
//!
//! The scan does **not** ask the `backup-exclude` hook. That hook's
//! contract (see the plugin guide) is one call per object, in the walk's
//! order, from one thread: plugins may count on it (the test plugin
//! `hostile` changes the file it is asked about, to win a race with the
//! walk), and a plugin that reads each file's head to decide (like
//! `examples/skip-marker`) would read everything twice. Instead the walk
//! tells the scan what it left out ([`Scan::left_out`]), and the scan
//! takes it off its totals:
//!
//! - a file left out is subtracted at once (the scan counts it before or
//!   after, once);
//! - a folder left out that the scan has not finished yet is skipped when
//!   the scan gets there, or subtracted when the scan leaves it;
//! - a folder left out that the scan had finished is subtracted with the
//!   totals the scan kept for it (for at most [`KEPT_DIRS`] folders ahead
//!   of the walk; past that, such a folder stays counted).
//!
//! So the totals are exact for what the walk has reached, and until the
//! walk reaches an excluded object they still include it: with
//! exclusions, the total falls as the backup goes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use plugin_api::payloads::FileStat;
use progress::Amount;

use crate::walk;

/// The most folders whose totals the scan keeps for the walk to subtract.
pub const KEPT_DIRS: usize = 1 << 18;

/// A folder, by device and inode.
type Key = (u64, u64);

fn key(meta: &FileStat) -> Key {
    (meta.dev, meta.ino)
}

/// The folders the walk and the scan must agree on.
#[derive(Default)]
struct Dirs {
    /// Left out by the walk before the scan finished them.
    left_out: HashSet<Key>,
    /// Finished by the scan, with their totals, and not yet reached by
    /// the walk.
    finished: HashMap<Key, Amount>,
}

/// The scan's counts, shared by the scan thread, the walk and the
/// reporter.
#[derive(Default)]
pub struct Scan {
    /// Counted so far, less what the walk left out (which may run ahead
    /// of the scan, hence signed).
    files: AtomicI64,
    bytes: AtomicI64,
    finished: AtomicBool,
    stop: AtomicBool,
    dirs: Mutex<Dirs>,
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Scan {
    /// Count everything below `roots` (sorted, as the settings have
    /// them), on each root's own file system only with `one_file_system`
    /// (as the walk keeps to it); returns when done or stopped.
    pub fn run(&self, roots: &[PathBuf], one_file_system: bool) {
        // Only these can be met below another root (usually none).
        let inner = crate::settings::inner_roots(roots);
        for root in roots {
            if self.stopped() {
                return;
            }
            match walk::lstat(root) {
                Ok(meta) if meta.is_dir() => {
                    let device = one_file_system.then_some(meta.dev);
                    self.dir(root, key(&meta), &inner, device);
                }
                Ok(meta) => self.add(1, meta.size),
                Err(_) => {}
            }
        }
        if !self.stopped() {
            self.finished.store(true, Ordering::Release);
        }
    }

    /// Stop the scan (the backup is over).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn add(&self, files: u64, bytes: u64) {
        self.files.fetch_add(signed(files), Ordering::Relaxed);
        self.bytes.fetch_add(signed(bytes), Ordering::Relaxed);
    }

    fn subtract(&self, amount: Amount) {
        self.files
            .fetch_sub(signed(amount.files), Ordering::Relaxed);
        self.bytes
            .fetch_sub(signed(amount.bytes), Ordering::Relaxed);
    }

    fn dirs(&self) -> std::sync::MutexGuard<'_, Dirs> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a folder's subtree (depth first, with a stack of its own, so
    /// that a deep tree cannot overflow the thread's stack). Returns its
    /// totals, or `None` if the walk left it out or the scan stopped.
    /// A child that is one of `inner` (roots inside another, sorted) is
    /// left to be counted as a root; one on another device than `device`
    /// (where given) is not counted, nor looked into.
    fn dir(
        &self,
        top: &Path,
        top_key: Key,
        inner: &[PathBuf],
        device: Option<u64>,
    ) -> Option<Amount> {
        struct Frame {
            key: Key,
            children: std::vec::IntoIter<walk::Child>,
            total: Amount,
        }
        let enter = |dir: &Path, key: Key| -> Option<Frame> {
            if self.dirs().left_out.remove(&key) {
                return None;
            }
            Some(Frame {
                key,
                // A folder that cannot be listed counts as empty: the
                // walk reports it.
                children: walk::children(dir, key)
                    .unwrap_or_default()
                    .children
                    .into_iter(),
                total: Amount::default(),
            })
        };
        let mut stack = vec![enter(top, top_key)?];
        loop {
            if self.stopped() {
                return None;
            }
            let frame = stack.last_mut()?;
            if let Some(child) = frame.children.next() {
                let walk::Child {
                    path: child, meta, ..
                } = child;
                let Ok(meta) = meta else {
                    continue;
                };
                // Another root: counted when the scan gets to it, as the
                // walk backs it up then.
                if inner.binary_search(&child).is_ok() {
                    continue;
                }
                if device.is_some_and(|dev| meta.dev != dev) {
                    continue;
                }
                if meta.is_dir() {
                    if let Some(frame) = enter(&child, key(&meta)) {
                        stack.push(frame);
                    }
                } else {
                    frame.total.files += 1;
                    frame.total.bytes += meta.size;
                    self.add(1, meta.size);
                }
                continue;
            }
            // The folder is done.
            let done = stack.pop()?;
            let counted = {
                let mut dirs = self.dirs();
                if dirs.left_out.remove(&done.key) {
                    // Left out by the walk while the scan was inside.
                    self.subtract(done.total);
                    false
                } else {
                    if dirs.finished.len() < KEPT_DIRS {
                        dirs.finished.insert(done.key, done.total);
                    }
                    true
                }
            };
            match stack.last_mut() {
                Some(parent) => {
                    if counted {
                        parent.total.files += done.total.files;
                        parent.total.bytes += done.total.bytes;
                    }
                }
                None => return counted.then_some(done.total),
            }
        }
    }

    /// The walk left out this object (excluded, or a folder it did not
    /// walk): take it off the totals.
    pub fn left_out(&self, meta: &FileStat) {
        if !meta.is_dir() {
            self.subtract(Amount::new(1, meta.size));
            return;
        }
        let key = key(meta);
        let mut dirs = self.dirs();
        match dirs.finished.remove(&key) {
            Some(total) => self.subtract(total),
            None => {
                dirs.left_out.insert(key);
            }
        }
    }

    /// The walk goes into this folder: what the scan kept for it is no
    /// longer needed.
    pub fn entered(&self, meta: &FileStat) {
        self.dirs().finished.remove(&key(meta));
    }

    /// What the scan counted so far (less what the walk left out).
    pub fn so_far(&self) -> Amount {
        let get = |n: &AtomicI64| u64::try_from(n.load(Ordering::Relaxed)).unwrap_or(0);
        Amount::new(get(&self.files), get(&self.bytes))
    }

    /// The totals, once the scan has finished.
    pub fn total(&self) -> Option<Amount> {
        self.finished.load(Ordering::Acquire).then(|| self.so_far())
    }

    /// Whether the scan has finished.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::create_dir_all(p.join("c")).unwrap();
        std::fs::write(p.join("top"), b"12345").unwrap();
        std::fs::write(p.join("a/one"), b"1").unwrap();
        std::fs::write(p.join("a/b/two"), b"22").unwrap();
        std::fs::write(p.join("c/three"), b"333").unwrap();
        tmp
    }

    #[test]
    fn counts_files_and_bytes_below_the_roots() {
        let tmp = tree();
        let scan = Scan::default();
        assert_eq!(scan.total(), None);
        scan.run(&[tmp.path().to_path_buf()], false);
        assert_eq!(scan.total(), Some(Amount::new(4, 11)));
    }

    #[test]
    fn what_the_walk_left_out_is_not_counted() {
        let tmp = tree();
        let p = tmp.path();
        // Before the scan gets there: skipped.
        let scan = Scan::default();
        scan.left_out(&walk::lstat(&p.join("a")).unwrap());
        scan.left_out(&walk::lstat(&p.join("top")).unwrap());
        scan.run(&[p.to_path_buf()], false);
        assert_eq!(scan.total(), Some(Amount::new(1, 3)));
        // After the scan finished: subtracted with the kept totals.
        let scan = Scan::default();
        scan.run(&[p.to_path_buf()], false);
        scan.left_out(&walk::lstat(&p.join("a/b")).unwrap());
        scan.left_out(&walk::lstat(&p.join("c/three")).unwrap());
        assert_eq!(scan.total(), Some(Amount::new(2, 6)));
    }

    #[test]
    fn a_stopped_scan_has_no_total() {
        let tmp = tree();
        let scan = Scan::default();
        scan.stop();
        scan.run(&[tmp.path().to_path_buf()], false);
        assert_eq!(scan.total(), None);
    }
}
