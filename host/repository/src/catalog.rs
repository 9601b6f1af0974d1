//! What this process knows of the repository's blobs: the index
//! ([`Index`], its loaded part in the local index cache,
//! [`crate::index_cache`]), and beside it the ids handed out but not yet
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::error::{RepoError, RepoResult};
use super::ids::{ChunkId, Token};
use super::index::{self, Index, IndexEntry};
use super::index_cache::{IndexCache, BATCH_ENTRIES};

use super::storage::StorageError;
use super::Repository;

/// Index objects read at once when loading the index, at most: on a
/// remote store each is a round trip.
const INDEX_READ_WINDOW: usize = 16;

/// Bytes of index objects (decoded by the filters) held at once while
/// they are read, about: a merged object of 2^18 entries is 14 MB, and
/// sixteen of those were 220 MB.
const INDEX_READ_BYTES: usize = 32 << 20;

/// How many index objects to read at once: many while they are small
/// (backups' own, a few kilobytes), few once they are large (merged ones),
/// so that what is held stays near [`INDEX_READ_BYTES`]. It starts at 2
/// and follows the average size of the objects read so far (the names do
/// not tell the sizes: a window of small ones may still hold a few large
/// ones, at most [`INDEX_READ_WINDOW`] of them).
pub(crate) struct IndexReadWindow {
    objects: usize,
    read: usize,
    bytes: usize,
}

impl IndexReadWindow {
    pub(crate) fn new() -> Self {
        IndexReadWindow {
            objects: 2,
            read: 0,
            bytes: 0,
        }
    }

    /// The next window of `names`, from `at`: as many as the window holds.
    pub(crate) fn next<'a>(&self, names: &'a [String], at: usize) -> &'a [String] {
        let from = at.min(names.len());
        &names[from..(from + self.objects).min(names.len())]
    }

    /// Objects of `bytes` each were read (a failed read counts none).
    pub(crate) fn read(&mut self, bytes: impl IntoIterator<Item = usize>) {
        for b in bytes {
            self.read += 1;
            self.bytes += b;
        }
        let average = self.bytes / self.read.max(1);
        self.objects = (INDEX_READ_BYTES / average.max(1)).clamp(1, INDEX_READ_WINDOW);
    }
}

/// Lock `m`, whether or not a thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The index and what goes with it.
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
    /// The packs each index object this process wrote and took as loaded
    /// lists ([`mark_known`](Self::mark_known)); the index has those of
    /// the others.
    own_packs: Mutex<HashMap<String, Vec<u32>>>,
    /// Index objects that could not be read, and why (their blobs count
    /// as absent).
    damaged: Mutex<Vec<String>>,
    /// Blobs this process found damaged (a tree that does not match its
    /// id, or does not decode): no new object may build on them, so a
    /// copy made anew is stored again, under a variant of its own.
    damaged_blobs: Mutex<HashSet<ChunkId>>,
    /// Whether `damaged_blobs` holds any: every chunk a backup looks up
    /// asks, and almost never is one damaged.
    any_damaged: std::sync::atomic::AtomicBool,
    /// Index objects this process read from the repository (rather than
    /// take from the cache), each with the problem it had if any: a check
    /// of the repository's index objects reads only the others.
    read_back: Mutex<HashMap<String, Option<String>>>,
    /// Where the loaded entries are kept.
    cache: IndexCache,
    /// Whether the cache's segments were opened (at the first load).
    opened: Mutex<bool>,
    /// Listings of `index/` begun (the next one's number): see
    /// [`Repository::generations_covered`].
    pub(crate) listings_begun: AtomicU64,
    /// One more than the number of the latest listing of `index/` whose
    /// index objects were loaded in full.
    listings_done: AtomicU64,
    /// Generation records read, each with the number of the first listing
    /// of `index/` begun after it was read.
    generations_read: Mutex<HashMap<String, u64>>,
}

impl Catalog {
    /// A catalog whose loaded entries are kept in `cache`.
    pub fn new(cache: IndexCache) -> Self {
        Catalog {
            index: RwLock::default(),
            reserved: Mutex::default(),
            lost: Mutex::default(),
            known: Mutex::default(),
            own_packs: Mutex::default(),
            damaged: Mutex::default(),
            damaged_blobs: Mutex::default(),
            any_damaged: std::sync::atomic::AtomicBool::new(false),
            read_back: Mutex::default(),
            cache,
            opened: Mutex::new(false),
            listings_begun: AtomicU64::new(0),
            listings_done: AtomicU64::new(0),
            generations_read: Mutex::default(),
        }
    }

    /// The index, for reading.
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The index, for changing.
    pub fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The index cache.
    pub fn cache(&self) -> &IndexCache {
        &self.cache
    }

    /// Remember blobs lost with their packs (see `lost`).
    pub fn mark_lost(&self, ids: impl IntoIterator<Item = ChunkId>) {
        lock(&self.lost).extend(ids);
    }

    /// Remember a blob found damaged (see `damaged_blobs`).
    pub fn mark_damaged(&self, id: ChunkId) {
        lock(&self.damaged_blobs).insert(id);
        self.any_damaged
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether this process found a blob damaged.
    pub fn is_damaged(&self, id: &ChunkId) -> bool {
        self.any_damaged.load(std::sync::atomic::Ordering::Acquire)
            && lock(&self.damaged_blobs).contains(id)
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
        lock(&self.own_packs).insert(name, packs);
    }

    /// The index objects loaded so far, with the packs each lists.
    pub fn object_packs(&self) -> HashMap<String, Vec<u32>> {
        let mut packs = self.read().object_packs();
        packs.extend(lock(&self.own_packs).clone());
        packs
    }

    /// Index object `name` is damaged: said once, however many times the
    /// index is loaded again.
    fn index_damaged(&self, name: &str, problem: String) {
        self.read_back(name, Some(problem.clone()));
        let mut damaged = lock(&self.damaged);
        if !damaged.contains(&problem) {
            tracing::error!("{problem}; its blobs count as absent");
            damaged.push(problem);
        }
    }

    /// Record that index object `name` was read from the repository, and
    /// the problem it had if any.
    pub fn read_back(&self, name: &str, problem: Option<String>) {
        lock(&self.read_back).insert(name.to_string(), problem);
    }

    /// The index objects found damaged when read back, by name.
    pub fn damaged_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.read_back)
            .iter()
            .filter(|(_, problem)| problem.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// What [`read_back`](Self::read_back) recorded of `name`: `None` if
    /// this process has not read it, else its problem if any.
    pub fn read_back_problem(&self, name: &str) -> Option<Option<String>> {
        lock(&self.read_back).get(name).cloned()
    }
}

impl Repository {
    /// Load the index if this process has not loaded it yet. The index is
    /// loaded at its first use, not when the repository is opened: a
    /// command that reads no blob (listing clients or generations,
    /// forgetting one) neither lists nor reads the index objects, nor
    /// builds the local index cache on a machine that has none.
    pub(crate) fn ensure_index(&self) -> RepoResult<()> {
        if *lock(&self.catalog.opened) {
            return Ok(());
        }
        self.load_index()
    }

    /// [`ensure_index`](Self::ensure_index) for the questions that have no
    /// error to give: an index that cannot be loaded is logged, and the
    /// answer is the cautious one (a chunk not known is stored again).
    fn ensure_index_or_log(&self) -> bool {
        match self.ensure_index() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot load the index: {e}");
                false
            }
        }
    }

    /// Whether this process has loaded the index (see
    /// [`ensure_index`](Self::ensure_index)).
    pub(crate) fn index_loaded(&self) -> bool {
        *lock(&self.catalog.opened)
    }

    /// Load every index object not loaded yet: all of them at the first
    /// use of the index, and again when a run takes a client's lock,
    /// so that it knows what the run that held the lock before it stored
    /// (its index was loaded before it waited).
    pub(crate) fn load_index(&self) -> RepoResult<()> {
        self.load_index_objects(false)
    }

    /// Load the index objects not loaded yet, or with `fresh` take
    /// afresh which of those loaded are still there. The index is locked
    /// for writing the whole time when `fresh`, so that no reader ever
    /// finds it half done.
    ///
    /// The entries of index objects the local cache holds are not read
    /// again; the others are read, a batch at a time, and written to the
    /// cache as they are (see [`crate::index_cache`]).
    fn load_index_objects(&self, fresh: bool) -> RepoResult<()> {
        let listing = self.catalog.listings_begun.fetch_add(1, Ordering::SeqCst);
        self.load_index_listed(fresh)?;
        self.catalog
            .listings_done
            .fetch_max(listing + 1, Ordering::SeqCst);
        Ok(())
    }

    /// Whether the index has loaded what each generation record of `keys`
    /// refers to, by what this process saw: a generation is committed
    /// after the index objects of everything it refers to, so a record
    /// read before a listing of `index/` began is complete in the index
    /// once that listing is loaded. Records not known so yet are noted as
    /// read now: a listing begun from here on covers them.
    pub(crate) fn generations_covered(&self, keys: &[String]) -> bool {
        let begun = self.catalog.listings_begun.load(Ordering::SeqCst);
        let done = self.catalog.listings_done.load(Ordering::SeqCst);
        let mut read = lock(&self.catalog.generations_read);
        let mut covered = true;
        for key in keys {
            let first_after = *read.entry(key.clone()).or_insert(begun);
            covered &= first_after < done;
        }
        covered
    }

    /// The names of the index objects, sorted: those the store lists, and
    /// those of what took an index object's place but cannot be one (on
    /// a local folder: a folder, a FIFO), which a read then finds damaged
    /// and names, as any other damage to an index object. Left out of the
    /// listing, such an object's blobs would count as absent unnamed.
    pub(crate) fn list_index_objects(&self) -> RepoResult<Vec<String>> {
        let listing = self.storage.list_with_others("index/")?;
        let mut names = listing.objects;
        names.extend(
            listing
                .not_objects
                .into_iter()
                .filter(|n| crate::ids::ObjectId::is_name(n)),
        );
        names.sort();
        Ok(names)
    }

    fn load_index_listed(&self, fresh: bool) -> RepoResult<()> {
        let names = self.list_index_objects()?;
        let own = self.uploads.written_index_names();
        let mut known = lock(&self.catalog.known);
        let mut opened = lock(&self.catalog.opened);
        let first = !*opened;
        let mut held = (fresh || first).then(|| self.catalog.write());
        if let Some(index) = held.as_mut() {
            if first {
                for segment in self.catalog.cache.segments() {
                    let live = vec![false; segment.objects.len()];
                    index.add_segment(segment, live);
                }
                *opened = true;
            }
            if fresh {
                index.clear_dropped();
                known.clear();
                lock(&self.catalog.own_packs).clear();
                for broken in index.remove_segments(|s| s.segment.is_broken()) {
                    self.catalog.cache.remove(&broken);
                }
            }
            self.take_listed(index, &names, &mut known);
        }
        let mut new: Vec<String> = names
            .into_iter()
            .filter(|n| !known.contains(n) && !own.contains(n))
            .collect();
        if new.is_empty() && held.is_none() {
            return Ok(());
        }
        let mut index = match held {
            Some(index) => index,
            None => self.catalog.write(),
        };
        let mut batch: Vec<(IndexEntry, u32)> = Vec::new();
        let mut objects: Vec<(String, u64)> = Vec::new();
        // An index object gone since the listing was merged into another,
        // written before it was deleted: a second listing finds that one.
        for listing in 0..3 {
            let mut gone = false;
            // Read a window at a time, many at once (a new machine's first
            // run reads one index object per backup ever made), few if
            // they are large.
            let mut reading = IndexReadWindow::new();
            let mut at = 0;
            while at < new.len() {
                let window = reading.next(&new, at);
                at += window.len();
                let keys: Vec<String> = window.iter().map(|n| format!("index/{n}")).collect();
                self.read_objects_with(&keys, |i, data| {
                    let (name, key) = (&window[i], &keys[i]);
                    known.insert(name.clone());
                    let data = match data {
                        Ok(data) => data,
                        Err(RepoError::Storage(StorageError::NotFound { .. })) => {
                            gone = true;
                            return Ok(());
                        }
                        // A damaged index object loses track of its blobs, not
                        // of the whole repository: they count as absent (a
                        // backup stores them again), and fsck reports the
                        // object. Damage is whatever makes its bytes not an
                        // index object (a bad checksum, a filter that cannot
                        // undo them, too large, not a file). A filter that is
                        // not loaded, or a store that fails, is not damage:
                        // that fails.
                        Err(e) if e.is_damaged_object() => {
                            self.catalog
                                .index_damaged(name, crate::damaged_records::said_with_remedy(&e));
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    };
                    reading.read([data.len()]);
                    match index::decode(&mut index, &data) {
                        Ok(entries) => {
                            self.catalog.read_back(name, None);
                            let number = objects.len() as u32;
                            objects.push((name.clone(), entries.len() as u64));
                            batch.extend(entries.into_iter().map(|e| (e, number)));
                            if batch.len() >= BATCH_ENTRIES {
                                let entries = std::mem::take(&mut batch);
                                self.catalog.cache.add_batch(&mut index, entries, &objects);
                                objects.clear();
                            }
                        }
                        Err(e) => self
                            .catalog
                            .index_damaged(name, RepoError::corrupt(key, e).to_string()),
                    }
                    Ok(())
                })?;
            }
            if !gone || listing == 2 {
                break;
            }
            new = self
                .list_index_objects()?
                .into_iter()
                .filter(|n| !known.contains(n) && !own.contains(n))
                .collect();
        }
        self.catalog.cache.add_batch(&mut index, batch, &objects);
        self.catalog.cache.compact(&mut index);
        tracing::debug!(
            "index: {} blobs in {} segments, {} bytes in memory",
            index.len(),
            index.segments().len(),
            index.memory_bytes()
        );
        Ok(())
    }

    /// Take each listed index object from the first segment that covers
    /// it, and no other: those are live, and known (not read again);
    /// stop using segments with no live object, and delete them.
    fn take_listed(&self, index: &mut Index, names: &[String], known: &mut HashSet<String>) {
        let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut taken: HashSet<String> = HashSet::new();
        for s in index.segments_mut() {
            let segment = s.segment.clone();
            for (object, live) in segment.objects.iter().zip(s.live.iter_mut()) {
                *live = listed.contains(object.name.as_str()) && taken.insert(object.name.clone());
            }
        }
        for unused in index.remove_segments(|s| !s.live.iter().any(|l| *l)) {
            self.catalog.cache.remove(&unused);
        }
        known.extend(taken);
    }

    /// Load every index object again, from scratch: after a pack was found
    /// gone while reading, since a prune may have moved its blobs (it
    /// deletes the index objects that list a pack before the pack).
    pub(crate) fn reload_index(&self) -> RepoResult<()> {
        self.load_index_objects(true)
    }

    /// The index objects that could not be read, and why (an index that
    /// cannot be loaded at all is one such problem).
    pub fn damaged_index_objects(&self) -> Vec<String> {
        if let Err(e) = self.ensure_index() {
            return vec![format!("the index could not be loaded: {e}")];
        }
        lock(&self.catalog.damaged).clone()
    }

    /// Number of chunks and tree objects in the index.
    pub fn chunk_count(&self) -> usize {
        self.ensure_index_or_log();
        self.catalog.read().len()
    }

    /// Bytes of memory the index holds (not the pages of its segments,
    /// which are read when needed).
    pub fn index_memory_bytes(&self) -> usize {
        self.catalog.read().memory_bytes()
    }

    /// Every stored copy of a token.
    pub fn find_chunks(&self, token: &Token) -> Vec<ChunkId> {
        self.keep_locks_fresh();
        if !self.ensure_index_or_log() {
            return Vec::new();
        }
        let mut seen = healed();
        let mut found = self.catalog.read().find(token);
        while found.is_empty() && self.heal_index(seen) {
            seen = healed();
            found = self.catalog.read().find(token);
        }
        found.retain(|id| !self.catalog.is_damaged(id));
        found
    }

    /// Whether a chunk is stored (in a pack no prune plans to delete: what
    /// a backup may refer to without storing it again).
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.keep_locks_fresh();
        if !self.ensure_index_or_log() || self.catalog.is_damaged(id) {
            return false;
        }
        loop {
            let seen = healed();
            if self.catalog.read().has_kept(id) {
                return true;
            }
            if !self.heal_index(seen) {
                return false;
            }
        }
    }

    /// Refresh held locks when it is due, here too: a backup reading a
    /// large file whose chunks are all stored writes nothing for as long
    /// as the read takes, and refreshed its lock only on writes. Past
    /// [`crate::lock::STALE_AFTER`] a prune took it for a dead run's and
    /// deleted what it was building on. A refresh that fails is tried
    /// again at the next lookup, and at the next write, which fails with
    /// it.
    fn keep_locks_fresh(&self) {
        if let Err(e) = self.refresh_locks() {
            tracing::debug!("refreshing this run's locks: {e}");
        }
    }

    /// `f`, made again if it failed with a file of the index cache found
    /// damaged meanwhile (loaded afresh first, see
    /// [`heal_index`](Self::heal_index)): for what only reads.
    pub(crate) fn healing<T>(&self, f: impl Fn() -> RepoResult<T>) -> RepoResult<T> {
        // Each damaged file is found when a page of it is read: several
        // may stop `f` in turn.
        loop {
            let seen = healed();
            match f() {
                Err(_) if self.heal_index(seen) => continue,
                other => return other,
            }
        }
    }

    /// Load afresh what a file of the index cache found damaged during
    /// this run held (a page that failed its check): returns whether it
    /// did, and a lookup that missed should be asked again. Without it
    /// one flipped bit in the cache made every chunk that file listed
    /// absent for the rest of the run: a restore said "chunk ... is not in
    /// the repository" of an intact repository and restored nothing, and
    /// a backup stored everything again.
    ///
    /// `seen` is [`healed`] as it was before the lookup: if another thread
    /// loaded the index afresh since, the lookup may have missed in the
    /// damaged file before that, and is to be asked again too (a restore
    /// reported a chunk missing, now and then, when it was the other
    /// thread's lookup that found the damage).
    pub(crate) fn heal_index(&self, seen: u64) -> bool {
        /// Loads afresh a process makes for damaged cache files, at most:
        /// files made anew that fail again (a failing disk) would make
        /// every lookup that misses load the index again for ever.
        const MOST_HEALS: u32 = 32;
        static HEALS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if healed() != seen {
            return true;
        }
        if !self.catalog.read().has_broken_segment() {
            return false;
        }
        if HEALS.fetch_add(1, Ordering::Relaxed) >= MOST_HEALS {
            return false;
        }
        let reloaded = self.reload_index();
        HEALED.fetch_add(1, Ordering::SeqCst);
        match reloaded {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot load the index again: {e}");
                false
            }
        }
    }
}

/// Loads of the index afresh for damaged cache files so far (see
/// [`Repository::heal_index`]).
static HEALED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn healed() -> u64 {
    HEALED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many small index objects are read many at once, large ones a few
    /// at a time, so that what is held stays near its bytes.
    #[test]
    fn the_index_read_window_follows_the_size_of_the_objects() {
        let names: Vec<String> = (0..100).map(|n| n.to_string()).collect();
        let mut window = IndexReadWindow::new();
        assert_eq!(window.next(&names, 0).len(), 2, "it starts small");
        window.read([4_000; 2]);
        assert_eq!(window.next(&names, 4), &names[4..20]);
        assert_eq!(window.next(&names, 95).len(), 5, "not past the end");
        assert!(window.next(&names, 100).is_empty());

        let mut window = IndexReadWindow::new();
        window.read([14 << 20; 2]);
        assert_eq!(window.next(&names, 4).len(), 2);
        window.read([60 << 20; 10]);
        assert_eq!(window.next(&names, 14).len(), 1, "at least one");
    }
}
