//! Step 4 of a prune: copy the used blobs out of the packs to rewrite,
//! and write anew the index objects that list a pack that goes, without
//! those packs. Nothing is deleted here: what this writes only
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

/// Entries per index object a prune writes: small enough that encoding
/// one holds little memory beside the index.
pub(super) const ENTRIES_PER_OBJECT: usize = 1 << 18;

impl Repository {
    /// Copy the used blobs of `packs` (`used`, by pack number) into new
    /// packs, each checked against its id on the way; returns the bytes
    /// copied. The new packs and their index objects are written when
    /// this returns.
    pub(super) fn copy_used_blobs(
        &self,
        packs: &[PackUse],
        used: &HashMap<u32, Vec<IndexEntry>>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> RepoResult<u64> {
        let total = packs.len() as u64;
        let mut copied = 0;
        for (done, p) in packs.iter().enumerate() {
            progress(done as u64, total);
            let Some(entries) = used.get(&p.number) else {
                continue;
            };
            let key = pack::key(&p.id);
            let bytes = self
                .storage()
                .read_limited(&key, crate::limits::MAX_PACK_LEN)?;
            for e in entries {
                let context = blob_context(&e.id, e.location.kind);
                let start = e.location.offset as usize;
                let stored = start
                    .checked_add(e.location.length as usize)
                    .and_then(|end| bytes.get(start..end))
                    .ok_or_else(|| {
                        RepoError::corrupt(&key, format!("blob {} lies outside the pack", e.id))
                    })?;
                // Never carry damage into a new pack: a used blob that
                // does not match its id stops the prune (run fsck).
                let plain = self.codec.open_blob(&context, stored.to_vec())?;
                self.verify_blob(&context, &e.id, &plain)?;
                self.uploads
                    .put_stored(self, e.id, e.location.kind, stored)?;
                copied += u64::from(e.location.length);
            }
        }
        self.flush()?;
        progress(total, total);
        Ok(copied)
    }

    /// The index objects loaded that list a pack of `doomed`: those a
    /// prune replaces. The others stay as they are, so that the clients'
    /// index caches ([`crate::index_cache`]) keep them: a prune makes
    /// each client read again only the index objects it rewrote.
    ///
    /// Only index objects read into the index count: those this process
    /// wrote itself have no entries of their own there to write anew,
    /// so they stay (and any pack they list is kept, by the plan's last
    /// step).
    pub(super) fn index_objects_listing(&self, doomed: &HashSet<u32>) -> Vec<String> {
        let mut names: Vec<String> = self
            .catalog
            .read()
            .object_packs()
            .into_iter()
            .filter(|(_, packs)| packs.iter().any(|p| doomed.contains(p)))
            .map(|(name, _)| name)
            .collect();
        names.sort();
        names
    }

    /// Write index objects listing every entry of the index objects
    /// `replaced` whose pack is stored and not `doomed`.
    pub(super) fn write_index_of_kept_packs(
        &self,
        replaced: &[String],
        stored: &HashSet<ObjectId>,
        doomed: &HashSet<u32>,
    ) -> RepoResult<()> {
        let going: HashSet<u32> = {
            let index = self.catalog.read();
            index
                .listed_packs()
                .into_iter()
                .filter(|n| {
                    doomed.contains(n) || index.pack_id(*n).is_none_or(|id| !stored.contains(&id))
                })
                .collect()
        };
        let replaced: HashSet<String> = replaced.iter().cloned().collect();
        self.write_entries_of(&replaced, |n| !going.contains(&n))
    }

    /// Write index objects of [`ENTRIES_PER_OBJECT`] entries listing the
    /// entries of the loaded index objects `objects` that `keep` accepts
    /// (by pack number). Reads the index cache's segments in order.
    pub(super) fn write_entries_of(
        &self,
        objects: &HashSet<String>,
        keep: impl Fn(u32) -> bool,
    ) -> RepoResult<()> {
        let index = self.catalog.read();
        let mut group: Vec<IndexEntry> = Vec::with_capacity(ENTRIES_PER_OBJECT);
        let mut failed = None;
        let write = |group: &[IndexEntry]| -> RepoResult<()> {
            let name = ObjectId::random().to_hex();
            self.write_object(&format!("index/{name}"), index::encode(&index, group))?;
            self.catalog.mark_known(name, packs_of(group));
            Ok(())
        };
        index.for_each_entry_of(objects, |e| {
            if failed.is_some() || !keep(e.location.pack) {
                return;
            }
            group.push(e);
            if group.len() == ENTRIES_PER_OBJECT {
                if let Err(e) = write(&group) {
                    failed = Some(e);
                }
                group.clear();
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !group.is_empty() {
            write(&group)?;
        }
        Ok(())
    }
}
