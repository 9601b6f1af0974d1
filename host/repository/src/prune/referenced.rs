//! What the generations refer to: every tree and chunk reachable from
//! the root tree of any generation of any client, checkpoints included.
//!
//! The walk reads each tree once, however many generations share it, so
//! walking a new generation after the others costs only the directories
//! it changed. A tree that cannot be found in the index (lost with its
//! pack) is counted and skipped: what only it refers to can no longer be
//! restored anyway. Any other failure to read a generation or a tree ends
//! the prune before it deletes anything: what it refers to is unknown.

use std::collections::HashSet;

use crate::error::{RepoError, RepoResult};
use crate::generation::Generation;
use crate::ids::{ChunkId, ObjectId};
use crate::Repository;

use super::PruneStep;

/// A set of blob ids kept in 8 bytes each (8 bytes of the token, the
/// variant folded in), in a sorted list: 8 to 16 bytes a blob, where a
/// hash set of 16-byte keys took 20 to 40 and twice that while it grew
/// (at 400 million blobs, 3-6 GB instead of 8-16). Two blobs whose keys
/// are equal (about one pair in 3 * 10^7 among a million blobs) are
/// taken for one: both count as used, which keeps a blob a prune could
/// have removed, never the other way round.
///
/// Trees are kept apart, in a hash set: a walk asks of each whether it
/// was seen (each is walked once), and there is one a folder, not one a
/// chunk. Chunks are appended, and the list sorted and its repeats
/// dropped whenever the unsorted part is as long as the sorted one, and
/// before it is asked anything ([`settle`](Self::settle)).
#[derive(Default)]
pub struct Used {
    /// Chunk keys: sorted and once each up to `settled`, as added after.
    chunks: Vec<u64>,
    settled: usize,
    /// Where the settled keys of each bucket begin: a lookup searches a
    /// few keys, not the whole list (a prune asks of every blob of the
    /// index; a plain binary search of a million keys made it 7 % slower).
    starts: Option<Buckets>,
    trees: HashSet<u64>,
}

/// The bits of a key that choose its bucket (see [`Buckets`]): 256 KiB
/// of starts.
const BUCKET_BITS: u32 = 16;

/// Where the keys of each value of a sorted list's top [`BUCKET_BITS`]
/// bits begin (and, last, the end): keys are spread evenly (they are
/// hashes), so each bucket holds a few.
pub(crate) struct Buckets(Vec<u32>);

impl Buckets {
    /// The buckets of `sorted`, ordered by `key`; none for a list too long
    /// to be numbered in 32 bits.
    pub(crate) fn of<T>(sorted: &[T], key: impl Fn(&T) -> u64) -> Option<Self> {
        u32::try_from(sorted.len()).ok()?;
        // Each bucket's start: the first key at or over its value.
        let mut at = 0;
        let mut starts: Vec<u32> = (0..1u64 << BUCKET_BITS)
            .map(|bucket| {
                while sorted
                    .get(at)
                    .is_some_and(|t| key(t) >> (64 - BUCKET_BITS) < bucket)
                {
                    at += 1;
                }
                at as u32
            })
            .collect();
        starts.push(sorted.len() as u32);
        Some(Buckets(starts))
    }

    /// The part of the list where `key` would be.
    pub(crate) fn range(&self, key: u64) -> std::ops::Range<usize> {
        let bucket = (key >> (64 - BUCKET_BITS)) as usize;
        self.0[bucket] as usize..self.0[bucket + 1] as usize
    }
}

impl Used {
    /// The 8-byte key a blob is kept by.
    pub(crate) fn key(id: &ChunkId) -> u64 {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&id.token.0[..8]);
        u64::from_le_bytes(prefix) ^ id.variant.rotate_left(32)
    }

    /// Add a chunk.
    pub fn insert(&mut self, id: &ChunkId) {
        self.push(Self::key(id));
    }

    fn push(&mut self, key: u64) {
        self.chunks.push(key);
        if self.chunks.len() >= 2 * self.settled.max(1 << 16) {
            self.settle();
        }
    }

    /// Add a tree; whether it was not there yet.
    pub fn insert_tree(&mut self, id: &ChunkId) -> bool {
        self.trees.insert(Self::key(id))
    }

    /// Sort the chunks added since the last time, and drop repeats.
    pub fn settle(&mut self) {
        if self.settled < self.chunks.len() {
            self.chunks.sort_unstable();
            self.chunks.dedup();
            self.settled = self.chunks.len();
            self.starts = None;
        }
        if self.starts.is_none() {
            self.starts = Buckets::of(&self.chunks, |&k| k);
        }
    }

    /// Whether a settled chunk has `key`.
    fn has_settled(&self, key: u64) -> bool {
        match &self.starts {
            Some(buckets) => self.chunks[buckets.range(key)].binary_search(&key).is_ok(),
            None => self.chunks[..self.settled].binary_search(&key).is_ok(),
        }
    }

    /// Whether a blob (chunk or tree) is in the set. Ask after
    /// [`settle`](Self::settle): chunks added since are looked for one by
    /// one.
    pub fn contains(&self, id: &ChunkId) -> bool {
        debug_assert_eq!(self.settled, self.chunks.len(), "asked before settling");
        let key = Self::key(id);
        self.trees.contains(&key)
            || self.has_settled(key)
            || self.chunks[self.settled..].contains(&key)
    }

    /// Add every blob of `other`.
    pub fn extend(&mut self, other: &Used) {
        for key in &other.chunks {
            self.push(*key);
        }
        self.trees.extend(other.trees.iter().copied());
    }

    /// The keys ([`key`](Self::key)) of the blobs in the set, trees
    /// included (chunks once each after [`settle`](Self::settle)).
    pub(crate) fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().chain(&self.trees).copied()
    }

    /// How many blobs are in the set (chunks counted once since the last
    /// [`settle`](Self::settle)).
    pub fn len(&self) -> usize {
        self.chunks.len() + self.trees.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.trees.is_empty()
    }
}

/// The blobs generations refer to, and the generations walked so far.
#[derive(Default)]
pub struct Referenced {
    /// Trees and chunks.
    pub blobs: Used,
    /// Generation objects walked (their storage keys).
    walked: HashSet<String>,
    /// Trees referred to that the index does not know.
    pub missing_trees: u64,
    /// Ids of generations to walk as if they were gone: what a pretend
    /// prune after a pretend forget must leave out (see
    /// [`PruneOptions::pretend_forgotten`](super::PruneOptions)).
    pub(super) forgotten: HashSet<String>,
}

impl Referenced {
    /// Number of generations walked.
    pub fn generations(&self) -> usize {
        self.walked.len()
    }
}

impl Repository {
    /// Walk every generation not walked yet (one listing of
    /// `generations/`); `progress` is told the generations done and the
    /// total.
    pub(crate) fn walk_new_generations(
        &self,
        refs: &mut Referenced,
        progress: &mut dyn FnMut(PruneStep, u64, u64),
    ) -> RepoResult<()> {
        // Read many at once (on a remote store, only those this machine
        // has not cached: see `record_cache.rs`); one forgotten since the
        // listing is skipped: nothing to keep for it.
        let (walked, forgotten) = (&refs.walked, &refs.forgotten);
        let id_of = |key: &str| key.rsplit('/').next().unwrap_or_default().to_string();
        let gens: Vec<(String, Generation)> =
            self.read_listed_records("generations/", true, &|key| {
                !walked.contains(key) && !forgotten.contains(&id_of(key))
            })?;
        // What a damaged record's generation refers to cannot be told
        // from unused data: pruning now would delete it.
        let damaged = self.damaged.under("generations/");
        if let Some((key, damage)) = damaged
            .iter()
            .find(|(key, _)| !forgotten.contains(&id_of(key)))
        {
            let id = id_of(key);
            let problem = &damage.problem;
            let remedy = match damage.repairable {
                true => format!(
                    "{}, or remove it with 'obnam forget {id}' (its data then goes with this \
                     prune)",
                    crate::damaged_records::REPAIR_ADVICE
                ),
                false => format!(
                    "remove the record with 'obnam forget {id}' (its data then goes with this \
                     prune) or put it back"
                ),
            };
            return Err(RepoError::Usage(format!(
                "prune: {problem}; what that generation refers to cannot be told from unused \
                 data, so nothing was deleted: {remedy}, and prune again"
            )));
        }
        let total = gens.len() as u64;
        // A generation is committed after the index objects of what it
        // refers to: once those written until now are loaded, every
        // generation just read is complete in the index.
        self.load_index()?;
        for (done, (key, gen)) in gens.into_iter().enumerate() {
            progress(PruneStep::Walk, done as u64, total);
            self.walk_tree(gen.root.0, refs).map_err(|e| {
                // It named the object only: every prune stopped there,
                // for every client, without a word of whose it is or
                // what to do.
                if !e.is_damaged_object() {
                    return e;
                }
                RepoError::Usage(format!(
                    "prune: {e}: a folder listing of client '{}', generation {} (and maybe of \
                     others) cannot be read, and what is below it cannot be told from unused \
                     data, so nothing was deleted; 'obnam fsck' names the folder and every \
                     generation that uses it: forget those (the next backup stores the folder \
                     again), and prune again",
                    crate::error::shown(&gen.client),
                    gen.id
                ))
            })?;
            refs.walked.insert(key);
        }
        refs.blobs.settle();
        progress(PruneStep::Walk, total, total);
        self.refuse_walk_with_unread_trees(refs)
    }

    /// Stop a prune whose walk met folder listings in no pack the index
    /// lists while the store holds packs no index object lists: they may
    /// be there (an index object lost: `repair-index` indexes them), and
    /// what they refer to, not walked, would count as unused. (A prune
    /// went on, deleting the packs of the files below such a folder, exit
    /// 0: a lost index object, which `repair-index` repairs, became files
    /// of kept generations lost for good.) A listing lost with its pack,
    /// with no such pack there, is skipped: what only it referred to
    /// cannot be restored anyway.
    fn refuse_walk_with_unread_trees(&self, refs: &Referenced) -> RepoResult<()> {
        if refs.missing_trees == 0 {
            return Ok(());
        }
        let stored = self.stored_packs()?;
        let unlisted = {
            let index = self.catalog.read();
            let listed: HashSet<ObjectId> = index
                .listed_packs()
                .into_iter()
                .filter_map(|n| index.pack_id(n))
                .collect();
            stored.iter().filter(|p| !listed.contains(p)).count()
        };
        if unlisted == 0 {
            return Ok(());
        }
        let count = |n: u64, one: &str, many: &str| match n {
            1 => format!("1 {one}"),
            n => format!("{n} {many}"),
        };
        Err(RepoError::Usage(format!(
            "prune: generations refer to {} in no pack the index lists, and {} no index \
             object lists are in the repository (was an index object lost?): what those \
             folders hold would count as unused, so nothing was deleted; run 'obnam \
             repair-index', which indexes those packs from their own lists, then prune again",
            count(refs.missing_trees, "folder listing", "folder listings"),
            count(unlisted as u64, "pack", "packs"),
        )))
    }

    /// Mark a tree and everything below it (call `refs.blobs.settle()`
    /// after the last).
    pub(crate) fn walk_tree(&self, root: ChunkId, refs: &mut Referenced) -> RepoResult<()> {
        if !refs.blobs.insert_tree(&root) {
            return Ok(());
        }
        // Each tree is pushed once (when first marked), so the walk ends
        // even on trees that contain themselves.
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            // A prune's walk of a large repository may take longer than a
            // lock stays fresh, and writes nothing that would refresh it:
            // a lock not refreshed would be broken as stale, and a second
            // prune could run beside this one. (Cheap unless one is due.)
            self.refresh_locks()?;
            let tree = match self.read_tree_once(&id) {
                Ok(tree) => tree,
                Err(RepoError::NoSuchChunk(..)) => {
                    tracing::warn!(
                        "tree/{id} is in no pack (lost?): what only it refers to is not kept"
                    );
                    refs.missing_trees += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for entry in &tree.entries {
                for c in &entry.chunks {
                    refs.blobs.insert(&c.0);
                }
                if let Some(sub) = entry.subtree {
                    if refs.blobs.insert_tree(&sub.0) {
                        stack.push(sub.0);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Token;

    fn id(n: u32, variant: u64) -> ChunkId {
        let mut token = [0u8; 32];
        token[..4].copy_from_slice(&n.to_le_bytes());
        // Spread over the buckets, as tokens are.
        token[4..8].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
        token[31] = 1;
        ChunkId {
            token: Token(token),
            variant,
        }
    }

    /// A walk adds the chunks of every file it reads, again and again for
    /// chunks many files share: the set holds each once, finds each, and
    /// finds no other.
    #[test]
    fn a_used_set_holds_each_blob_once_and_finds_only_those() {
        let mut used = Used::default();
        for round in 0..3u32 {
            for n in 0..100_000u32 {
                used.insert(&id(n * 2, u64::from(round % 2)));
            }
        }
        assert!(used.insert_tree(&id(1_000_001, 0)));
        assert!(
            !used.insert_tree(&id(1_000_001, 0)),
            "a tree is walked once"
        );
        used.settle();
        assert_eq!(used.len(), 200_001);
        assert!(
            used.chunks.capacity() <= 400_000,
            "{}",
            used.chunks.capacity()
        );
        for n in [0, 2, 77_776, 199_998] {
            assert!(used.contains(&id(n, 0)) && used.contains(&id(n, 1)), "{n}");
            assert!(!used.contains(&id(n + 1, 0)), "{}", n + 1);
            assert!(!used.contains(&id(n, 2)), "{n}, another variant");
        }
        assert!(used.contains(&id(1_000_001, 0)), "the tree");

        let mut all = Used::default();
        all.insert(&id(3, 0));
        all.extend(&used);
        all.settle();
        assert_eq!(all.len(), 200_002);
        assert!(all.contains(&id(3, 0)) && all.contains(&id(199_998, 1)));
        assert!(all.contains(&id(1_000_001, 0)));
    }
}
