//! Where the chunks a process read and checked were stored: for fsck,
//! which reads every file's chunks (each checked against its id as it is
//! read) and then every pack whole, and decodes in the packs only what
//! the files did not read.
//!
//! The record is of places, not ids: a pack's check skips a blob where
//! it was read from, which is what the skip must mean (a copy of the same
//! chunk elsewhere was not read). It keeps, per pack, the offset of each
//! blob read and 4 bytes of its id: 8 bytes a chunk, where a set of chunk
//! ids took some 80, and the list of them handed over to the engine as
//! much again (a million chunks cost fsck 400 MB that way). The 4 bytes
//! of the id tell a blob read at an offset from another that a damaged
//! index places at the same offset.
//!
//! Off unless asked for ([`Repository::remember_chunk_reads`]): a backup
//! or a restore reads chunks too, and keeps no record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::ids::{ChunkId, ObjectId};
use crate::Repository;

/// The places of the chunks read, while on.
#[derive(Default)]
pub(crate) struct ReadRecord {
    on: AtomicBool,
    packs: Mutex<HashMap<ObjectId, Places>>,
}

/// The blobs read from one pack: (offset, tag), in order and once each
/// up to `settled`, and as read after it.
#[derive(Default)]
struct Places {
    places: Vec<(u32, u32)>,
    settled: usize,
}

impl Places {
    /// Sort and drop repeats once the unsorted tail is as long as the
    /// rest: a chunk read again and again (a block many files share)
    /// costs at most twice its place.
    fn push(&mut self, place: (u32, u32)) {
        self.places.push(place);
        if self.places.len() >= 2 * self.settled.max(32) {
            self.settle();
        }
    }

    fn settle(&mut self) {
        self.places.sort_unstable();
        self.places.dedup();
        self.settled = self.places.len();
    }
}

/// The blobs of one pack that were read and checked (see [`ReadRecord`]).
#[derive(Default)]
pub(crate) struct PackReads(Vec<(u32, u32)>);

impl PackReads {
    /// Whether blob `id` was read at `offset`.
    pub(crate) fn contains(&self, offset: u32, id: &ChunkId) -> bool {
        self.0.binary_search(&(offset, tag(id))).is_ok()
    }
}

/// 4 bytes of an id: its token's first and its variant's low.
fn tag(id: &ChunkId) -> u32 {
    let mut first = [0u8; 4];
    first.copy_from_slice(&id.token.0[..4]);
    u32::from_le_bytes(first) ^ (id.variant as u32)
}

impl ReadRecord {
    /// Record that `id` was read from `pack` at `offset` and was good.
    pub(crate) fn note(&self, pack: ObjectId, offset: u32, id: &ChunkId) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        self.packs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pack)
            .or_default()
            .push((offset, tag(id)));
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Take what was recorded of `pack` (the record keeps none of it).
    pub(crate) fn take(&self, pack: &ObjectId) -> PackReads {
        let places = self
            .packs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pack);
        PackReads(places.map_or_else(Vec::new, |mut p| {
            p.settle();
            p.places
        }))
    }

    /// How many distinct blobs were read.
    fn count(&self) -> u64 {
        let mut packs = self.packs.lock().unwrap_or_else(|e| e.into_inner());
        packs
            .values_mut()
            .map(|p| {
                p.settle();
                p.places.len() as u64
            })
            .sum()
    }
}

impl Repository {
    /// From now on, remember where each chunk read (and found good) was
    /// stored, so that [`check_objects`](Self::check_objects) with
    /// `verify_data` does not decode it again.
    pub fn remember_chunk_reads(&self) {
        self.caches.reads.on.store(true, Ordering::Relaxed);
    }

    /// How many distinct chunks were read since
    /// [`remember_chunk_reads`](Self::remember_chunk_reads) (none before
    /// it; those of packs a check took already are not counted).
    pub fn chunks_read(&self) -> u64 {
        self.caches.reads.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Token;

    fn id(n: u8, variant: u64) -> ChunkId {
        ChunkId {
            token: Token([n; 32]),
            variant,
        }
    }

    #[test]
    fn a_record_holds_each_place_once_and_only_while_on() {
        let record = ReadRecord::default();
        let pack = ObjectId([1; 16]);
        record.note(pack, 0, &id(1, 0));
        assert_eq!(record.count(), 0, "nothing is kept before it is on");
        record.on.store(true, Ordering::Relaxed);
        for round in 0..100 {
            for n in 0..50u8 {
                record.note(pack, u32::from(n) * 100, &id(n, round % 2));
            }
        }
        // Each blob twice: two variants at one offset count as two.
        assert_eq!(record.count(), 100);
        let reads = record.take(&pack);
        assert!(reads.contains(300, &id(3, 0)));
        assert!(reads.contains(300, &id(3, 1)));
        assert!(
            !reads.contains(300, &id(4, 0)),
            "another blob at that offset"
        );
        assert!(!reads.contains(301, &id(3, 0)));
        assert!(!record.take(&pack).contains(300, &id(3, 0)), "taken once");
        assert!(record.packs.lock().unwrap().is_empty());
    }

    #[test]
    fn a_record_of_a_chunk_read_again_and_again_stays_small() {
        let record = ReadRecord::default();
        record.on.store(true, Ordering::Relaxed);
        let pack = ObjectId([2; 16]);
        for _ in 0..100_000 {
            record.note(pack, 7, &id(9, 0));
        }
        let packs = record.packs.lock().unwrap();
        assert!(packs[&pack].places.len() <= 64);
    }
}
