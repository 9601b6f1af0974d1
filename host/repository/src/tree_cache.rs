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
/// Bytes of memory the trees kept hold at most, decoded
/// ([`Tree::memory_bytes`]): 64 MiB is 170 folders of 1,000 files, 16 of
/// 10,000. It counted the trees as stored, a fifth of that, until 256
/// folders of 10,000 files made a restore hold 411 MB.
pub(crate) const CAPACITY_BYTES: usize = 64 << 20;

/// Recently read trees, by id; the oldest is dropped first.
#[derive(Default)]
pub(crate) struct TreeCache(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// Each tree with what it holds decoded ([`Tree::memory_bytes`]).
    map: HashMap<ChunkId, (Arc<Tree>, usize)>,
    /// Oldest first, with each tree's size.
    order: VecDeque<(ChunkId, usize)>,
    bytes: usize,
    /// Trees kept so far (read from the store, that is): for tests.
    inserted: u64,
}

impl TreeCache {
    /// The tree `id`, if it is here.
    pub fn get(&self, id: &ChunkId) -> Option<Arc<Tree>> {
        self.get_sized(id).map(|(tree, _)| tree)
    }

    /// The tree `id` with what it holds decoded, if it is here.
    pub fn get_sized(&self, id: &ChunkId) -> Option<(Arc<Tree>, usize)> {
        self.lock().map.get(id).cloned()
    }

    /// Keep a tree (not one that would take more than the whole cache:
    /// a folder of over 150,000 files). Returns what it holds decoded, so
    /// that the caller's own bounds need not count it again (a pass over
    /// every entry).
    pub fn insert(&self, id: ChunkId, tree: Arc<Tree>) -> usize {
        let bytes = tree.memory_bytes();
        if bytes > CAPACITY_BYTES {
            return bytes;
        }
        let mut inner = self.lock();
        inner.inserted += 1;
        if inner.map.insert(id, (tree, bytes)).is_none() {
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
        bytes
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Token;
    use crate::tree::TreeEntry;

    /// A tree of `files` entries, each with a name and one chunk, as a
    /// folder of files is.
    fn folder(files: usize) -> Arc<Tree> {
        let entries = (0..files)
            .map(|i| {
                let mut e = TreeEntry::bare_dir(format!("file number {i}").as_bytes());
                e.kind = crate::tree::EntryKind::File;
                e.chunks = vec![crate::tree::StoredChunkId(ChunkId {
                    token: Token([i as u8; 32]),
                    variant: 0,
                })];
                e.checksum = vec![0xb3; 33];
                e
            })
            .collect();
        Arc::new(Tree { entries })
    }

    fn id(n: u8) -> ChunkId {
        ChunkId {
            token: Token([n; 32]),
            variant: 0,
        }
    }

    /// The cache counts trees by what they hold decoded: folders of
    /// 10,000 files (a few MB each) fill it after a dozen or so, whatever
    /// their stored size, and the newest are kept.
    #[test]
    fn the_cache_holds_at_most_its_bytes_of_decoded_trees() {
        let big = folder(10_000);
        let each = big.memory_bytes();
        assert!(each > 10_000 * 300, "{each} bytes for 10,000 entries");
        let cache = TreeCache::default();
        for n in 0..40 {
            cache.insert(id(n), big.clone());
        }
        let inner = cache.lock();
        assert!(inner.bytes <= CAPACITY_BYTES, "{}", inner.bytes);
        assert_eq!(inner.order.len(), CAPACITY_BYTES / each);
        drop(inner);
        assert!(cache.get(&id(39)).is_some() && cache.get(&id(0)).is_none());

        // Small trees: the count bounds it.
        let cache = TreeCache::default();
        let small = folder(3);
        for n in 0..=255u8 {
            cache.insert(id(n), small.clone());
        }
        cache.insert(
            ChunkId {
                token: Token([1; 32]),
                variant: 1,
            },
            small,
        );
        assert_eq!(cache.lock().order.len(), CAPACITY);

        // A tree larger than the whole cache is not kept.
        let cache = TreeCache::default();
        cache.insert(id(1), folder(200_000));
        assert!(cache.get(&id(1)).is_none());
    }
}
