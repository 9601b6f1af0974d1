//! What this process knows of the repository's blobs: the in-memory
//! index ([`Index`]), and beside it the ids handed out but not yet
//! indexed, the ids lost with their packs, and which index objects were
//! loaded or found damaged.
//!
//! These are one idea, kept in one `Catalog`: whether an id is taken
//! depends on all of them at once (`Catalog::allocate`). This module
//! adds to [`Repository`] loading the index objects
//! (`Repository::load_index`) and the questions asked of the index
//! ([`Repository::has_chunk`], [`Repository::find_chunks`], counts, the
//! damaged index objects).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::error::{RepoError, RepoResult};
use super::ids::{ChunkId, Token};
use super::index::{self, Index};
use super::storage::StorageError;
use super::Repository;

/// Lock `m`, whether or not a thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-memory index and what goes with it.
#[derive(Default)]
pub(crate) struct Catalog {
    index: RwLock<Index>,
    /// Ids handed out but not yet in the index (so two threads storing the
    /// same new token at once get different variants).
    reserved: Mutex<HashSet<ChunkId>>,
    /// Ids of blobs whose pack was found missing: never handed out again,
    /// so that a blob stored anew cannot be mistaken for the lost copy
    /// (which older index objects still list).
    lost: Mutex<HashSet<ChunkId>>,
    /// Index objects loaded (or found damaged) so far, by name.
    known: Mutex<HashSet<String>>,
    /// The packs each loaded index object lists (by pack number): a prune
    /// keeps any pack an index object it does not replace still lists.
    object_packs: Mutex<HashMap<String, Vec<u32>>>,
    /// Index objects that could not be read, and why (their blobs count
    /// as absent).
    damaged: Mutex<Vec<String>>,
}

impl Catalog {
    /// The index, for reading.
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The index, for changing.
    pub fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember blobs lost with their packs (see `lost`).
    pub fn mark_lost(&self, ids: impl IntoIterator<Item = ChunkId>) {
        lock(&self.lost).extend(ids);
    }

    /// A new id for a copy of `token`, reserved until
    /// [`release`](Self::release)d: variant 0 if no copy has it, else a
    /// random variant that none has.
    pub fn allocate(&self, token: Token) -> ChunkId {
        let mut reserved = lock(&self.reserved);
        let lost = lock(&self.lost);
        let taken = |id: &ChunkId| {
            reserved.contains(id) || lost.contains(id) || self.read().get(id).is_some()
        };
        let first = ChunkId::first(token);
        let id = if taken(&first) {
            loop {
                let id = ChunkId::another(token);
                if !taken(&id) {
                    break id;
                }
            }
        } else {
            first
        };
        drop(lost);
        reserved.insert(id);
        id
    }

    /// End the reservation of an id: it is in the index now, or was not
    /// stored.
    pub fn release(&self, id: &ChunkId) {
        lock(&self.reserved).remove(id);
    }

    /// Take an index object written by this process as loaded (its
    /// entries are in the index already), listing `packs`.
    pub fn mark_known(&self, name: String, packs: Vec<u32>) {
        lock(&self.known).insert(name.clone());
        lock(&self.object_packs).insert(name, packs);
    }

    /// The index objects loaded so far, with the packs each lists.
    pub fn object_packs(&self) -> HashMap<String, Vec<u32>> {
        lock(&self.object_packs).clone()
    }

    fn index_damaged(&self, problem: String) {
        tracing::error!("{problem}; its blobs count as absent");
        lock(&self.damaged).push(problem);
    }
}

impl Repository {
    /// Load every index object not loaded yet: all of them when the
    /// repository is opened, and again when a run takes a client's lock,
    /// so that it knows what the run that held the lock before it stored
    /// (its index was loaded before it waited).
    pub(crate) fn load_index(&self) -> RepoResult<()> {
        self.load_index_objects(false)
    }

    /// Load the index objects not loaded yet, or with `fresh` all of them
    /// in place of those loaded. The index is locked for writing the whole
    /// time when `fresh`, so that no reader ever finds it emptied.
    fn load_index_objects(&self, fresh: bool) -> RepoResult<()> {
        let names = self.storage.list("index/")?;
        let own = self.uploads.written_index_names();
        let mut known = lock(&self.catalog.known);
        let mut fresh_index = fresh.then(|| self.catalog.write());
        if let Some(index) = fresh_index.as_mut() {
            index.clear_loaded();
            known.clear();
            lock(&self.catalog.object_packs).clear();
        }
        let new: Vec<String> = names
            .into_iter()
            .filter(|n| !known.contains(n) && !own.contains(n))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut index = match fresh_index {
            Some(index) => index,
            None => self.catalog.write(),
        };
        for name in new {
            known.insert(name.clone());
            let key = format!("index/{name}");
            let data = match self.read_object(&key) {
                Ok(data) => data,
                // Merged into another index object and deleted since the listing.
                Err(RepoError::Storage(StorageError::NotFound { .. })) => continue,
                // A damaged index object loses track of its blobs, not of
                // the whole repository: they count as absent (a backup
                // stores them again), and fsck reports the object. (A
                // filter that is not loaded is not damage: that fails.)
                Err(e @ RepoError::Corrupt { .. }) => {
                    self.catalog.index_damaged(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            match index::decode(&mut index, &data) {
                Ok(entries) => {
                    let packs = crate::prune::packs_of(&entries);
                    lock(&self.catalog.object_packs).insert(name, packs);
                    index.extend_loaded(entries)
                }
                Err(e) => self
                    .catalog
                    .index_damaged(RepoError::corrupt(&key, e).to_string()),
            }
        }
        index.finish_loading();
        tracing::debug!(
            "index: {} blobs, {} bytes in memory",
            index.len(),
            index.memory_bytes()
        );
        Ok(())
    }

    /// Load every index object again, from scratch: after a pack was found
    /// gone while reading, since a prune may have moved its blobs (it
    /// deletes the index objects that list a pack before the pack).
    pub(crate) fn reload_index(&self) -> RepoResult<()> {
        self.load_index_objects(true)
    }

    /// The index objects that could not be read at open, and why.
    pub fn damaged_index_objects(&self) -> Vec<String> {
        lock(&self.catalog.damaged).clone()
    }

    /// Number of chunks and tree objects in the index.
    pub fn chunk_count(&self) -> usize {
        self.catalog.read().len()
    }

    /// Bytes of memory the index holds.
    pub fn index_memory_bytes(&self) -> usize {
        self.catalog.read().memory_bytes()
    }

    /// Every stored copy of a token.
    pub fn find_chunks(&self, token: &Token) -> Vec<ChunkId> {
        self.catalog.read().find(token)
    }

    /// Whether a chunk is stored (in a pack no prune plans to delete: what
    /// a backup may refer to without storing it again).
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.catalog.read().get_kept(id).is_some()
    }
}
