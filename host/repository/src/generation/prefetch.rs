//! Reading the previous generation's trees ahead of a backup's walk.
//!
//! A backup that finds most files unchanged spends much of its time on
//! one thread, the walk, and a good part of that reading the previous
//! generation's trees (a ranged read from the store, then decrypting,
//! decompressing and decoding), one per directory, just before it walks
//! the directory. A thread of its own reads them ahead into the
//! repository's tree cache, so the reading runs on another processor and,
//! against a remote store, its round trips overlap the walk's work.
//!
//! It walks the previous generation depth first, as the backup does, from
//! the directory the backup listed last: each time the backup lists a
//! directory, its subdirectories go on top of the stack of trees to read,
//! and each tree read puts its own subdirectories on top. So the trees
//! read next are those the walk reaches next. It stays at most
//! [`MAX_AHEAD`] trees, and [`MAX_AHEAD_BYTES`] of them decoded, ahead of
//! the walk (it knows where the walk is by the trees of the directories
//! the walk lists), so that the tree cache never drops what it read
//! before the walk gets there.
//!
//! A tree read ahead that fails is not reported here: the walk reads it
//! again itself, and reports what went wrong then.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::ids::ChunkId;
use crate::tree::EntryKind;
use crate::Repository;

/// The most trees read ahead of the walk: well within the tree cache's
/// few hundred.
const MAX_AHEAD: usize = 48;

/// The reading thread, once asleep, is woken when the walk has caught up
/// to this many trees ahead or fewer: so it reads in bursts, not one tree
/// per directory the walk lists (each a wake-up of another thread, 3 % of
/// the walk's time in a no-change backup's profile).
const WAKE_AT: usize = MAX_AHEAD / 2;

/// The most bytes of trees (decoded) read ahead of the walk: half the
/// tree cache, which keeps the trees the walk is in too (folders of
/// 10,000 files are 4 MB each: 8 ahead).
const MAX_AHEAD_BYTES: usize = crate::tree_cache::CAPACITY_BYTES / 2;

/// The most trees waiting; when more wait, those the walk reaches last
/// are dropped.
const MAX_WAITING: usize = 256;

/// The most trees remembered as already expanded (see [`Waiting::seen`]).
const MAX_SEEN: usize = 4096;

/// What the reading thread has to do.
#[derive(Default)]
struct Waiting {
    /// Trees to read, the next on top.
    stack: Vec<ChunkId>,
    /// The trees read that the walk has not listed yet, in the order read
    /// (the walk's order), with the bytes each holds decoded.
    ahead: VecDeque<(ChunkId, usize)>,
    /// The bytes of the trees `ahead`.
    ahead_bytes: usize,
    /// Trees whose subdirectories were put on the stack already.
    seen: HashSet<ChunkId>,
    stop: bool,
    /// Whether the reading thread waits to be woken.
    asleep: bool,
}

impl Waiting {
    /// Whether the reading is as far ahead of the walk as it may be.
    fn far_enough(&self) -> bool {
        self.ahead.len() >= MAX_AHEAD || self.ahead_bytes >= MAX_AHEAD_BYTES
    }

    /// Whether the walk has caught up enough to wake the reading.
    fn caught_up(&self) -> bool {
        self.ahead.len() <= WAKE_AT && self.ahead_bytes <= MAX_AHEAD_BYTES / 2
    }

    /// The walk has passed the first `n` trees read ahead.
    fn passed(&mut self, n: usize) {
        for (_, bytes) in self.ahead.drain(..n.min(self.ahead.len())) {
            self.ahead_bytes -= bytes;
        }
    }

    /// Put `trees` (in the walk's order) on top of the stack.
    fn push(&mut self, trees: impl Iterator<Item = ChunkId>) {
        let from = self.stack.len();
        self.stack.extend(trees.take(MAX_WAITING));
        self.stack[from..].reverse();
        let excess = self.stack.len().saturating_sub(MAX_WAITING);
        self.stack.drain(..excess);
    }
}

/// A thread reading trees ahead into the repository's tree cache; it
/// stops (dropping what still waits) when this is dropped.
pub(crate) struct TreePrefetcher {
    waiting: Arc<(Mutex<Waiting>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// The subdirectories' trees of a tree's entries, in order.
fn subdirectories(entries: &[crate::tree::TreeEntry]) -> impl Iterator<Item = ChunkId> + '_ {
    entries.iter().filter_map(|e| match e.kind {
        EntryKind::Dir => e.subtree.as_ref().map(|id| id.0),
        _ => None,
    })
}

impl TreePrefetcher {
    /// Start the thread; `None` if no thread could be started (then
    /// nothing is read ahead).
    pub(crate) fn start(repo: Arc<Repository>) -> Option<Self> {
        let waiting = Arc::new((Mutex::new(Waiting::default()), Condvar::new()));
        let shared = waiting.clone();
        let thread = std::thread::Builder::new()
            .name("obnam-tree-prefetch".into())
            .spawn(move || read_ahead(&repo, &shared))
            .ok()?;
        Some(TreePrefetcher {
            waiting,
            thread: Some(thread),
        })
    }

    /// The walk listed a directory, of tree `id` (`None` for an empty one
    /// stored without a tree), with these entries: read its
    /// subdirectories' trees, and below them, ahead.
    pub(crate) fn listed(&self, id: Option<ChunkId>, entries: &[crate::tree::TreeEntry]) {
        let (lock, ready) = &*self.waiting;
        let mut w = lock.lock().unwrap_or_else(|e| e.into_inner());
        match id.and_then(|id| w.ahead.iter().position(|(a, _)| *a == id)) {
            // The walk got here: what was read before it is behind it
            // now, and its subdirectories wait on the stack already.
            Some(at) => w.passed(at + 1),
            // Not read ahead: the walk is ahead of the reading, or off
            // its path (a new directory). Its subdirectories come first
            // now; and the oldest tree read ahead is taken to be behind
            // the walk, so that trees the walk never lists (excluded,
            // deleted) cannot stop the reading for good.
            None => {
                w.passed(1);
                w.push(subdirectories(entries));
            }
        }
        if w.asleep && w.caught_up() {
            ready.notify_one();
        }
    }
}

/// The reading thread: read the tree on top of the stack and put its
/// subdirectories on top, while it is less than [`MAX_AHEAD`] trees (and
/// [`MAX_AHEAD_BYTES`]) ahead of the walk.
fn read_ahead(repo: &Repository, waiting: &(Mutex<Waiting>, Condvar)) {
    let (lock, ready) = waiting;
    loop {
        let id = {
            let mut w = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if w.stop {
                    return;
                }
                if !w.far_enough() {
                    if let Some(id) = w.stack.pop() {
                        break id;
                    }
                }
                w.asleep = true;
                w = ready.wait(w).unwrap_or_else(|e| e.into_inner());
                w.asleep = false;
            }
        };
        match repo.get_tree_sized(&id) {
            Ok((tree, bytes)) => {
                let mut w = lock.lock().unwrap_or_else(|e| e.into_inner());
                if w.seen.len() >= MAX_SEEN {
                    w.seen.clear();
                }
                w.ahead.push_back((id, bytes));
                w.ahead_bytes += bytes;
                // A tree met again (identical folders) is not walked again.
                if w.seen.insert(id) {
                    w.push(subdirectories(&tree.entries));
                }
            }
            Err(e) => tracing::debug!("reading tree/{id} ahead: {e}"),
        }
    }
}

impl Drop for TreePrefetcher {
    fn drop(&mut self) {
        let (lock, ready) = &*self.waiting;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        ready.notify_one();
        if let Some(thread) = self.thread.take() {
            // It finishes the one read it is in, at most.
            let _ = thread.join();
        }
    }
}
