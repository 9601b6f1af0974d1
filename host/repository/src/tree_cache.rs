//! A small cache of decoded trees, shared by the threads of a run.
//!
//! A backup reads each directory of the previous generation twice (to
//! compare with, and to build on): keeping recently read trees decoded
//! saves the second read and decode.
//!
//! It is a plain FIFO window, not `quick_cache`: that cache's S3-FIFO
//! policy keeps a tree read once in a cold queue of 3% of its capacity
//! (8 trees of 256), but a backup reads a directory the second time only
//! after the trees below it, so most second reads would miss.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::ids::ChunkId;
use super::tree::Tree;

/// Trees kept at most.
const CAPACITY: usize = 256;
/// Bytes of trees (as stored, before decoding) kept at most: a folder of
/// a million files is a tree of tens of megabytes.
const CAPACITY_BYTES: usize = 64 << 20;

/// Recently read trees, by id; the oldest is dropped first.
#[derive(Default)]
pub(crate) struct TreeCache(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    map: HashMap<ChunkId, Arc<Tree>>,
    /// Oldest first, with each tree's size.
    order: VecDeque<(ChunkId, usize)>,
    bytes: usize,
    /// Trees kept so far (read from the store, that is): for tests.
    inserted: u64,
}

impl TreeCache {
    /// The tree `id`, if it is here.
    pub fn get(&self, id: &ChunkId) -> Option<Arc<Tree>> {
        self.lock().map.get(id).cloned()
    }

    /// Keep a tree of `bytes` bytes (as stored).
    pub fn insert(&self, id: ChunkId, tree: Arc<Tree>, bytes: usize) {
        if bytes > CAPACITY_BYTES / 4 {
            return;
        }
        let mut inner = self.lock();
        inner.inserted += 1;
        if inner.map.insert(id, tree).is_none() {
            inner.order.push_back((id, bytes));
            inner.bytes += bytes;
            while inner.order.len() > CAPACITY || inner.bytes > CAPACITY_BYTES {
                let Some((old, size)) = inner.order.pop_front() else {
                    break;
                };
                inner.map.remove(&old);
                inner.bytes -= size;
            }
        }
    }

    /// How many trees were offered to the cache so far.
    #[cfg(test)]
    pub fn inserted(&self) -> u64 {
        self.lock().inserted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
