//! Indexing the packs no index object lists, from their own lists.
//!
//! Why: every pack ends with a list of its blobs (its trailer: id, kind,
//! offset, length; see [`crate::pack`]), but runs find blobs through the
//! index objects only. An index object lost (deleted by hand or by a sync
//! tool, a disk error, a damaged one removed) left every generation that
//! used its packs unrestorable ("chunk ... is not in the repository"),
//! although the packs, and so the data, were still there and said what
//! they hold; prune kept such packs, and nothing could use them again.
//!
//! [`Repository::index_unlisted_packs`] reads each pack the store holds
//! that no live index object lists, checks each blob of its list against
//! its id (decoded through the filters, as a read of it would be), and
//! writes an index object for the blobs that check. A blob that does not
//! check is left out, and said. A pack whose list cannot be read (it is
//! truncated, or was never finished) is said, and left as it is: prune
//! deletes it once nothing needs it.
//!
//! A backup writes its packs before the index objects that list them: run
//! under the exclusive lock, so that no pack of a live run is taken for a
//! lost one (indexing one twice would be harmless, but the run's own index
//! object would then list it again).

use std::collections::HashSet;

use crate::blobs::blob_context;
use crate::error::{RepoError, RepoResult};
use crate::ids::ObjectId;
use crate::index::{self, IndexEntry};
use crate::pack;
use crate::Repository;

/// What [`Repository::index_unlisted_packs`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// Packs the store holds that no index object listed.
    pub unlisted_packs: u64,
    /// Of those, the packs indexed from their own lists.
    pub packs_indexed: u64,
    /// The blobs indexed.
    pub blobs_indexed: u64,
    /// What could not be indexed: a pack whose list cannot be read, a
    /// blob that does not match its id.
    pub problems: Vec<String>,
    /// Damaged index objects removed: once every pack is indexed, whole,
    /// what they could list is listed by the objects written from the
    /// packs' own lists (they stopped prune, and fsck named them, for ever).
    pub damaged_removed: Vec<String>,
}

impl Repository {
    /// Index the packs the store holds that no index object lists, from
    /// the lists at their ends (see the module's docs); with `pretend`,
    /// only read and check them. Take the exclusive lock first; this
    /// takes the prune lock besides (waiting up to `lock_timeout`), so
    /// that no prune deletes a pack as unlisted while it is indexed. A
    /// pack a prune's plan is to delete is indexed too: the plan, when it
    /// is finished, keeps every pack an index object it does not delete
    /// lists (see `prune/finish.rs`), and a plan deferred for runs beside
    /// it may have planned a pack such a run then used.
    pub fn index_unlisted_packs(
        &self,
        pretend: bool,
        lock_timeout: std::time::Duration,
    ) -> RepoResult<Reindexed> {
        self.under_prune_lock(pretend, lock_timeout, |p| {
            self.index_unlisted_packs_locked(p)
        })
    }

    fn index_unlisted_packs_locked(&self, pretend: bool) -> RepoResult<Reindexed> {
        let plans = self.read_plans(false)?;
        if let Some(damaged) = plans.damaged.first() {
            return Err(RepoError::Usage(format!(
                "prune plan {} is damaged: what it is to delete is unknown, so no pack is \
                 looked into (one it names may be deleted); 'obnam prune' removes it",
                damaged.id
            )));
        }
        self.reload_index()?;
        // The index objects damaged in the repository: what they list is
        // unlisted, whatever this machine's index cache still holds of
        // them (a good copy no other machine has). Read now for a repair;
        // as far as this process read them (fsck has) to pretend.
        if !pretend {
            self.check_index_objects()?;
        }
        let damaged: HashSet<String> = self.catalog.damaged_names().into_iter().collect();
        let stored = self.stored_pack_sizes()?;
        let mut unlisted: Vec<ObjectId> = {
            let by_object = self.catalog.object_packs();
            let index = self.catalog.read();
            let listed: HashSet<ObjectId> = by_object
                .iter()
                .filter(|(name, _)| !damaged.contains(*name))
                .flat_map(|(_, packs)| packs.iter().filter_map(|n| index.pack_id(*n)))
                .collect();
            // A pack a prune's plan is to delete too: left out (it was),
            // a generation committed beside a deferred prune did not
            // restore until the plan was finished, though its pack was
            // there (the torture harness, seed 1796575583077415599).
            stored
                .keys()
                .filter(|id| !listed.contains(id))
                .copied()
                .collect()
        };
        unlisted.sort();
        let mut report = Reindexed {
            unlisted_packs: unlisted.len() as u64,
            ..Reindexed::default()
        };
        for id in &unlisted {
            let (entries, problems) = match self.pack_own_list(id) {
                Ok(found) => found,
                Err(e) if e.is_damaged_object() => {
                    report.problems.push(format!(
                        "{}: its list of blobs cannot be read, so it stays unlisted: {e}",
                        pack::key(id)
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            report.problems.extend(problems);
            if entries.is_empty() {
                continue;
            }
            if !pretend {
                let data = index::encode(&self.catalog.read(), &entries);
                self.write_object(&format!("index/{}", ObjectId::random()), data)?;
            }
            report.packs_indexed += 1;
            report.blobs_indexed += entries.len() as u64;
        }
        if report.packs_indexed > 0 && !pretend {
            self.reload_index()?;
        }
        // A damaged index object lists nothing that can be read: its packs
        // were unlisted, and are indexed now from their own lists. With
        // every pack indexed whole (no problem, none left unlisted), it
        // lists nothing the others do not, and goes.
        if !pretend && report.problems.is_empty() && !damaged.is_empty() {
            let mut damaged: Vec<String> = damaged.into_iter().collect();
            damaged.sort();
            for name in &damaged {
                self.storage().delete(&format!("index/{name}"))?;
                report.damaged_removed.push(format!("index/{name}"));
            }
            self.reload_index()?;
        }
        Ok(report)
    }

    /// The blobs a pack lists at its end that match their ids, as index
    /// entries; and what is wrong with the others.
    fn pack_own_list(&self, id: &ObjectId) -> RepoResult<(Vec<IndexEntry>, Vec<String>)> {
        let key = pack::key(id);
        let number = self.catalog.write().pack_number(*id);
        let (bytes, listed) = self.read_pack_with_list(id, number)?;
        let mut good = Vec::with_capacity(listed.len());
        let mut problems = Vec::new();
        for e in listed {
            let context = blob_context(&e.id, e.location.kind);
            let start = e.location.offset as usize;
            let Some(stored) = start
                .checked_add(e.location.length as usize)
                .and_then(|end| bytes.get(start..end))
            else {
                problems.push(format!(
                    "{key}: blob {} lies outside the pack; left out",
                    e.id
                ));
                continue;
            };
            let checked = self
                .codec
                .open_blob_borrowed_checked(&context, stored, |plain| {
                    self.verify_blob(&context, &e.id, plain)
                });
            match checked {
                Ok(_) => good.push(e),
                Err(err) if err.is_damaged_object() => {
                    problems.push(format!("{key}: {err}; left out"));
                }
                Err(err) => return Err(err),
            }
        }
        Ok((good, problems))
    }
}
