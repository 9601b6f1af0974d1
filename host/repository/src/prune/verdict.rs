//! Which packs a prune deletes and which it rewrites: a pure function of
//! the index, the blobs referred to and the packs stored.
//!
//! Each referred-to blob needs one copy, and when it has several (in
//! stored packs) the prune keeps the one in the pack most worth keeping:
//! the pack whose bytes are most of them referred-to blobs, counting
//! every copy (ties go to the lower pack id). The others are as unused as
//! blobs nothing refers to. A prune stopped after it copied blobs out of
//! the packs it rewrites, before its plan, leaves those copies in packs
//! with nothing but used blobs: the next prune keeps those copies and
//! deletes the old packs without copying again. (Keeping the first copy
//! in pack-id order, as it once did, kept the old ones about half of the
//! time: each stopped prune then added a copy, and a prune stopped every
//! time, by a time limit say, grew the repository every time.) A pack with no used byte is deleted; one whose unused
//! share of bytes is over the threshold is rewritten (its used blobs
//! copied into new packs, then it is deleted). Packs the storage holds
//! that no index object lists are deleted too (left by a run that
//! stopped before it wrote their index object; the plan's later steps
//! keep any that turns out listed after all).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ids::ObjectId;
use crate::index::{Index, IndexEntry, Location};
use crate::segment::SegmentError;

use super::referenced::Used;

/// How much of one pack is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackUse {
    pub id: ObjectId,
    pub number: u32,
    /// Bytes of blobs the index lists in it.
    pub bytes: u64,
    /// Bytes of those that are used.
    pub used: u64,
    pub blobs: u64,
    pub used_blobs: u64,
}

impl PackUse {
    /// Bytes not used.
    pub fn unused(&self) -> u64 {
        self.bytes - self.used
    }
}

/// What a prune will do with the packs.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Packs with nothing used in them.
    pub delete: Vec<PackUse>,
    /// Packs used in part, over the threshold.
    pub rewrite: Vec<PackUse>,
    /// Packs stored that no index object lists.
    pub unlisted: Vec<ObjectId>,
    /// Referred-to blobs that are in no stored pack.
    pub missing_blobs: u64,
}

impl Verdicts {
    /// Whether the prune has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.rewrite.is_empty() && self.unlisted.is_empty()
    }

    /// The numbers of the packs that go (deleted or rewritten).
    pub fn doomed(&self) -> HashSet<u32> {
        self.delete
            .iter()
            .chain(&self.rewrite)
            .map(|p| p.number)
            .collect()
    }
}

/// How much of each stored pack (by pack number) referred-to blobs take,
/// counting every copy: which copy of a blob to keep is chosen by it.
#[derive(Default)]
struct Worth {
    /// (bytes of referred-to blobs, bytes of all blobs) by pack number.
    packs: HashMap<u32, (u64, u64)>,
}

impl Worth {
    fn of(
        index: &Index,
        referenced: &Used,
        stored: &HashSet<ObjectId>,
    ) -> Result<Worth, SegmentError> {
        let mut packs: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut stored_number: HashMap<u32, bool> = HashMap::new();
        index.for_each_blob(|id, places| {
            let used = referenced.contains(&id);
            for l in places {
                let is_stored = *stored_number.entry(l.pack).or_insert_with(|| {
                    index
                        .pack_id(l.pack)
                        .is_some_and(|pack| stored.contains(&pack))
                });
                if !is_stored {
                    continue;
                }
                let p = packs.entry(l.pack).or_default();
                p.1 += u64::from(l.length);
                if used {
                    p.0 += u64::from(l.length);
                }
            }
        })?;
        Ok(Worth { packs })
    }

    /// Whether pack `a` is more worth keeping than pack `b`: a larger
    /// share of its bytes is referred to.
    fn better(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let share = |n: u32| self.packs.get(&n).copied().unwrap_or((0, 1));
        let ((used_a, all_a), (used_b, all_b)) = (share(a), share(b));
        // used_a / all_a against used_b / all_b, without division.
        (u128::from(used_a) * u128::from(all_b.max(1)))
            .cmp(&(u128::from(used_b) * u128::from(all_a.max(1))))
    }
}

/// The copy of a blob that a prune keeps, of `places`: the one in the
/// stored pack most worth keeping (see [`Worth`]), the lower pack id of
/// two as worth it.
fn the_copy(
    index: &Index,
    places: &[Location],
    stored: &HashSet<ObjectId>,
    worth: &Worth,
) -> Option<Location> {
    places
        .iter()
        .filter_map(|l| Some((index.pack_id(l.pack)?, *l)))
        .filter(|(pack, _)| stored.contains(pack))
        .min_by(|(pack_a, a), (pack_b, b)| {
            worth
                .better(b.pack, a.pack)
                .then_with(|| (pack_a, a.offset).cmp(&(pack_b, b.offset)))
        })
        .map(|(_, l)| l)
}

/// How much of each stored pack the index lists is used, by pack id, and
/// how many of the `referenced` blobs have a copy in a stored pack.
pub fn pack_uses(
    index: &Index,
    referenced: &Used,
    stored: &HashSet<ObjectId>,
) -> Result<(BTreeMap<ObjectId, PackUse>, u64), SegmentError> {
    let worth = Worth::of(index, referenced, stored)?;
    let mut packs: BTreeMap<ObjectId, PackUse> = BTreeMap::new();
    let mut found = 0;
    index.for_each_blob(|id, places| {
        for l in places {
            let Some(pack) = index.pack_id(l.pack).filter(|p| stored.contains(p)) else {
                continue;
            };
            let p = packs.entry(pack).or_insert_with(|| PackUse {
                id: pack,
                number: l.pack,
                bytes: 0,
                used: 0,
                blobs: 0,
                used_blobs: 0,
            });
            p.bytes += u64::from(l.length);
            p.blobs += 1;
        }
        if !referenced.contains(&id) {
            return;
        }
        if let Some(l) = the_copy(index, places, stored, &worth) {
            found += 1;
            let pack = index.pack_id(l.pack).unwrap_or(ObjectId([0; 16]));
            if let Some(p) = packs.get_mut(&pack) {
                p.used += u64::from(l.length);
                p.used_blobs += 1;
            }
        }
    })?;
    Ok((packs, found))
}

/// The stored length of a copy of a blob, of `places`, if a stored pack
/// holds one: the first in pack-id order. (Which copy a prune keeps
/// depends on every other blob; for a size, any copy will do: a prune
/// copies a blob as it is stored.)
pub fn used_length(index: &Index, places: &[Location], stored: &HashSet<ObjectId>) -> Option<u32> {
    places
        .iter()
        .filter_map(|l| Some((index.pack_id(l.pack)?, *l)))
        .filter(|(pack, _)| stored.contains(pack))
        .min_by_key(|(pack, l)| (*pack, l.offset))
        .map(|(_, l)| l.length)
}

/// Decide, for a `threshold` in percent of unused bytes (0: rewrite a
/// pack with any unused byte; 100: never rewrite).
pub fn decide(
    index: &Index,
    referenced: &Used,
    stored: &HashSet<ObjectId>,
    threshold: u8,
) -> Result<Verdicts, SegmentError> {
    let (packs, found) = pack_uses(index, referenced, stored)?;
    let listed: HashSet<ObjectId> = packs.keys().copied().collect();
    let mut verdicts = Verdicts {
        missing_blobs: (referenced.len() as u64).saturating_sub(found),
        unlisted: stored.difference(&listed).copied().collect(),
        ..Verdicts::default()
    };
    verdicts.unlisted.sort();
    for p in packs.into_values() {
        if p.used == 0 {
            verdicts.delete.push(p);
        } else if p.unused() > 0
            && u128::from(p.unused()) * 100 > u128::from(threshold) * u128::from(p.bytes)
        {
            verdicts.rewrite.push(p);
        }
    }
    Ok(verdicts)
}

/// The used blobs of the packs to rewrite, by pack number: the copies
/// [`decide`] counted as used.
pub fn used_entries(
    index: &Index,
    referenced: &Used,
    stored: &HashSet<ObjectId>,
    rewrite: &[PackUse],
) -> Result<HashMap<u32, Vec<IndexEntry>>, SegmentError> {
    let worth = Worth::of(index, referenced, stored)?;
    let wanted: HashSet<u32> = rewrite.iter().map(|p| p.number).collect();
    let mut out: HashMap<u32, Vec<IndexEntry>> = HashMap::new();
    index.for_each_blob(|id, places| {
        if !places.iter().any(|l| wanted.contains(&l.pack)) || !referenced.contains(&id) {
            return;
        }
        if let Some(location) = the_copy(index, places, stored, &worth) {
            if wanted.contains(&location.pack) {
                out.entry(location.pack)
                    .or_default()
                    .push(IndexEntry { id, location });
            }
        }
    })?;
    for entries in out.values_mut() {
        entries.sort_by_key(|e| e.location.offset);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChunkId, Token};
    use crate::index::{BlobKind, Location};

    fn id(n: u8) -> ChunkId {
        ChunkId {
            token: Token([n; 32]),
            variant: 0,
        }
    }

    /// An index of packs, each a list of (blob, length), as loaded from
    /// index objects (where a blob may be listed in two packs).
    fn index_of(packs: &[(ObjectId, &[(u8, u32)])]) -> Index {
        let mut index = Index::default();
        let mut entries = Vec::new();
        for (pack, blobs) in packs {
            let number = index.pack_number(*pack);
            let mut offset = 8;
            for (n, len) in *blobs {
                entries.push(IndexEntry {
                    id: id(*n),
                    location: Location {
                        pack: number,
                        offset,
                        length: *len,
                        kind: BlobKind::Data,
                    },
                });
                offset += len;
            }
        }
        index.extend_loaded(entries);
        index.finish_loading();
        index
    }

    fn used(ids: &[u8]) -> Used {
        let mut set = Used::default();
        for n in ids {
            set.insert(&id(*n));
        }
        set.settle();
        set
    }

    fn pack(n: u8) -> ObjectId {
        ObjectId([n; 16])
    }

    #[test]
    fn unused_packs_go_and_half_used_ones_are_rewritten_over_the_threshold() {
        let index = index_of(&[
            (pack(1), &[(1, 100), (2, 100)]),
            (pack(2), &[(3, 100), (4, 100)]),
            (pack(3), &[(5, 100), (6, 300)]),
        ]);
        let stored: HashSet<ObjectId> = [pack(1), pack(2), pack(3), pack(9)].into();
        let referenced = used(&[1, 2, 3, 6]);
        let v = decide(&index, &referenced, &stored, 20).unwrap();
        assert!(v.delete.is_empty());
        // Pack 2: half unused (over 20 %); pack 3: a quarter (over 20 %).
        let rewrite: Vec<ObjectId> = v.rewrite.iter().map(|p| p.id).collect();
        assert_eq!(rewrite, vec![pack(2), pack(3)]);
        assert_eq!(v.unlisted, vec![pack(9)]);
        // At 30 % only pack 2 goes; at 100 % none.
        assert_eq!(
            decide(&index, &referenced, &stored, 30)
                .unwrap()
                .rewrite
                .len(),
            1
        );
        assert!(decide(&index, &referenced, &stored, 100)
            .unwrap()
            .rewrite
            .is_empty());
        // Nothing referenced: every pack goes, none is rewritten.
        let v = decide(&index, &Used::default(), &stored, 0).unwrap();
        assert_eq!(v.delete.len(), 3);
        assert!(v.rewrite.is_empty());
    }

    #[test]
    fn a_blob_in_two_packs_is_used_in_one() {
        // Blob 1 in pack 1, and a copy of it in pack 2 (left by an
        // earlier rewrite).
        let index = index_of(&[(pack(1), &[(1, 100)]), (pack(2), &[(2, 100), (1, 100)])]);
        let mut copies = 0;
        index
            .for_each_blob(|blob, places| {
                if blob == id(1) {
                    copies = places.len();
                }
            })
            .unwrap();
        assert_eq!(copies, 2);
        let stored: HashSet<ObjectId> = [pack(1), pack(2)].into();
        let referenced = used(&[1]);
        let v = decide(&index, &referenced, &stored, 20).unwrap();
        // Pack 1 holds the copy; pack 2 holds nothing used.
        let deleted: Vec<ObjectId> = v.delete.iter().map(|p| p.id).collect();
        assert_eq!(deleted, vec![pack(2)]);
        assert!(v.rewrite.is_empty());
        assert_eq!(v.missing_blobs, 0);
    }

    #[test]
    fn copies_left_by_a_stopped_prune_are_kept_and_the_old_pack_goes() {
        // Pack 1 holds blob 1 (used) and three unused blobs: over the
        // threshold, so a prune copies blob 1 out. Stopped before its
        // plan, it left that copy in a pack of its own. Whatever that
        // pack's id, the next prune keeps the copy and deletes pack 1
        // without copying it again.
        for copy in [pack(0), pack(0xf0)] {
            let index = index_of(&[
                (pack(1), &[(1, 100), (2, 100), (3, 100), (4, 100)]),
                (copy, &[(1, 100)]),
            ]);
            let stored: HashSet<ObjectId> = [pack(1), copy].into();
            let referenced = used(&[1]);
            let v = decide(&index, &referenced, &stored, 20).unwrap();
            let deleted: Vec<ObjectId> = v.delete.iter().map(|p| p.id).collect();
            assert_eq!(deleted, vec![pack(1)], "copy in {copy:?}");
            assert!(v.rewrite.is_empty(), "copy in {copy:?}");
            assert!(used_entries(&index, &referenced, &stored, &v.rewrite)
                .unwrap()
                .is_empty());
            let (uses, found) = pack_uses(&index, &referenced, &stored).unwrap();
            assert_eq!(found, 1);
            assert_eq!(uses[&copy].used, 100);
            assert_eq!(uses[&pack(1)].used, 0);
        }
    }

    #[test]
    fn of_two_packs_as_worth_keeping_the_lower_id_keeps_the_copy() {
        let index = index_of(&[(pack(2), &[(1, 100)]), (pack(1), &[(1, 100)])]);
        let stored: HashSet<ObjectId> = [pack(1), pack(2)].into();
        let v = decide(&index, &used(&[1]), &stored, 20).unwrap();
        let deleted: Vec<ObjectId> = v.delete.iter().map(|p| p.id).collect();
        assert_eq!(deleted, vec![pack(2)]);
    }

    #[test]
    fn referenced_blobs_in_no_stored_pack_are_counted() {
        let index = index_of(&[(pack(1), &[(1, 100)])]);
        let stored: HashSet<ObjectId> = HashSet::new();
        let referenced = used(&[1, 7]);
        let v = decide(&index, &referenced, &stored, 20).unwrap();
        assert_eq!(v.missing_blobs, 2);
        assert!(v.is_empty());
    }

    #[test]
    fn used_entries_are_the_copies_decide_counted() {
        let index = index_of(&[(pack(1), &[(1, 100), (2, 100)])]);
        let stored: HashSet<ObjectId> = [pack(1)].into();
        let referenced = used(&[2]);
        let v = decide(&index, &referenced, &stored, 20).unwrap();
        let used = used_entries(&index, &referenced, &stored, &v.rewrite).unwrap();
        let ids: Vec<ChunkId> = used.values().flatten().map(|e| e.id).collect();
        assert_eq!(ids, vec![id(2)]);
    }
}
