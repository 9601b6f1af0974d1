//! The chunk index: where each stored chunk is (pack, offset, length),
//! in memory and as index objects.
//!
//! In memory, the entries read when the repository is opened are one
//! sorted vector of 56-byte [`IndexEntry`] values (no per-entry heap
//! allocation, no hash-table slack); chunks stored by this process are in
//! a small ordered map beside it. Both are searched by token (all copies
//! of a token are adjacent) and by chunk id.
//!
//! One blob may be listed in two packs: a prune copies the blobs still
//! needed out of a pack it is about to delete ([`crate::prune`]). Both
//! places are kept. Packs that a prune plans to delete are *planned*
//! ([`Index::set_planned`]): a blob in one is still read from there if no
//! other copy is known, but it no longer counts as stored for dedup
//! ([`Index::get_kept`], [`Index::find`]), so that nothing new comes to
//! depend on it.
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

use super::ids::{ChunkId, ObjectId, Token};

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
    fn from_u8(b: u8) -> Option<Self> {
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

/// One entry of the in-memory index.
#[derive(Clone, Copy, Debug)]
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

/// The in-memory index of a repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<ObjectId>,
    pack_numbers: HashMap<ObjectId, u32>,
    /// Entries read at open, sorted by id.
    loaded: Vec<IndexEntry>,
    /// Entries added by this process.
    added: BTreeMap<ChunkId, Location>,
    /// Packs a prune plans to delete, by number.
    planned: HashSet<u32>,
}

impl Index {
    /// The number of a pack, adding it to the pack table if new.
    pub fn pack_number(&mut self, pack: ObjectId) -> u32 {
        if let Some(n) = self.pack_numbers.get(&pack) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack);
        self.pack_numbers.insert(pack, n);
        n
    }

    /// The pack id of a pack number.
    pub fn pack_id(&self, number: u32) -> Option<ObjectId> {
        self.packs.get(number as usize).copied()
    }

    /// Add entries read from an index object (call [`finish_loading`](Self::finish_loading) after).
    pub fn extend_loaded(&mut self, entries: Vec<IndexEntry>) {
        if self.loaded.is_empty() {
            // The common case of one consolidated index object: no copy.
            self.loaded = entries;
        } else {
            self.loaded.extend(entries);
        }
    }

    /// Sort what was loaded and drop duplicate entries (the same blob in
    /// the same pack, listed by two index objects). Copies of a blob in
    /// different packs are all kept.
    pub fn finish_loading(&mut self) {
        self.loaded
            .sort_unstable_by_key(|e| (e.id, e.location.pack, e.location.offset));
        self.loaded
            .dedup_by(|a, b| a.id == b.id && a.location.pack == b.location.pack);
        self.loaded.shrink_to_fit();
    }

    /// Forget every entry loaded from index objects (the pack table and
    /// this process's own entries stay): before loading them all again.
    pub fn clear_loaded(&mut self) {
        self.loaded = Vec::new();
    }

    /// Mark packs that a prune plans to delete (see the module's docs).
    pub fn set_planned(&mut self, packs: impl IntoIterator<Item = ObjectId>) {
        for pack in packs {
            let n = self.pack_number(pack);
            self.planned.insert(n);
        }
    }

    /// The loaded copies of a blob, in pack order.
    fn loaded_copies(&self, id: &ChunkId) -> &[IndexEntry] {
        let start = self.loaded.partition_point(|e| e.id < *id);
        let len = self.loaded[start..]
            .iter()
            .take_while(|e| e.id == *id)
            .count();
        &self.loaded[start..start + len]
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
        let copies = self.loaded_copies(id);
        copies
            .iter()
            .find(|e| !self.planned.contains(&e.location.pack))
            .or(copies.first())
            .map(|e| e.location)
    }

    /// Where a blob is in a pack that is not planned for deletion: what
    /// dedup may build on.
    pub fn get_kept(&self, id: &ChunkId) -> Option<Location> {
        if let Some(loc) = self.added.get(id) {
            return Some(*loc);
        }
        self.loaded_copies(id)
            .iter()
            .find(|e| !self.planned.contains(&e.location.pack))
            .map(|e| e.location)
    }

    /// Every copy of a token in a pack not planned for deletion, first
    /// copy first.
    pub fn find(&self, token: &Token) -> Vec<ChunkId> {
        let start = self.loaded.partition_point(|e| e.id.token < *token);
        let mut ids: Vec<ChunkId> = self.loaded[start..]
            .iter()
            .take_while(|e| e.id.token == *token)
            .filter(|e| !self.planned.contains(&e.location.pack))
            .map(|e| e.id)
            .collect();
        ids.dedup();
        let low = ChunkId {
            token: *token,
            variant: 0,
        };
        let high = ChunkId {
            token: *token,
            variant: u64::MAX,
        };
        for (id, _) in self.added.range(low..=high) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids.sort_unstable();
        ids
    }

    /// Drop every entry whose pack `keep` refuses (by pack number);
    /// returns the ids dropped that have no other copy left.
    pub fn retain_packs(&mut self, keep: impl Fn(u32) -> bool) -> Vec<ChunkId> {
        let mut dropped = Vec::new();
        self.loaded.retain(|e| {
            let kept = keep(e.location.pack);
            if !kept {
                dropped.push(e.id);
            }
            kept
        });
        self.added.retain(|id, location| {
            let kept = keep(location.pack);
            if !kept {
                dropped.push(*id);
            }
            kept
        });
        dropped.sort_unstable();
        dropped.dedup();
        dropped.retain(|id| self.get(id).is_none());
        dropped
    }

    /// Every blob once, in id order, with every place it is stored
    /// (loaded copies and this process's own, merged; no allocation per
    /// blob).
    pub fn for_each_blob(&self, mut f: impl FnMut(ChunkId, &[Location])) {
        let mut added = self.added.iter().peekable();
        let mut places: Vec<Location> = Vec::new();
        let mut i = 0;
        loop {
            let next_loaded = self.loaded.get(i).map(|e| e.id);
            let next_added = added.peek().map(|(id, _)| **id);
            let id = match (next_loaded, next_added) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
            };
            places.clear();
            if next_added == Some(id) {
                if let Some((_, loc)) = added.next() {
                    places.push(*loc);
                }
            }
            while let Some(e) = self.loaded.get(i).filter(|e| e.id == id) {
                places.push(e.location);
                i += 1;
            }
            f(id, &places);
        }
    }

    /// Every entry, loaded ones first.
    pub fn entries(&self) -> impl Iterator<Item = IndexEntry> + '_ {
        self.loaded
            .iter()
            .copied()
            .chain(self.added.iter().map(|(id, location)| IndexEntry {
                id: *id,
                location: *location,
            }))
    }

    /// Every pack number any blob is in, with the blobs it holds.
    pub fn blobs_by_pack(&self) -> HashMap<u32, Vec<IndexEntry>> {
        let mut packs: HashMap<u32, Vec<IndexEntry>> = HashMap::new();
        for e in &self.loaded {
            packs.entry(e.location.pack).or_default().push(*e);
        }
        for (id, location) in &self.added {
            packs.entry(location.pack).or_default().push(IndexEntry {
                id: *id,
                location: *location,
            });
        }
        packs
    }

    /// Number of entries (a blob stored in two packs counts twice).
    pub fn len(&self) -> usize {
        self.loaded.len() + self.added.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory held by the loaded entries and the pack table.
    pub fn memory_bytes(&self) -> usize {
        self.loaded.capacity() * std::mem::size_of::<IndexEntry>()
            + self.packs.capacity() * std::mem::size_of::<ObjectId>()
            + self.pack_numbers.capacity() * (std::mem::size_of::<(ObjectId, u32)>() + 1)
    }

    /// The chunks added by this process, grouped for an index object.
    pub fn added_entries(&self) -> Vec<IndexEntry> {
        self.added
            .iter()
            .map(|(id, location)| IndexEntry {
                id: *id,
                location: *location,
            })
            .collect()
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
        index.for_each_blob(|id, places| {
            let mut packs: Vec<ObjectId> = places
                .iter()
                .filter_map(|l| index.pack_id(l.pack))
                .collect();
            packs.sort();
            seen.push((id.token.0[0], packs));
        });
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
