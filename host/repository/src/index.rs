//! The chunk index: where each stored chunk is (pack, offset, length),
//! as this process sees it, and as index objects.
//!
//! The entries of the index objects in the repository (the *loaded*
//! entries) are not held in memory: they are in sorted, immutable
//! segment files on local disk ([`crate::segment`]), which a process
//! reads a page at a time; [`crate::index_cache`] decides which segments
//! exist and builds them from the index objects. In memory are only each
//! segment's tables (about 1/500 of its size), the pack table (one entry
//! per pack, not per chunk), and the chunks stored by this process (an
//! ordered map: a run's new chunks). A backup holds at most some 2^18 of
//! those ([`crate::upload::NEW_CHUNKS_IN_MEMORY`]): the entries of packs
//! already written then move to a segment of the run's own in the local
//! cache ([`Index::add_own_segment`]), with a Bloom filter of its tokens
//! ([`TokenFilter`], 10 bits a chunk), since nearly every lookup of a new
//! chunk misses there. So the memory of a run grows with the
//! repository's packs, not with its chunks nor the run's; a lookup reads
//! one 4 KiB page per segment (a few, see [`crate::index_cache`]).
//!
//! An entry of a segment is trusted only if the index object it came
//! from is *live* for this process: listed in `index/` when it was last
//! listed (the first load, or a fresh reload), and covered by no other
//! segment loaded before it (each index object is read from one
//! segment). So entries of index objects deleted since (merged by a run,
//! or by a prune that moved the blobs and deleted their pack) are never
//! used, however old the cache. A blob listed in the same pack by two
//! live index objects is one copy.
//!
//! One blob may be listed in two packs: a prune copies the blobs still
//! needed out of a pack it is about to delete ([`crate::prune`]). Both
//! places are kept, in pack-id order. Packs that a prune plans to delete
//! are *planned* ([`Index::set_planned`]): a blob in one is still read
//! from there if no other copy is known, but it no longer counts as
//! stored for dedup ([`Index::get_kept`], [`Index::find`]), so that
//! nothing new comes to depend on it.
//!
//! An index object (`index/ID`) lists entries for one or more packs:
//!
//! ```text
//! "OBNAMIX1"
//! u32 LE  number of packs P, then P pack ids of 16 bytes
//! u32 LE  number of entries N, then N entries of 53 bytes:
//!         token (32), variant (u64 LE), pack number (u32 LE, into the
//!         pack list above), offset (u32 LE), length (u32 LE), kind (u8)
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use super::ids::{ChunkId, ObjectId, Token};
use super::segment::{SegEntry, Segment, SegmentCursor, SegmentError};

/// What a blob holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum BlobKind {
    /// File content.
    Data = 0,
    /// A directory (tree) object.
    Tree = 1,
}

impl BlobKind {
    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Where a blob is: in which pack (a number into the index's pack table),
/// at which offset, how long (stored bytes, filter header included).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Location {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub kind: BlobKind,
}

/// One entry of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: ChunkId,
    pub location: Location,
}

const MAGIC: &[u8; 8] = b"OBNAMIX1";

/// The most entries a writer puts in one index object (or one pack, whose
/// trailer lists as many): about 53 MiB, well under the format's limit
/// on index objects and trailers.
pub const MAX_ENTRIES_PER_OBJECT: usize = 1 << 20;
const ENTRY_BYTES: usize = 53;

/// Entries per index object written by merging others (a run's own, at
/// its end; a prune's rewritten and compacted ones): encoding one holds
/// about 14 MiB beside the index, where one of [`MAX_ENTRIES_PER_OBJECT`]
/// held 56.
pub const ENTRIES_PER_MERGED_OBJECT: usize = 1 << 18;

/// Log a segment found damaged in a lookup: it counts as holding nothing
/// from then on, and the next run rebuilds it.
fn log_broken(e: &SegmentError) {
    tracing::warn!("{e}; it is not used again: what it held is read from the repository");
}

/// A segment as this process uses it.
pub struct LoadedSegment {
    pub segment: Arc<Segment>,
    /// This process's number of each of the segment's packs.
    numbers: Vec<u32>,
    /// Whether each index object the segment covers is live (see the
    /// module's docs), by the segment's object number.
    pub live: Vec<bool>,
    /// Whether it holds this process's own chunks, moved out of memory
    /// ([`Index::add_own_segment`]): never merged with others, and read
    /// with the chunks in memory when the run merges its index objects.
    pub own: bool,
    /// For an own segment, which tokens it may hold: nearly every lookup
    /// of a new chunk misses in it, and is answered without a page read.
    filter: Option<TokenFilter>,
}

impl LoadedSegment {
    /// Whether the segment may hold a copy of `token` (false: it holds
    /// none).
    fn may_hold(&self, token: &Token) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_hold(token))
    }
}

/// A Bloom filter of tokens: about 10 bits a token, 7 probes, so that 1
/// in 100 tokens not in it seems to be. Tokens are hashes already (or
/// keyed hashes): their bytes are the probes' hashes.
pub struct TokenFilter {
    bits: Vec<u64>,
}

impl TokenFilter {
    const PROBES: u64 = 7;

    /// A filter of `tokens` (a count of them first, to size it).
    pub fn of(count: usize, tokens: impl Iterator<Item = Token>) -> Self {
        let words = (count.max(1) * 10).div_ceil(64);
        let mut filter = TokenFilter {
            bits: vec![0; words],
        };
        for token in tokens {
            for bit in filter.probes(&token) {
                filter.bits[bit / 64] |= 1 << (bit % 64);
            }
        }
        filter
    }

    fn probes(&self, token: &Token) -> impl Iterator<Item = usize> {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&token.0[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let (h1, h2) = (word(0), word(8) | 1);
        let m = self.bits.len() as u64 * 64;
        (0..Self::PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    /// Whether `token` may be one of the filter's (false: it is not).
    pub fn may_hold(&self, token: &Token) -> bool {
        self.probes(token)
            .all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

/// Whether a pack's first `kept` bytes hold the whole of a blob at
/// `offset`, `length` (none does if `kept` is 0: the pack is gone).
fn holds_whole(kept: u64, offset: u32, length: u32) -> bool {
    kept > 0 && u64::from(offset) + u64::from(length) <= kept
}

impl LoadedSegment {
    /// The id of the segment's pack number `local`.
    pub fn pack_id(&self, index: &Index, local: u32) -> Option<ObjectId> {
        index.pack_id(*self.numbers.get(local as usize)?)
    }

    /// An entry as the index gives it, if it is trusted.
    fn trusted(&self, e: &SegEntry, dropped: &HashMap<u32, u64>) -> Option<IndexEntry> {
        if !self.live.get(e.object as usize).copied().unwrap_or(false) {
            return None;
        }
        let pack = *self.numbers.get(e.pack as usize)?;
        if dropped
            .get(&pack)
            .is_some_and(|kept| !holds_whole(*kept, e.offset, e.length))
        {
            return None;
        }
        Some(IndexEntry {
            id: e.id,
            location: Location {
                pack,
                offset: e.offset,
                length: e.length,
                kind: e.kind,
            },
        })
    }

    /// The live index objects it covers, with the packs each lists (by
    /// this process's numbers).
    fn live_objects(&self) -> impl Iterator<Item = (&str, Vec<u32>)> + '_ {
        self.segment
            .objects
            .iter()
            .zip(&self.live)
            .filter(|(_, live)| **live)
            .map(|(o, _)| {
                let packs = o
                    .packs
                    .iter()
                    .filter_map(|n| self.numbers.get(*n as usize).copied())
                    .collect();
                (o.name.as_str(), packs)
            })
    }
}

/// The index of a repository as this process sees it.
#[derive(Default)]
pub struct Index {
    /// Pack ids by number.
    packs: Vec<ObjectId>,
    /// By number, where the last blob the loaded index objects place in
    /// each pack ends: a pack shorter than that was cut short
    /// ([`pack_end`](Self::pack_end)).
    pack_ends: Vec<u64>,
    /// Pack numbers in pack-id order, of the packs numbered when it was
    /// last sorted (4 bytes a pack, where a hash map takes about 24).
    by_id: Vec<u32>,
    /// Numbers of the packs numbered since.
    recent: HashMap<ObjectId, u32>,
    /// The loaded entries, in segments.
    segments: Vec<LoadedSegment>,
    /// Entries given to [`extend_loaded`](Self::extend_loaded), until
    /// [`finish_loading`](Self::finish_loading) makes them a segment.
    pending: Vec<IndexEntry>,
    /// Entries added by this process.
    added: BTreeMap<ChunkId, Location>,
    /// Packs a prune plans to delete, by number.
    planned: HashSet<u32>,
    /// Packs whose loaded entries no longer all count, by number, each
    /// with how many of its first bytes still hold whole blobs: 0 for a
    /// pack found missing (none of its entries counts), else the size of
    /// a pack found cut short (the entries of blobs ending past it do not
    /// count; see [`cut_packs`](Self::cut_packs)).
    dropped: HashMap<u32, u64>,
}

impl Index {
    /// The number of a pack, adding it to the pack table if new.
    pub fn pack_number(&mut self, pack: ObjectId) -> u32 {
        if let Ok(i) = self
            .by_id
            .binary_search_by_key(&pack, |n| self.packs[*n as usize])
        {
            return self.by_id[i];
        }
        if let Some(n) = self.recent.get(&pack) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack);
        self.pack_ends.push(0);
        self.recent.insert(pack, n);
        n
    }

    /// Where the last blob that loaded index objects place in pack
    /// `number` ends (0 if none): the least size the pack can have.
    pub fn pack_end(&self, number: u32) -> u64 {
        self.pack_ends.get(number as usize).copied().unwrap_or(0)
    }

    /// Sort the packs numbered recently into `by_id`, once they are many.
    fn settle_pack_table(&mut self) {
        if self.recent.len() < 1024 || self.recent.len() * 8 < self.by_id.len() {
            return;
        }
        let packs = &self.packs;
        self.by_id = (0..packs.len() as u32).collect();
        self.by_id.sort_unstable_by_key(|n| packs[*n as usize]);
        self.by_id.shrink_to_fit();
        self.packs.shrink_to_fit();
        self.pack_ends.shrink_to_fit();
        self.recent = HashMap::new();
    }

    /// The pack id of a pack number.
    pub fn pack_id(&self, number: u32) -> Option<ObjectId> {
        self.packs.get(number as usize).copied()
    }

    /// Use a segment, with which of its index objects are live.
    pub fn add_segment(&mut self, mut segment: Segment, live: Vec<bool>) {
        let ends = segment.take_pack_ends();
        let numbers: Vec<u32> = segment
            .take_packs()
            .into_iter()
            .map(|p| self.pack_number(p))
            .collect();
        for (n, end) in numbers.iter().zip(ends) {
            let known = &mut self.pack_ends[*n as usize];
            *known = (*known).max(end);
        }
        self.settle_pack_table();
        let segment = Arc::new(segment);
        self.segments.push(LoadedSegment {
            segment,
            numbers,
            live,
            own: false,
            filter: None,
        });
    }

    /// Use a segment of this process's own chunks (see
    /// [`forget_added_in_packs`](Self::forget_added_in_packs)): every
    /// index object it covers is one this process wrote, live.
    pub fn add_own_segment(&mut self, segment: Segment, filter: TokenFilter) {
        let live = vec![true; segment.objects.len()];
        self.add_segment(segment, live);
        if let Some(s) = self.segments.last_mut() {
            s.own = true;
            s.filter = Some(filter);
        }
    }

    /// Stop using the segments of this process's own chunks (the index
    /// objects they cover were merged into others); returns them.
    pub fn remove_own_segments(&mut self) -> Vec<Arc<Segment>> {
        self.remove_segments(|s| s.own)
    }

    /// How many chunks this process added that are held in memory.
    pub fn added_len(&self) -> usize {
        self.added.len()
    }

    /// This process's chunks in memory that are in `packs` (pack number
    /// to the number of the index object that lists the pack), in id
    /// order, each with its object's number.
    pub fn added_in_packs<'a>(
        &'a self,
        packs: &'a HashMap<u32, u32>,
    ) -> impl Iterator<Item = (IndexEntry, u32)> + Clone + 'a {
        self.added.iter().filter_map(|(id, location)| {
            let object = *packs.get(&location.pack)?;
            Some((
                IndexEntry {
                    id: *id,
                    location: *location,
                },
                object,
            ))
        })
    }

    /// Drop from memory this process's chunks in `packs`: a segment of
    /// them was just added ([`add_own_segment`](Self::add_own_segment)).
    /// So a run that stores millions of new chunks does not hold them all
    /// in memory (about 86 bytes each) until its end.
    pub fn forget_added_in_packs(&mut self, packs: &HashMap<u32, u32>) {
        self.added
            .retain(|_, location| !packs.contains_key(&location.pack));
    }

    /// The segments in use.
    pub fn segments(&self) -> &[LoadedSegment] {
        &self.segments
    }

    /// The segments in use, to change which of their objects are live.
    pub fn segments_mut(&mut self) -> &mut [LoadedSegment] {
        &mut self.segments
    }

    /// Stop using the segments `drop` picks; returns them.
    pub fn remove_segments(&mut self, drop: impl Fn(&LoadedSegment) -> bool) -> Vec<Arc<Segment>> {
        let (gone, kept) = std::mem::take(&mut self.segments)
            .into_iter()
            .partition(|s| drop(s));
        self.segments = kept;
        gone.into_iter().map(|s: LoadedSegment| s.segment).collect()
    }

    /// Add entries held in memory as loaded ones, listed by an index
    /// object named `(memory)` (call [`finish_loading`](Self::finish_loading)
    /// after): for tests, and for callers that have the entries at hand.
    pub fn extend_loaded(&mut self, entries: Vec<IndexEntry>) {
        self.pending.extend(entries);
    }

    /// Make the entries given to [`extend_loaded`](Self::extend_loaded) a
    /// segment kept in memory.
    pub fn finish_loading(&mut self) {
        let entries = std::mem::take(&mut self.pending);
        if entries.is_empty() {
            return;
        }
        let count = entries.len() as u64;
        let tagged = entries.iter().map(|e| (*e, 0));
        match crate::index_cache::build_segment(self, tagged, &[("(memory)".into(), count)], None) {
            Ok(segment) => self.add_segment(segment, vec![true]),
            // Only a failure to get randomness for the salt gets here.
            Err(e) => tracing::error!("could not keep loaded index entries: {e}"),
        }
    }

    /// Forget the packs whose loaded entries were dropped (before the
    /// loaded entries are taken afresh).
    pub fn clear_dropped(&mut self) {
        self.dropped.clear();
    }

    /// Mark packs that a prune plans to delete (see the module's docs).
    pub fn set_planned(&mut self, packs: impl IntoIterator<Item = ObjectId>) {
        for pack in packs {
            let n = self.pack_number(pack);
            self.planned.insert(n);
        }
    }

    /// The trusted loaded copies of `id` (every id of `token` if `id` is
    /// `None`), one per pack, in (id, pack id) order. A segment that
    /// cannot be read counts as holding none: a chunk taken as absent is
    /// stored again, never the other way round.
    fn loaded_copies(&self, token: &Token, id: Option<&ChunkId>) -> Vec<IndexEntry> {
        let mut raw = Vec::new();
        let mut out = Vec::new();
        for s in &self.segments {
            if s.segment.is_broken() || !s.may_hold(token) {
                continue;
            }
            raw.clear();
            if let Err(e) = s.segment.lookup(token, id, &mut raw) {
                log_broken(&e);
                continue;
            }
            out.extend(raw.iter().filter_map(|e| s.trusted(e, &self.dropped)));
        }
        out.sort_unstable_by_key(|e| (e.id, self.pack_id(e.location.pack), e.location.offset));
        out.dedup_by_key(|e| (e.id, e.location.pack));
        out
    }

    /// Whether a segment was found damaged in this run: what it held
    /// counts as absent until the index is loaded afresh.
    pub fn has_broken_segment(&self) -> bool {
        self.segments.iter().any(|s| s.segment.is_broken())
    }

    /// The packs that hold chunks this process stored (by number).
    pub fn added_packs(&self) -> std::collections::BTreeSet<u32> {
        self.added.values().map(|l| l.pack).collect()
    }

    /// Record a chunk stored by this process.
    pub fn add(&mut self, id: ChunkId, location: Location) {
        self.added.insert(id, location);
    }

    /// Where to read a blob: a copy in a pack that stays if there is one,
    /// else one in a pack planned for deletion (still there until the
    /// prune's deletion, and read again from elsewhere after it).
    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        if let Some(loc) = self.added.get(id) {
            return Some(*loc);
        }
        let copies = self.loaded_copies(&id.token, Some(id));
        copies
            .iter()
            .find(|e| !self.planned.contains(&e.location.pack))
            .or(copies.first())
            .map(|e| e.location)
    }

    /// Every place a blob is stored: one per pack (loaded copies, and
    /// this process's own), planned packs included. fsck's check of a
    /// pack asks it of each blob the pack's own list names.
    pub fn places(&self, id: &ChunkId) -> Vec<Location> {
        let mut places: Vec<Location> = self
            .loaded_copies(&id.token, Some(id))
            .into_iter()
            .map(|e| e.location)
            .collect();
        if let Some(own) = self.added.get(id) {
            if !places.iter().any(|l| l.pack == own.pack) {
                places.push(*own);
            }
        }
        places
    }

    /// How many blobs the index lists in each pack (by pack number), one
    /// per blob and pack as [`for_each_blob`](Self::for_each_blob) gives
    /// them. (Where the last of them ends is [`pack_end`](Self::pack_end).)
    pub fn blobs_per_pack(&self) -> Result<HashMap<u32, u64>, SegmentError> {
        let mut packs: HashMap<u32, u64> = HashMap::new();
        self.for_each_blob(|_, places| {
            for l in places {
                *packs.entry(l.pack).or_default() += 1;
            }
        })?;
        Ok(packs)
    }

    /// Whether a blob is in a pack not planned for deletion: what
    /// [`get_kept`](Self::get_kept) finds, found without gathering every
    /// copy (the question a backup asks of each chunk of each unchanged
    /// file).
    pub fn has_kept(&self, id: &ChunkId) -> bool {
        if self.added.contains_key(id) {
            return true;
        }
        self.segments.iter().any(|s| {
            if s.segment.is_broken() || !s.may_hold(&id.token) {
                return false;
            }
            let kept = |e: &SegEntry| {
                s.trusted(e, &self.dropped)
                    .is_some_and(|e| !self.planned.contains(&e.location.pack))
            };
            s.segment.any_of(id, kept).unwrap_or_else(|e| {
                log_broken(&e);
                false
            })
        })
    }

    /// Where a blob is in a pack that is not planned for deletion: what
    /// dedup may build on.
    pub fn get_kept(&self, id: &ChunkId) -> Option<Location> {
        if let Some(loc) = self.added.get(id) {
            return Some(*loc);
        }
        self.loaded_copies(&id.token, Some(id))
            .iter()
            .find(|e| !self.planned.contains(&e.location.pack))
            .map(|e| e.location)
    }

    /// Every copy of a token in a pack not planned for deletion, in id
    /// order.
    pub fn find(&self, token: &Token) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self
            .loaded_copies(token, None)
            .iter()
            .filter(|e| !self.planned.contains(&e.location.pack))
            .map(|e| e.id)
            .collect();
        let low = ChunkId {
            token: *token,
            variant: 0,
        };
        let high = ChunkId {
            token: *token,
            variant: u64::MAX,
        };
        ids.extend(self.added.range(low..=high).map(|(id, _)| *id));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The packs that hold a trusted entry: listed by a live index object
    /// and not dropped, or holding a blob of this process.
    pub fn listed_packs(&self) -> HashSet<u32> {
        let mut packs: HashSet<u32> = self
            .segments
            .iter()
            .flat_map(|s| s.live_objects().flat_map(|(_, packs)| packs))
            .filter(|n| self.dropped.get(n).is_none_or(|kept| *kept > 0))
            .collect();
        packs.extend(self.added.values().map(|l| l.pack));
        packs
    }

    /// The ids of the packs [`listed_packs`](Self::listed_packs) gives.
    pub fn listed_pack_ids(&self) -> HashSet<ObjectId> {
        self.listed_packs()
            .into_iter()
            .filter_map(|n| self.pack_id(n))
            .collect()
    }

    /// The live index objects of the segments, with the packs each lists.
    pub fn object_packs(&self) -> HashMap<String, Vec<u32>> {
        let mut out: HashMap<String, Vec<u32>> = HashMap::new();
        for s in &self.segments {
            for (name, packs) in s.live_objects() {
                out.entry(name.to_string()).or_default().extend(packs);
            }
        }
        out
    }

    /// The live index objects of the segments, with how many entries
    /// each listed.
    pub fn object_sizes(&self) -> Vec<(String, u64)> {
        self.segments
            .iter()
            .flat_map(|s| s.segment.objects.iter().zip(&s.live))
            .filter(|(_, live)| **live)
            .map(|(o, _)| (o.name.clone(), o.entries))
            .collect()
    }

    /// Every trusted entry that the live index objects `objects` listed,
    /// segment by segment, a page at a time.
    pub fn for_each_entry_of(
        &self,
        objects: &HashSet<String>,
        mut f: impl FnMut(IndexEntry),
    ) -> Result<(), SegmentError> {
        for s in &self.segments {
            let wanted: Vec<bool> = s
                .segment
                .objects
                .iter()
                .map(|o| objects.contains(&o.name))
                .collect();
            if !wanted.iter().any(|w| *w) {
                continue;
            }
            let mut cursor = s.segment.cursor();
            while let Some(e) = cursor.peek()?.copied() {
                cursor.advance();
                if wanted.get(e.object as usize).copied().unwrap_or(false) {
                    if let Some(t) = s.trusted(&e, &self.dropped) {
                        f(t);
                    }
                }
            }
        }
        Ok(())
    }

    /// Drop every entry whose pack `keep` refuses (by pack number);
    /// returns the ids dropped that have no other copy left, and how many
    /// entries were dropped. Reads the segments through only if a listed
    /// pack is refused.
    pub fn retain_packs(
        &mut self,
        keep: impl Fn(u32) -> bool,
    ) -> Result<(Vec<ChunkId>, usize), SegmentError> {
        let going: HashSet<u32> = self
            .listed_packs()
            .into_iter()
            .filter(|n| !keep(*n))
            .collect();
        let going: HashMap<u32, u64> = going.into_iter().map(|n| (n, 0)).collect();
        self.drop_past(&going, |location| keep(location.pack))
    }

    /// Drop the entries of the blobs that end past the first `size` bytes
    /// of each pack `cuts` gives (by pack number, with its size): what a
    /// pack cut short lost. Its blobs before the cut still count (they
    /// can be read). Returns as [`retain_packs`](Self::retain_packs).
    pub fn cut_packs(
        &mut self,
        cuts: &HashMap<u32, u64>,
    ) -> Result<(Vec<ChunkId>, usize), SegmentError> {
        let cuts: HashMap<u32, u64> = cuts
            .iter()
            .map(|(n, size)| {
                // A pack dropped already stays dropped as far as it was.
                let kept = self.dropped.get(n).map_or(*size, |was| (*was).min(*size));
                (*n, kept)
            })
            .collect();
        self.drop_past(&cuts, |location| {
            cuts.get(&location.pack)
                .is_none_or(|kept| holds_whole(*kept, location.offset, location.length))
        })
    }

    /// Drop, of each pack in `cuts` (by number), the loaded entries of
    /// blobs that end past the bytes it keeps (0: all), and this
    /// process's own entries that `keep_added` refuses.
    fn drop_past(
        &mut self,
        cuts: &HashMap<u32, u64>,
        keep_added: impl Fn(&Location) -> bool,
    ) -> Result<(Vec<ChunkId>, usize), SegmentError> {
        let mut dropped = Vec::new();
        if !cuts.is_empty() {
            for e in self.loaded_entries() {
                let e = e?;
                let l = e.location;
                if cuts
                    .get(&l.pack)
                    .is_some_and(|kept| !holds_whole(*kept, l.offset, l.length))
                {
                    dropped.push(e.id);
                }
            }
        }
        self.dropped.extend(cuts);
        self.added.retain(|id, location| {
            let kept = keep_added(location);
            if !kept {
                dropped.push(*id);
            }
            kept
        });
        let count = dropped.len();
        dropped.sort_unstable();
        dropped.dedup();
        dropped.retain(|id| self.get(id).is_none());
        Ok((dropped, count))
    }

    /// The trusted loaded entries and this process's, merged by id: read
    /// in order, one page of each segment at a time.
    fn blobs(&self, with_added: bool) -> Blobs<'_> {
        Blobs {
            index: self,
            cursors: self
                .segments
                .iter()
                .map(|s| (s.segment.cursor(), s))
                .collect(),
            added: if with_added {
                Some(self.added.range(..).peekable())
            } else {
                None
            },
        }
    }

    /// Every blob once, in id order, with every place it is stored
    /// (loaded copies and this process's own, merged, one per pack). Reads
    /// the segments through in order, a page at a time.
    pub fn for_each_blob(
        &self,
        mut f: impl FnMut(ChunkId, &[Location]),
    ) -> Result<(), SegmentError> {
        let mut blobs = self.blobs(true);
        let mut places = Vec::new();
        while let Some(id) = blobs.next_blob(&mut places)? {
            f(id, &places);
        }
        Ok(())
    }

    /// Every trusted loaded entry, in id order (one per blob and pack).
    fn loaded_entries(&self) -> impl Iterator<Item = Result<IndexEntry, SegmentError>> + '_ {
        let mut blobs = self.blobs(false);
        let mut places: Vec<Location> = Vec::new();
        let mut current: Option<ChunkId> = None;
        let mut next = 0;
        let mut failed = false;
        std::iter::from_fn(move || loop {
            if failed {
                return None;
            }
            if let (Some(id), Some(location)) = (current, places.get(next)) {
                next += 1;
                return Some(Ok(IndexEntry {
                    id,
                    location: *location,
                }));
            }
            match blobs.next_blob(&mut places) {
                Ok(Some(id)) => {
                    current = Some(id);
                    next = 0;
                }
                Ok(None) => return None,
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
        })
    }

    /// Every entry, loaded ones first (read from the segments as the
    /// iterator goes: a segment that cannot be read ends it with an
    /// error).
    pub fn entries(&self) -> impl Iterator<Item = Result<IndexEntry, SegmentError>> + '_ {
        self.loaded_entries()
            .chain(self.added.iter().map(|(id, location)| {
                Ok(IndexEntry {
                    id: *id,
                    location: *location,
                })
            }))
    }

    /// Number of entries: those the live index objects listed (a blob
    /// that two of them list in one pack counts twice), and this
    /// process's.
    pub fn len(&self) -> usize {
        let loaded: u64 = self
            .segments
            .iter()
            .flat_map(|s| s.segment.objects.iter().zip(&s.live))
            .filter(|(_, live)| **live)
            .map(|(o, _)| o.entries)
            .sum();
        loaded as usize + self.added.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory held by the index: the segments' tables, the pack
    /// table and this process's entries (the pages of segments are read
    /// when needed, and not kept).
    pub fn memory_bytes(&self) -> usize {
        let segments: usize = self
            .segments
            .iter()
            .map(|s| {
                s.segment.memory_bytes()
                    + s.numbers.capacity() * 4
                    + s.live.capacity()
                    + s.filter.as_ref().map_or(0, TokenFilter::memory_bytes)
            })
            .sum();
        segments
            + self.packs.capacity() * std::mem::size_of::<ObjectId>()
            + self.pack_ends.capacity() * 8
            + self.by_id.capacity() * 4
            + self.recent.capacity() * (std::mem::size_of::<(ObjectId, u32)>() + 1)
            // A B-tree node holds up to 11 entries of 40 + 16 bytes.
            + self.added.len() * 64
    }

    /// This process's own chunks, in memory and in its own segments,
    /// merged in id order (one entry per chunk and pack), from the first
    /// at or after `from` (and a few before it, from a segment's page).
    fn own_entries_from(&self, from: Bound<ChunkId>) -> OwnEntries<'_> {
        let start = match &from {
            Bound::Included(id) | Bound::Excluded(id) => Some(id.token),
            Bound::Unbounded => None,
        };
        OwnEntries {
            blobs: Blobs {
                index: self,
                cursors: self
                    .segments
                    .iter()
                    .filter(|s| s.own)
                    .map(|s| {
                        let cursor = match &start {
                            Some(token) => s.segment.cursor_from(token),
                            None => s.segment.cursor(),
                        };
                        (cursor, s)
                    })
                    .collect(),
                added: Some(self.added.range((from, Bound::Unbounded)).peekable()),
            },
            places: Vec::new(),
            current: None,
            next: 0,
            failed: false,
        }
    }

    /// Up to `limit` of this process's own chunks, in memory and in its
    /// own segments, in id order: the first ones, or those after `after`.
    /// A run's index objects are merged a group at a time
    /// ([`ENTRIES_PER_MERGED_OBJECT`]), so that no list of all its new
    /// chunks is made; each group is read from where the last one ended.
    pub fn own_after(
        &self,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, SegmentError> {
        let from = after.map_or(Bound::Unbounded, |id| Bound::Excluded(*id));
        self.own_entries_from(from)
            .filter(|e| match (e, after) {
                (Ok(e), Some(after)) => e.id > *after,
                _ => true,
            })
            .take(limit)
            .collect()
    }

    /// This process's own chunks from `first` to `last` (both included),
    /// in id order; a segment that cannot be read ends them early.
    pub fn own_range<'a>(
        &'a self,
        first: &ChunkId,
        last: &ChunkId,
    ) -> impl Iterator<Item = IndexEntry> + Clone + 'a {
        let (first, last) = (*first, *last);
        self.own_entries_from(Bound::Included(first))
            .map_while(Result::ok)
            .skip_while(move |e| e.id < first)
            .take_while(move |e| e.id <= last)
    }
}

/// The merge of the segments' entries (and this process's) by id.
#[derive(Clone)]
struct Blobs<'a> {
    index: &'a Index,
    cursors: Vec<(SegmentCursor<'a>, &'a LoadedSegment)>,
    added: Option<std::iter::Peekable<std::collections::btree_map::Range<'a, ChunkId, Location>>>,
}

impl Blobs<'_> {
    /// The next blob, its places in `places` (one per pack, in pack-id
    /// order).
    fn next_blob(&mut self, places: &mut Vec<Location>) -> Result<Option<ChunkId>, SegmentError> {
        let dropped = &self.index.dropped;
        let mut min: Option<ChunkId> = None;
        for (cursor, s) in self.cursors.iter_mut() {
            // Skip what is not trusted, so that the head is a blob.
            while let Some(e) = cursor.peek()?.copied() {
                if s.trusted(&e, dropped).is_some() {
                    min = Some(min.map_or(e.id, |m| m.min(e.id)));
                    break;
                }
                cursor.advance();
            }
        }
        if let Some((id, _)) = self.added.as_mut().and_then(|a| a.peek()) {
            min = Some(min.map_or(**id, |m| m.min(**id)));
        }
        let Some(id) = min else {
            return Ok(None);
        };
        places.clear();
        if let Some(added) = self.added.as_mut() {
            if let Some((_, location)) = added.next_if(|(a, _)| **a == id) {
                places.push(*location);
            }
        }
        for (cursor, s) in self.cursors.iter_mut() {
            while let Some(e) = cursor.peek()?.copied() {
                if e.id != id {
                    break;
                }
                if let Some(t) = s.trusted(&e, dropped) {
                    places.push(t.location);
                }
                cursor.advance();
            }
        }
        let index = self.index;
        places.sort_unstable_by_key(|l| (index.pack_id(l.pack), l.offset));
        places.dedup_by_key(|l| l.pack);
        Ok(Some(id))
    }
}

/// This process's own chunks in id order: see [`Index::own_after`].
#[derive(Clone)]
pub struct OwnEntries<'a> {
    blobs: Blobs<'a>,
    places: Vec<Location>,
    current: Option<ChunkId>,
    next: usize,
    failed: bool,
}

impl Iterator for OwnEntries<'_> {
    type Item = Result<IndexEntry, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let (Some(id), Some(location)) = (self.current, self.places.get(self.next)) {
                self.next += 1;
                return Some(Ok(IndexEntry {
                    id,
                    location: *location,
                }));
            }
            match self.blobs.next_blob(&mut self.places) {
                Ok(Some(id)) => {
                    self.current = Some(id);
                    self.next = 0;
                }
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Encode entries (whose pack numbers refer to `index`) as an index object.
pub fn encode(index: &Index, entries: &[IndexEntry]) -> Vec<u8> {
    let mut local: Vec<ObjectId> = Vec::new();
    let mut local_numbers: HashMap<u32, u32> = HashMap::new();
    for e in entries {
        local_numbers.entry(e.location.pack).or_insert_with(|| {
            local.push(index.pack_id(e.location.pack).unwrap_or(ObjectId([0; 16])));
            (local.len() - 1) as u32
        });
    }
    let mut out = Vec::with_capacity(16 + local.len() * 16 + entries.len() * ENTRY_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(local.len() as u32).to_le_bytes());
    for p in &local {
        out.extend_from_slice(&p.0);
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id.token.0);
        out.extend_from_slice(&e.id.variant.to_le_bytes());
        out.extend_from_slice(&local_numbers[&e.location.pack].to_le_bytes());
        out.extend_from_slice(&e.location.offset.to_le_bytes());
        out.extend_from_slice(&e.location.length.to_le_bytes());
        out.push(e.location.kind as u8);
    }
    out
}

/// Decode an index object into `index`'s loaded entries (call
/// [`Index::finish_loading`] after the last one).
pub fn load_into(index: &mut Index, data: &[u8]) -> Result<(), String> {
    let entries = decode(index, data)?;
    index.extend_loaded(entries);
    Ok(())
}

/// Decode an index object, adding its packs to `index`'s pack table.
pub fn decode(index: &mut Index, data: &[u8]) -> Result<Vec<IndexEntry>, String> {
    let mut r = Reader { data, pos: 0 };
    if r.take(8)? != MAGIC {
        return Err("not an index object (bad magic)".into());
    }
    let pack_count = r.u32()? as usize;
    let mut numbers = Vec::with_capacity(pack_count.min(1 << 20));
    for _ in 0..pack_count {
        let mut id = [0u8; 16];
        id.copy_from_slice(r.take(16)?);
        numbers.push(index.pack_number(ObjectId(id)));
    }
    let count = r.u32()? as usize;
    if data.len() - r.pos != count * ENTRY_BYTES {
        return Err(format!(
            "{count} entries announced, {} bytes present",
            data.len() - r.pos
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let mut token = [0u8; 32];
        token.copy_from_slice(r.take(32)?);
        let variant = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| "short")?);
        let pack = r.u32()? as usize;
        let offset = r.u32()?;
        let length = r.u32()?;
        let kind = BlobKind::from_u8(r.take(1)?[0]).ok_or("unknown blob kind")?;
        let pack = *numbers.get(pack).ok_or("pack number out of range")?;
        entries.push(IndexEntry {
            id: ChunkId {
                token: Token(token),
                variant,
            },
            location: Location {
                pack,
                offset,
                length,
                kind,
            },
        });
    }
    Ok(entries)
}

/// A little cursor over bytes.
pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let bytes = self.data.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(bytes)
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: &mut Index, n: u8, variant: u64, pack: ObjectId) -> IndexEntry {
        IndexEntry {
            id: ChunkId {
                token: Token([n; 32]),
                variant,
            },
            location: Location {
                pack: index.pack_number(pack),
                offset: n as u32 * 10,
                length: 10,
                kind: BlobKind::Data,
            },
        }
    }

    #[test]
    fn every_blob_comes_once_with_every_place() {
        let mut index = Index::default();
        let (a, b, c) = (ObjectId::random(), ObjectId::random(), ObjectId::random());
        let loaded = vec![
            entry(&mut index, 1, 0, a),
            entry(&mut index, 1, 0, b),
            entry(&mut index, 3, 0, a),
        ];
        index.extend_loaded(loaded);
        index.finish_loading();
        for n in [2, 3] {
            let e = entry(&mut index, n, 0, c);
            index.add(e.id, e.location);
        }
        let mut seen = Vec::new();
        index
            .for_each_blob(|id, places| {
                let mut packs: Vec<ObjectId> = places
                    .iter()
                    .filter_map(|l| index.pack_id(l.pack))
                    .collect();
                packs.sort();
                seen.push((id.token.0[0], packs));
            })
            .unwrap();
        let sorted = |mut v: Vec<ObjectId>| {
            v.sort();
            v
        };
        assert_eq!(
            seen,
            vec![
                (1, sorted(vec![a, b])),
                (2, vec![c]),
                (3, sorted(vec![a, c])),
            ]
        );
    }

    #[test]
    fn pack_numbers_stay_when_the_pack_table_is_sorted() {
        let mut index = Index::default();
        let ids: Vec<ObjectId> = (0..5000).map(|_| ObjectId::random()).collect();
        let numbers: Vec<u32> = ids.iter().map(|p| index.pack_number(*p)).collect();
        // A segment added sorts the table (its own packs included).
        let e = entry(&mut index, 1, 0, ids[7]);
        let extra = ObjectId::random();
        let f = entry(&mut index, 2, 0, extra);
        index.extend_loaded(vec![e, f]);
        index.finish_loading();
        assert!(index.recent.is_empty() && index.by_id.len() == 5001);
        for (id, n) in ids.iter().zip(&numbers) {
            assert_eq!(index.pack_number(*id), *n);
            assert_eq!(index.pack_id(*n), Some(*id));
        }
        let n = index.pack_number(extra);
        assert_eq!(index.pack_id(n), Some(extra));
        let new = ObjectId::random();
        assert_eq!(index.pack_number(new), 5001);
        assert_eq!(index.pack_number(new), 5001);
        assert_eq!(index.get(&e.id).map(|l| l.pack), Some(numbers[7]));
    }

    #[test]
    fn entries_are_small() {
        assert_eq!(std::mem::size_of::<IndexEntry>(), 56);
    }

    #[test]
    fn encode_decode_and_find() {
        let mut index = Index::default();
        let (p1, p2) = (ObjectId::random(), ObjectId::random());
        let entries = vec![
            entry(&mut index, 1, 0, p1),
            entry(&mut index, 2, 0, p2),
            entry(&mut index, 2, 7, p1),
        ];
        let bytes = encode(&index, &entries);
        let mut fresh = Index::default();
        let decoded = decode(&mut fresh, &bytes).unwrap();
        fresh.extend_loaded(decoded);
        fresh.finish_loading();
        assert_eq!(fresh.len(), 3);
        let two = fresh.find(&Token([2; 32]));
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].variant, 0);
        assert_eq!(two[1].variant, 7);
        let loc = fresh.get(&two[1]).unwrap();
        assert_eq!(fresh.pack_id(loc.pack), Some(p1));
        assert!(fresh.find(&Token([3; 32])).is_empty());
        // Added entries are found alongside loaded ones.
        let p3 = ObjectId::random();
        let e = entry(&mut fresh, 2, 9, p3);
        fresh.add(e.id, e.location);
        assert_eq!(fresh.find(&Token([2; 32])).len(), 3);
        assert!(decode(&mut Index::default(), &bytes[..bytes.len() - 1]).is_err());
    }
}
