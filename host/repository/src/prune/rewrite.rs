//! Step 4 of a prune: copy the used blobs out of the packs to rewrite,
//! and index anew the packs that stay of the index objects that list a
//! pack that goes. Nothing is deleted here: what this writes only
//! duplicates what is there.

use std::collections::{HashMap, HashSet};

use crate::blobs::blob_context;
use crate::error::{RepoError, RepoResult};
use crate::ids::ObjectId;
use crate::index::{self, IndexEntry};
use crate::pack;
use crate::Repository;

use super::verdict::PackUse;

/// The pack numbers `entries` are in, each once.
pub(crate) fn packs_of(entries: &[IndexEntry]) -> Vec<u32> {
    let mut packs: Vec<u32> = entries.iter().map(|e| e.location.pack).collect();
    packs.sort_unstable();
    packs.dedup();
    packs
}

/// What a process has written: index object names and pack ids.
pub(super) struct OwnWrites {
    index: HashSet<String>,
    packs: HashSet<ObjectId>,
}

/// Entries per index object a prune writes.
pub(super) const ENTRIES_PER_OBJECT: usize = index::ENTRIES_PER_MERGED_OBJECT;

impl Repository {
    /// Copy the used blobs of `packs` (`used`, by pack number) into new
    /// packs, each checked against its id on the way. Returns the bytes
    /// copied and the numbers of the packs left as they are: those that
    /// hold a used blob that is damaged. The new packs and their index
    /// objects are written when this returns.
    ///
    /// Damage is never carried into a new pack, and a pack holding a
    /// damaged blob that generations use is not deleted either: it is
    /// kept whole, with a warning, and the prune goes on with the rest.
    /// (Stopping there would stop every later prune too, and the
    /// repository could never shrink again.) A store that fails stops
    /// the prune, as everywhere.
    pub(super) fn copy_used_blobs(
        &self,
        packs: &[PackUse],
        used: &HashMap<u32, Vec<IndexEntry>>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> RepoResult<(u64, HashSet<u32>)> {
        let total = packs.len() as u64;
        let mut copied = 0;
        let mut kept = HashSet::new();
        for (done, p) in packs.iter().enumerate() {
            progress(done as u64, total);
            let Some(entries) = used.get(&p.number) else {
                continue;
            };
            let key = pack::key(&p.id);
            let bytes = self
                .storage()
                .read_limited(&key, crate::limits::MAX_PACK_LEN)?;
            // Every used blob is checked before any is copied, so that a
            // pack that stays leaves no copy of part of itself behind.
            let mut checked = Vec::with_capacity(entries.len());
            let mut damage = None;
            for e in entries {
                match self.checked_blob(&key, &bytes, e) {
                    Ok(stored) => checked.push((e, stored)),
                    Err(error) if error.is_damaged_object() => {
                        damage = Some(error);
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
            if let Some(error) = damage {
                tracing::warn!(
                    "{key} is kept as it is, not rewritten: a blob that generations use in it \
                     is damaged ({error}); 'obnam fsck --verify-data' names the files that use it"
                );
                kept.insert(p.number);
                continue;
            }
            for (e, stored) in checked {
                self.uploads
                    .put_stored(self, e.id, e.location.kind, stored)?;
                copied += u64::from(e.location.length);
            }
        }
        self.flush()?;
        progress(total, total);
        Ok((copied, kept))
    }

    /// The index objects and packs this process has written so far.
    pub(super) fn own_writes(&self) -> OwnWrites {
        let index = self.catalog.read();
        OwnWrites {
            // Those reported failed too: the store may have written one
            // and lost its answer, and left, it would list the packs that
            // `remove_own_writes` deletes (a restore then found the blobs
            // listed there first, and failed for a pack that no longer
            // was; the torture harness, seed 1796600031072662959).
            index: self.uploads.attempted_index_names(),
            packs: index
                .added_packs()
                .into_iter()
                .filter_map(|n| index.pack_id(n))
                .collect(),
        }
    }

    /// Delete what this prune wrote since `before` (step 4: its copies
    /// and the index objects of the packs that stay), when writing
    /// failed; best effort: its index objects, then its packs. Nothing
    /// refers to them: the blobs are still where they were, and the index
    /// objects that list those packs stay. Left, they took the room a
    /// full disk was given back for the prune, and the next prune failed
    /// the same way (it writes its copies before it deletes anything).
    /// What it wrote before, finishing an earlier plan, stays: the index
    /// objects of kept packs are their only listing once that plan's
    /// index objects are deleted.
    pub(super) fn remove_own_writes(&self, before: &OwnWrites) {
        let now = self.own_writes();
        let index: Vec<String> = now
            .index
            .difference(&before.index)
            .map(|name| format!("index/{name}"))
            .collect();
        let mut removed = 0;
        let mut listed_still = false;
        for key in index {
            match self.storage().delete(&key) {
                Ok(()) => removed += 1,
                Err(_) => listed_still = true,
            }
        }
        // A pack an index object still lists stays: gone, it would be a
        // missing pack to fsck. Unlisted, the next prune deletes it.
        if !listed_still {
            for key in now.packs.difference(&before.packs).map(pack::key) {
                if self.storage().delete(&key).is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::warn!(
                "prune: removed the {removed} objects it had written (copies of what is still \
                 where it was), to give their room back"
            );
        }
    }

    /// The stored bytes of blob `e` in `bytes`, the pack `key`, once they
    /// decode to what its id says.
    pub(crate) fn checked_blob<'a>(
        &self,
        key: &str,
        bytes: &'a [u8],
        e: &IndexEntry,
    ) -> RepoResult<&'a [u8]> {
        let context = blob_context(&e.id, e.location.kind);
        let start = e.location.offset as usize;
        let stored = start
            .checked_add(e.location.length as usize)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| {
                RepoError::corrupt(key, format!("blob {} lies outside the pack", e.id))
            })?;
        self.codec
            .open_blob_borrowed_checked(&context, stored, |plain| {
                self.verify_blob(&context, &e.id, plain)
            })?;
        Ok(stored)
    }

    /// The index objects a prune replaces: those that list a pack that
    /// goes (`doomed`) or that is no longer stored; and the packs they
    /// list that stay, to be listed anew ([`Self::write_index_of_packs`]).
    /// Every other index object stays as it is: a prune that deletes a
    /// few packs rewrites the few index objects that list them, not the
    /// whole index (which for 100 TB is some 20 GB of index objects).
    pub(crate) fn index_objects_to_replace(
        &self,
        stored: &HashSet<ObjectId>,
        doomed: &HashSet<u32>,
    ) -> (Vec<String>, HashSet<u32>) {
        // Taken before the index is locked below: this locks it too.
        let objects = self.catalog.object_packs();
        let index = self.catalog.read();
        let goes =
            |n: u32| doomed.contains(&n) || index.pack_id(n).is_none_or(|id| !stored.contains(&id));
        let mut replaced = Vec::new();
        let mut relist = HashSet::new();
        for (name, packs) in objects {
            if packs.iter().any(|n| goes(*n)) {
                relist.extend(packs.into_iter().filter(|n| !goes(*n)));
                replaced.push(name);
            }
        }
        replaced.sort();
        (replaced, relist)
    }

    /// Write index objects listing every blob of `packs` (each blob as
    /// often as the index holds it: a duplicate entry is harmless).
    pub(crate) fn write_index_of_packs(&self, packs: &HashSet<u32>) -> RepoResult<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let index = self.catalog.read();
        let mut group: Vec<IndexEntry> = Vec::with_capacity(ENTRIES_PER_OBJECT);
        let mut entries = index.entries();
        loop {
            group.clear();
            for e in entries.by_ref() {
                let e = e?;
                if packs.contains(&e.location.pack) {
                    group.push(e);
                    if group.len() == ENTRIES_PER_OBJECT {
                        break;
                    }
                }
            }
            if group.is_empty() {
                return Ok(());
            }
            let name = ObjectId::random().to_hex();
            self.write_object(&format!("index/{name}"), index::encode(&index, &group))?;
            self.catalog.mark_known(name, packs_of(&group));
        }
    }
}
