//! Step 6 of a prune: carry out a plan, once no run that may have missed
//! it is alive.
//!
//! Before anything goes, a planned pack is kept if
//!
//! - an index object the plan does not delete lists it (a pack that no
//!   index object listed when the plan was made, whose writer listed it
//!   since; or one an interrupted earlier attempt kept), or
//! - a generation needs a blob whose every copy is in a planned pack (a
//!   generation committed after the walk that made the plan).
//!
//! A pack kept for the second reason gets an index object of its own
//! first. Then the plan's index objects are deleted, then its packs (so
//! that a reader that finds a pack gone and loads the index again finds
//! the blobs' new places), then the plan. Every step can be repeated: a
//! prune stopped half-way is finished by the next.

use std::collections::{HashMap, HashSet};

use crate::error::RepoResult;
use crate::index::{self, IndexEntry};
use crate::pack;
use crate::Repository;

use super::plan::Plan;
use super::referenced::Referenced;
use super::{PruneReport, PruneStep};

impl Repository {
    /// Carry out plan `id`; `refs` must hold every generation committed
    /// until now. `carried_over`: the plan is an earlier prune's, which
    /// may have carried out part of it already.
    pub(super) fn finish_plan(
        &self,
        id: &str,
        plan: &Plan,
        carried_over: bool,
        refs: &Referenced,
        report: &mut PruneReport,
        progress: &mut dyn FnMut(PruneStep, u64, u64),
    ) -> RepoResult<()> {
        self.load_index()?;
        let pack_ids = plan.pack_ids();
        let planned: HashSet<u32> = {
            let mut index = self.catalog.write();
            pack_ids.iter().map(|p| index.pack_number(*p)).collect()
        };
        // Kept: listed by an index object that stays.
        let deleted_objects: HashSet<&str> = plan.index.iter().map(String::as_str).collect();
        let mut kept: HashSet<u32> = self
            .catalog
            .object_packs()
            .into_iter()
            .filter(|(name, _)| !deleted_objects.contains(name.as_str()))
            .flat_map(|(_, packs)| packs)
            .filter(|n| planned.contains(n))
            .collect();
        // Kept: the only place of a blob a generation needs.
        let mut needed: HashSet<u32> = HashSet::new();
        self.catalog.read().for_each_blob(|id, places| {
            let stays = |n: &u32| !planned.contains(n) || kept.contains(n);
            if refs.blobs.contains(&id) && !places.iter().any(|l| stays(&l.pack)) {
                if let Some(first) = places.first() {
                    needed.insert(first.pack);
                }
            }
        })?;
        if !needed.is_empty() {
            self.index_packs_again(&needed)?;
            kept.extend(&needed);
        }
        report.packs_kept_for_new_generations += kept.len() as u64;
        // Index objects, then packs, then the plan.
        let going: Vec<(u32, String)> = {
            let index = self.catalog.read();
            planned
                .iter()
                .filter(|n| !kept.contains(n))
                .filter_map(|n| Some((*n, pack::key(&index.pack_id(*n)?))))
                .collect()
        };
        let listed_bytes = self.pack_bytes(going.iter().map(|(n, _)| *n))?;
        // What is still there to delete, for the report: an earlier run
        // of a carried-over plan, stopped half-way, may have deleted some
        // already (and the index objects that listed a pack's blobs go
        // first). A plan just made names what was listed a moment ago: no
        // listing of the whole store again, unless it names packs no index
        // object lists (left by a run that ended abruptly), which have
        // only the size the store gives them.
        let unlisted = going.iter().any(|(n, _)| !listed_bytes.contains_key(n));
        let stored: Option<HashMap<String, u64>> = match carried_over || unlisted {
            true => Some(
                self.storage()
                    .list_stamped("packs/", true)?
                    .into_iter()
                    .map(|(key, stamp)| (key, stamp.size))
                    .collect(),
            ),
            false => None,
        };
        let index_there: Option<HashSet<String>> = match carried_over {
            true => Some(self.storage().list("index/")?.into_iter().collect()),
            false => None,
        };
        let (mut packs_deleted, mut bytes) = (0, 0);
        for (n, key) in &going {
            let size = stored.as_ref().and_then(|packs| packs.get(key).copied());
            if carried_over && size.is_none() {
                continue;
            }
            packs_deleted += 1;
            // The bytes of its blobs, as a pretend prune counts them; the
            // file's size if no index object lists them any more.
            bytes += listed_bytes.get(n).copied().or(size).unwrap_or(0);
        }
        let index_deleted = match &index_there {
            Some(index) => plan
                .index
                .iter()
                .filter(|name| index.contains(&format!("index/{name}")))
                .count() as u64,
            None => plan.index.len() as u64,
        };
        let total = (plan.index.len() + going.len()) as u64;
        let mut done = 0;
        for name in &plan.index {
            // Deleting many objects takes a while on a remote store.
            self.refresh_locks()?;
            progress(PruneStep::Delete, done, total);
            self.storage().delete(&format!("index/{name}"))?;
            done += 1;
        }
        for (_, key) in &going {
            self.refresh_locks()?;
            progress(PruneStep::Delete, done, total);
            self.storage().delete(key)?;
            done += 1;
        }
        progress(PruneStep::Delete, total, total);
        crate::done::note(format!(
            "a prune's plan was carried out ({packs_deleted} packs deleted): only the plan was \
             left to remove, which the next prune does"
        ));
        self.remove_plan(id)?;
        crate::done::clear();
        // What this process loaded lists the index objects and packs just
        // deleted; a prune that goes on (after finishing an earlier plan)
        // must see the repository as it is now, or it would, say, merge
        // the deleted index objects' entries into a new one.
        self.reload_index()?;
        report.index_objects_deleted += index_deleted;
        report.packs_deleted += packs_deleted;
        report.bytes_freed += bytes;
        Ok(())
    }

    /// Write index objects listing the blobs of `packs` (kept after all).
    fn index_packs_again(&self, packs: &HashSet<u32>) -> RepoResult<()> {
        let index = self.catalog.read();
        let mut entries: Vec<IndexEntry> = Vec::new();
        for e in index.entries() {
            let e = e?;
            if packs.contains(&e.location.pack) {
                entries.push(e);
            }
        }
        for group in entries.chunks(index::MAX_ENTRIES_PER_OBJECT) {
            let name = crate::ids::ObjectId::random().to_hex();
            self.write_object(&format!("index/{name}"), index::encode(&index, group))?;
            self.catalog
                .mark_known(name, super::rewrite::packs_of(group));
        }
        Ok(())
    }

    /// Bytes of the blobs the index lists in `packs`.
    fn pack_bytes(&self, packs: impl Iterator<Item = u32>) -> RepoResult<HashMap<u32, u64>> {
        let packs: HashSet<u32> = packs.collect();
        let mut bytes = HashMap::new();
        for e in self.catalog.read().entries() {
            let e = e?;
            if packs.contains(&e.location.pack) {
                *bytes.entry(e.location.pack).or_insert(0) += u64::from(e.location.length);
            }
        }
        Ok(bytes)
    }
}
