//! The pack-upload pipeline: blobs go into a pack being filled (one per
//! blob kind); a full pack is sealed (its trailer appended) and written,
//! and then the index object that lists its blobs. All of it is one
//! `Uploads`, held by the [`Repository`].
//!
//! A sealed pack stays readable from memory while it is written (it is
//! "in flight"), and the number of packs in flight is bounded, to bound
//! the memory they hold. Where the store asks for it
//! ([`Capabilities::background_writes`]) packs are written in the
//! background, overlapping with the work of cutting and compressing
//! chunks. The first failure to make or write a pack, in the background
//! or not, is kept ([`UploadError`]), and every later store and flush
//! fails with it, so that nothing is ever committed that refers to a pack
//! that was not written.
//!
//! The pipeline uses the repository's storage, codec and catalog, which
//! each call is given. This module adds to [`Repository`] the operations
//! that end the pipeline's work: [`Repository::flush`] and
//! [`Repository::consolidate_index`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::blobs::blob_context;
use super::error::RepoResult;
use super::ids::{ChunkId, ObjectId};
use super::index::{self, BlobKind, Index, Location};
use super::pack::{self, Packer, Sealed};
use super::segment::Segment;
use super::storage::{Capabilities, StorageError};
use super::Repository;

/// Lock `m`, whether or not a thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many of its new chunks a backup holds in memory before it moves
/// those of packs already written to the local index cache (see
/// [`Repository::limit_new_chunks_in_memory`]): about 22 MB of them.
pub const NEW_CHUNKS_IN_MEMORY: usize = 1 << 18;

/// The room a tree pack's buffer starts with (see
/// [`Uploads::first_capacity`]).
const TREE_PACK_START: usize = 256 << 10;

/// The first failure to make or write a pack (in the background or not),
/// which every later store and flush of the run fails with.
#[derive(Clone, Debug, thiserror::Error)]
#[error(transparent)]
pub struct UploadError(StorageError);

/// Packs sealed and being written, by pack number, readable meanwhile;
/// shared with the completions of background writes.
#[derive(Default)]
struct InFlight {
    packs: Mutex<HashMap<u32, Arc<Sealed>>>,
    /// Signalled whenever a pack leaves.
    done: Condvar,
}

impl InFlight {
    fn remove(&self, number: u32) {
        self.remove_then(number, || ());
    }

    /// Remove a pack, and do `then` before any waiter sees it gone: a
    /// waiter that finds room also finds what `then` did (the pack's
    /// buffer kept for the next pack).
    fn remove_then(&self, number: u32, then: impl FnOnce()) {
        let mut packs = lock(&self.packs);
        drop(packs.remove(&number));
        then();
        drop(packs);
        self.done.notify_all();
    }

    /// Wait until fewer than `limit` packs are in flight, and return them.
    fn wait_below(&self, limit: usize) -> MutexGuard<'_, HashMap<u32, Arc<Sealed>>> {
        let mut packs = lock(&self.packs);
        while packs.len() >= limit {
            packs = self.done.wait(packs).unwrap_or_else(|e| e.into_inner());
        }
        packs
    }
}

/// An index object a run's own were merged into: this run's chunks from
/// `first` to `last`.
struct Merged {
    id: ObjectId,
    first: ChunkId,
    last: ChunkId,
    entries: u64,
}

/// The pack-upload pipeline of one repository.
pub(crate) struct Uploads {
    /// Target size of a pack.
    pack_size: usize,
    /// What the store asks for: background writes, packs in flight.
    capabilities: Capabilities,
    /// The pack being filled, per blob kind (data, tree).
    packers: [Mutex<Option<Packer>>; 2],
    in_flight: Arc<InFlight>,
    /// The first failure of a background upload.
    failure: Arc<Mutex<Option<UploadError>>>,
    /// Index objects written by this process.
    written: Arc<Mutex<Vec<ObjectId>>>,
    /// Index objects this process began to write, written or not: a
    /// write reported failed may have been done all the same (the store
    /// lost its answer), and such an object lists this process's packs.
    attempted: Arc<Mutex<HashSet<ObjectId>>>,
    /// The buffer of a data pack written by the calling thread, kept for
    /// the next data pack: a new buffer of a pack's size is fresh memory
    /// from the system, which costs a page fault and the zeroing of a page
    /// for every 4 KiB filled, and giving it back unmaps it again.
    spare: Mutex<Option<Vec<u8>>>,
    /// Entries per merged index object ([`index::ENTRIES_PER_MERGED_OBJECT`];
    /// tests set fewer).
    merged_entries: AtomicUsize,
    /// The index objects this process wrote for one pack each, with the
    /// pack's number, whose entries are still held in memory.
    in_memory: Arc<Mutex<Vec<(ObjectId, u32)>>>,
    /// How many of this process's chunks are held in memory before those
    /// of written packs move to the local index cache (see
    /// [`Uploads::spill`]); `usize::MAX`, never, unless a backup asks.
    spill_at: AtomicUsize,
    /// What `spill_at` becomes when a backup asks.
    new_chunks_in_memory: usize,
    /// Held by the thread that moves chunks out of memory.
    spilling: Mutex<()>,
}

impl Uploads {
    /// A pipeline making packs of about `pack_size` bytes (clamped to
    /// what the format allows), for a store of `capabilities`.
    pub fn new(pack_size: u64, capabilities: Capabilities, new_chunks_in_memory: usize) -> Self {
        Uploads {
            pack_size: pack_size.clamp(1 << 16, 1 << 30) as usize,
            capabilities,
            packers: [Mutex::new(None), Mutex::new(None)],
            in_flight: Arc::default(),
            failure: Arc::default(),
            written: Arc::default(),
            attempted: Arc::default(),
            spare: Mutex::new(None),
            merged_entries: AtomicUsize::new(index::ENTRIES_PER_MERGED_OBJECT),
            in_memory: Arc::default(),
            spill_at: AtomicUsize::new(usize::MAX),
            new_chunks_in_memory,
            spilling: Mutex::new(()),
        }
    }

    /// The room a new pack's buffer starts with. A data pack fills up
    /// fast, so it gets all it will hold (its trailer counted, see
    /// [`Packer::would_overflow`]) at once, not copied as it grows. A tree
    /// pack fills slowly (a backup's trees are a small part of its data)
    /// and is often written part full at the end of a run: it starts small
    /// and grows, so that it does not hold a pack's worth of memory for the
    /// whole run.
    fn first_capacity(&self, kind: BlobKind) -> usize {
        let full = self.pack_size + pack::TRAILER_SLACK;
        match kind {
            BlobKind::Data => full,
            BlobKind::Tree => full.min(TREE_PACK_START),
        }
    }

    /// Keep `e`, a failure to make or write a pack (or its index object),
    /// as the run's upload failure, before the pack leaves the in-flight
    /// set that a flush waits on. The pack's blobs are in the catalog,
    /// where other threads find them (deduplicating against them), and a
    /// checkpoint another thread committed after a successful flush would
    /// refer to blobs in no pack: so every later store and flush fails,
    /// whichever thread writes and however the pack was lost.
    fn keep_failure(&self, repo: &Repository, e: &super::error::RepoError) {
        use super::error::RepoError;
        let failure = match e {
            RepoError::Storage(e) | RepoError::Upload(UploadError(e)) => e.clone(),
            other => StorageError::Failed {
                url: repo.storage.url().to_string(),
                op: "write",
                key: "a pack".into(),
                message: other.to_string(),
            },
        };
        lock(&self.failure).get_or_insert(UploadError(failure));
    }

    /// Fail if an upload failed (see [`keep_failure`](Self::keep_failure)).
    pub fn check(&self) -> Result<(), UploadError> {
        match &*lock(&self.failure) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Add a blob to the pack being filled for its kind; seal and write
    /// that pack first if the blob would overflow it.
    pub fn put(
        &self,
        repo: &Repository,
        id: ChunkId,
        kind: BlobKind,
        data: &[u8],
    ) -> RepoResult<()> {
        self.check()?;
        let (header, payload) = repo.codec.seal_blob(&blob_context(&id, kind), data)?;
        self.put_sealed(repo, id, kind, &header, &payload)
    }

    /// Add a blob already in its stored form (filter header and payload,
    /// as read from another pack): a prune copying the blobs still needed
    /// out of a pack it will delete.
    pub fn put_stored(
        &self,
        repo: &Repository,
        id: ChunkId,
        kind: BlobKind,
        stored: &[u8],
    ) -> RepoResult<()> {
        self.check()?;
        self.put_sealed(repo, id, kind, &[], stored)
    }

    fn put_sealed(
        &self,
        repo: &Repository,
        id: ChunkId,
        kind: BlobKind,
        header: &[u8],
        payload: &[u8],
    ) -> RepoResult<()> {
        let full = {
            let mut slot = lock(&self.packers[kind as usize]);
            let len = header.len() + payload.len();
            // A full pack is sealed before the next one is started: the
            // sealing waits until the pack in flight is written, whose
            // buffer the next pack then takes. Started first, the next
            // pack would find no buffer to take and make a third.
            let full = match slot.take() {
                Some(p) if p.would_overflow(len, self.pack_size) => {
                    Some(self.start_sealing(repo, p)?)
                }
                open => {
                    *slot = open;
                    None
                }
            };
            let packer = match slot.as_mut() {
                Some(p) => p,
                None => {
                    let pack = ObjectId::random();
                    let number = repo.catalog.write().pack_number(pack);
                    let buf = match kind {
                        BlobKind::Data => lock(&self.spare).take(),
                        BlobKind::Tree => None,
                    };
                    let buf = buf.unwrap_or_else(|| Vec::with_capacity(self.first_capacity(kind)));
                    slot.insert(Packer::new(pack, number, kind, buf))
                }
            };
            let location = packer.add(id, header, payload);
            let mut index = repo.catalog.write();
            index.add(id, location);
            (
                full,
                index.added_len() >= self.spill_at.load(Ordering::Relaxed),
            )
        };
        let (full, spill) = full;
        if let Some((number, sealed)) = full {
            self.seal(repo, number, sealed)?;
        }
        if spill {
            self.spill(repo);
        }
        Ok(())
    }

    /// Move this process's chunks of packs whose index objects are written
    /// out of memory, into a segment of the local index cache (see
    /// [`index::Index::add_own_segment`]): a run that stores millions of
    /// new chunks held them all (about 86 bytes each) until its end. One
    /// thread at a time; the others go on.
    fn spill(&self, repo: &Repository) {
        let Ok(_one) = self.spilling.try_lock() else {
            return;
        };
        let objects = std::mem::take(&mut *lock(&self.in_memory));
        if objects.is_empty() {
            return;
        }
        let packs: HashMap<u32, u32> = objects
            .iter()
            .enumerate()
            .map(|(n, (_, pack))| (*pack, n as u32))
            .collect();
        let mut index = repo.catalog.write();
        let mut counts = vec![0u64; objects.len()];
        for (_, object) in index.added_in_packs(&packs) {
            counts[object as usize] += 1;
        }
        let names: Vec<(String, u64)> = objects
            .iter()
            .zip(counts)
            .map(|((id, _), count)| (id.to_hex(), count))
            .collect();
        let kept = repo
            .catalog
            .cache()
            .keep_own(&index, &names, index.added_in_packs(&packs));
        match kept {
            Some(segment) => {
                let count = names.iter().map(|(_, n)| *n as usize).sum();
                let tokens = index.added_in_packs(&packs).map(|(e, _)| e.id.token);
                let filter = index::TokenFilter::of(count, tokens);
                tracing::debug!(
                    "index: {} of this run's chunks moved from memory to the cache",
                    segment.len()
                );
                index.add_own_segment(segment, filter);
                index.forget_added_in_packs(&packs);
            }
            None => {
                // No folder to keep them in: they stay in memory, and no
                // run of this process tries again.
                self.spill_at.store(usize::MAX, Ordering::Relaxed);
            }
        }
    }

    /// Finish a full packer's bytes and move it to the in-flight set, where
    /// its blobs stay readable while it is written. Called with the
    /// packer's slot locked, so that its blobs are always findable.
    fn start_sealing(&self, repo: &Repository, packer: Packer) -> RepoResult<(u32, Arc<Sealed>)> {
        let trailer = repo
            .codec
            .encode(
                &format!("pack/{}", packer.id),
                pack::trailer(&packer.entries),
            )
            .inspect_err(|e| self.keep_failure(repo, e))?;
        let sealed = Arc::new(Sealed {
            id: packer.id,
            kind: packer.kind,
            bytes: bytes::Bytes::from(pack::finish(packer.buf, &trailer)),
            entries: packer.entries,
        });
        // Bound the memory held by packs waiting to be written.
        let mut in_flight = self.in_flight.wait_below(self.capabilities.packs_in_flight);
        in_flight.insert(packer.number, sealed.clone());
        Ok((packer.number, sealed))
    }

    /// Write a pack, then the index object listing its blobs.
    fn seal(&self, repo: &Repository, number: u32, sealed: Arc<Sealed>) -> RepoResult<()> {
        if self.capabilities.background_writes {
            return self.seal_in_background(repo, number, sealed);
        }
        let result = self
            .write_pack(repo, number, &sealed)
            .inspect_err(|e| self.keep_failure(repo, e));
        self.in_flight
            .remove_then(number, || self.keep_buffer(sealed));
        result
    }

    /// Keep the buffer of a data pack that has been written (and that no
    /// reader holds any more) for the next one.
    fn keep_buffer(&self, sealed: Arc<Sealed>) {
        let Ok(sealed) = Arc::try_unwrap(sealed) else {
            return;
        };
        if sealed.kind != BlobKind::Data {
            return;
        }
        if let Ok(bytes) = sealed.bytes.try_into_mut() {
            let buf = Vec::from(bytes);
            if buf.capacity() >= self.first_capacity(BlobKind::Data) {
                *lock(&self.spare) = Some(buf);
            }
        }
    }

    /// [`seal`](Self::seal) without waiting: the pack and then its index
    /// object are written in the background, in that order, while the
    /// caller goes on cutting and compressing chunks. The pack stays
    /// readable from memory until its upload is done.
    fn seal_in_background(
        &self,
        repo: &Repository,
        number: u32,
        sealed: Arc<Sealed>,
    ) -> RepoResult<()> {
        let index_id = ObjectId::random();
        let index_key = format!("index/{index_id}");
        lock(&self.attempted).insert(index_id);
        let index_object = index::encode(&repo.catalog.read(), &sealed.entries);
        let index_object = match repo.codec.encode(&index_key, index_object) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.keep_failure(repo, &e);
                self.in_flight.remove(number);
                return Err(e);
            }
        };
        let in_flight = self.in_flight.clone();
        let (failure, written) = (self.failure.clone(), self.written.clone());
        let in_memory = self.in_memory.clone();
        repo.storage.write_in_background(
            vec![
                (pack::key(&sealed.id), sealed.bytes.clone()),
                (index_key, bytes::Bytes::from(index_object)),
            ],
            move |result| {
                match result {
                    Ok(()) => {
                        lock(&written).push(index_id);
                        lock(&in_memory).push((index_id, number));
                    }
                    Err(e) => {
                        lock(&failure).get_or_insert(UploadError(e));
                    }
                }
                in_flight.remove(number);
            },
        );
        self.check()?;
        repo.refresh_locks()
    }

    fn write_pack(&self, repo: &Repository, number: u32, sealed: &Sealed) -> RepoResult<()> {
        repo.storage
            .write(&pack::key(&sealed.id), sealed.bytes.clone())?;
        let index_id = ObjectId::random();
        let data = index::encode(&repo.catalog.read(), &sealed.entries);
        lock(&self.attempted).insert(index_id);
        repo.write_object(&format!("index/{index_id}"), data)?;
        lock(&self.written).push(index_id);
        lock(&self.in_memory).push((index_id, number));
        // A long run keeps its locks fresh as it writes.
        repo.refresh_locks()
    }

    /// Write every pack still being filled, and wait for packs other
    /// threads are writing.
    fn flush(&self, repo: &Repository) -> RepoResult<()> {
        for slot in &self.packers {
            let sealed = {
                let mut slot = lock(slot);
                match slot.take() {
                    Some(p) => Some(self.start_sealing(repo, p)?),
                    None => None,
                }
            };
            if let Some((number, sealed)) = sealed {
                self.seal(repo, number, sealed)?;
            }
        }
        drop(self.in_flight.wait_below(1));
        Ok(self.check()?)
    }

    /// Replace the index objects this process wrote by as few as hold
    /// their entries.
    ///
    /// The entries are taken from the index's map of this run's chunks a
    /// group at a time, in id order, each group encoded and written before
    /// the next is taken: a million new chunks were a list of 56 MB, its
    /// encoding of 53 MB and the filters' copy of it, all at once, on top
    /// of the map (a third of the peak memory of a million files' initial
    /// backup).
    fn consolidate(&self, repo: &Repository) -> RepoResult<()> {
        let written = std::mem::take(&mut *lock(&self.written));
        if written.len() < 2 {
            lock(&self.written).extend(written);
            return Ok(());
        }
        // All merged objects are written before any old one is deleted.
        let mut merged: Vec<Merged> = Vec::new();
        // Where the merge cannot go on, the run's own index objects stay
        // as they are, and those merged so far go (they list the same
        // blobs).
        let abandon = |merged: &[Merged], written: Vec<ObjectId>| {
            for m in merged {
                let _ = repo.storage.delete(&format!("index/{}", m.id));
            }
            lock(&self.written).extend(written);
        };
        loop {
            let after = merged.last().map(|m| m.last);
            let group = repo
                .catalog
                .read()
                .own_after(after.as_ref(), self.merged_entries.load(Ordering::Relaxed));
            let group = match group {
                Ok(group) => group,
                // A segment of this run's chunks cannot be read.
                Err(e) => {
                    tracing::warn!("this run's index objects are not merged: {e}");
                    abandon(&merged, written);
                    return Ok(());
                }
            };
            let (Some(first), Some(last)) = (group.first(), group.last()) else {
                break;
            };
            let (first, last) = (first.id, last.id);
            let id = ObjectId::random();
            lock(&self.attempted).insert(id);
            let data = index::encode(&repo.catalog.read(), &group);
            // The store went away after the commit, say.
            if let Err(e) = write_merged(repo, id, data) {
                abandon(&merged, written);
                return Err(e);
            }
            merged.push(Merged {
                id,
                first,
                last,
                entries: group.len() as u64,
            });
        }
        for id in &written {
            repo.storage.delete(&format!("index/{id}"))?;
        }
        lock(&self.in_memory).clear();
        if let Some(segment) = self.remember_merged(repo, &merged) {
            // The merged objects' segment answers for this run's chunks
            // from now on; its own segments covered the index objects just
            // deleted (without the cache's segment they stay, for this
            // process: the next run drops them).
            let mut index = repo.catalog.write();
            let live = vec![true; segment.objects.len()];
            index.add_segment(segment, live);
            let gone = index.remove_own_segments();
            drop(index);
            for segment in gone {
                repo.catalog.cache().remove(&segment);
            }
        }
        lock(&self.written).extend(merged.into_iter().map(|m| m.id));
        Ok(())
    }

    /// Merge a run's index objects into objects of at most `entries`.
    #[cfg(test)]
    pub fn set_merged_entries(&self, entries: usize) {
        self.merged_entries.store(entries.max(1), Ordering::Relaxed);
    }

    /// Keep the merged objects' entries in the local index cache, for the
    /// next run; each object holds this run's chunks from its first to
    /// its last. Only if every range still holds what was written (no
    /// chunk came meanwhile): the cache must list exactly what each
    /// object does.
    fn remember_merged(&self, repo: &Repository, merged: &[Merged]) -> Option<Segment> {
        let index = repo.catalog.read();
        let index: &Index = &index;
        let exact = merged
            .iter()
            .all(|m| index.own_range(&m.first, &m.last).count() as u64 == m.entries);
        if !exact {
            tracing::warn!("this run's chunks changed while its index objects were merged; not kept in the cache");
            return None;
        }
        let objects: Vec<(String, u64)> =
            merged.iter().map(|m| (m.id.to_hex(), m.entries)).collect();
        let tagged = merged.iter().enumerate().flat_map(move |(number, m)| {
            index
                .own_range(&m.first, &m.last)
                .map(move |e| (e, number as u32))
        });
        repo.catalog.cache().remember(index, &objects, tagged)
    }

    /// The stored bytes of a blob in a pack being filled or written.
    pub fn blob(&self, location: &Location) -> Option<Vec<u8>> {
        for slot in &self.packers {
            let guard = lock(slot);
            if let Some(p) = guard.as_ref().filter(|p| p.number == location.pack) {
                return p.blob(location);
            }
        }
        let in_flight = lock(&self.in_flight.packs);
        in_flight.get(&location.pack).and_then(|p| p.blob(location))
    }

    /// The numbers of the packs this process is filling or writing.
    pub fn packs_in_memory(&self) -> HashSet<u32> {
        let mut numbers: HashSet<u32> = lock(&self.in_flight.packs).keys().copied().collect();
        for slot in &self.packers {
            if let Some(p) = lock(slot).as_ref() {
                numbers.insert(p.number);
            }
        }
        numbers
    }

    /// The names of the index objects this process wrote.
    pub fn written_index_names(&self) -> HashSet<String> {
        lock(&self.written).iter().map(ObjectId::to_hex).collect()
    }

    /// The names of the index objects this process began to write,
    /// whether or not the store said they were written (see `attempted`).
    pub fn attempted_index_names(&self) -> HashSet<String> {
        lock(&self.attempted).iter().map(ObjectId::to_hex).collect()
    }
}

/// Write one merged index object (a test makes it fail, as a store that
/// went away after the commit would).
fn write_merged(repo: &Repository, id: ObjectId, data: Vec<u8>) -> RepoResult<()> {
    #[cfg(test)]
    if crate::index_tests::FAIL_MERGE.with(std::cell::Cell::get) {
        return Err(crate::error::RepoError::Usage(
            "the merge's write failed (test)".into(),
        ));
    }
    repo.write_object(&format!("index/{id}"), data)
}

impl Repository {
    /// Write every pack still being filled, and wait for packs other
    /// threads are writing. After this, every blob put so far is durable
    /// and indexed.
    pub fn flush(&self) -> RepoResult<()> {
        self.uploads.flush(self)
    }

    /// Hold at most about as many of this process's new chunks in memory
    /// as it was opened with ([`crate::OpenOptions::new_chunks_in_memory`]):
    /// those of packs already written move to the local index cache, a
    /// segment of this run's own (where there is a cache folder). The
    /// run's merge of its index objects reads them back from there. A
    /// backup asks; other commands store few chunks.
    pub fn limit_new_chunks_in_memory(&self) {
        let chunks = self.uploads.new_chunks_in_memory.max(1);
        self.uploads.spill_at.store(chunks, Ordering::Relaxed);
    }

    /// Replace the index objects this process wrote by one. Call only after
    /// a successful final commit.
    pub fn consolidate_index(&self) -> RepoResult<()> {
        self.uploads.consolidate(self)
    }
}
