//! Index compaction: a prune that has no pack to delete merges the small
//! index objects into objects of [`ENTRIES_PER_OBJECT`] entries.
//!
//! Every backup leaves at least one index object (its run's, merged at
//! its end), so a repository of many clients gathers thousands between
//! prunes, and every run lists them, and reads those its cache does not
//! hold. Full-size objects are left alone, so that a client's index
//! cache ([`crate::index_cache`]) keeps what it holds of them: only the
//! entries of the small ones are read again, under their new names.
//!
//! The merged objects are written before the small ones are deleted, as
//! a backup's own merge does ([`Repository::consolidate_index`]): a
//! reader finds every entry in one or the other (a reader that listed
//! the old ones and finds one gone lists again, see
//! [`crate::catalog`]). A prune holds the prune lock, so no other
//! prune's plan is made meanwhile; and this runs only when no plan waits
//! (a deferred plan returns before), so no planned pack is listed anew
//! by the merged objects.

use std::collections::HashSet;

use crate::error::RepoResult;
use crate::ids::ObjectId;
use crate::index::{self, IndexEntry};
use crate::Repository;

use super::rewrite::{packs_of, ENTRIES_PER_OBJECT};

/// Small index objects a prune leaves as they are; more, and it merges
/// them.
pub const COMPACT_ABOVE: usize = 16;

/// An index object smaller than this is small.
const SMALL: u64 = (ENTRIES_PER_OBJECT / 2) as u64;

impl Repository {
    /// Merge the small index objects loaded if there are more than
    /// [`COMPACT_ABOVE`]; returns how many were replaced (with `pretend`,
    /// how many would be, writing nothing).
    pub(super) fn compact_index_objects(&self, pretend: bool) -> RepoResult<u64> {
        // Only index objects listed now: one loaded earlier in the run may
        // have been merged away by a backup since (or deleted by this
        // prune, finishing an earlier plan), and its entries must not
        // come back under a new name.
        self.reload_index()?;
        let small: HashSet<String> = self
            .catalog
            .read()
            .object_sizes()
            .into_iter()
            .filter(|(_, entries)| *entries < SMALL)
            .map(|(name, _)| name)
            .collect();
        if small.len() <= COMPACT_ABOVE {
            return Ok(0);
        }
        if pretend {
            return Ok(small.len() as u64);
        }
        let index = self.catalog.read();
        let mut group: Vec<IndexEntry> = Vec::with_capacity(ENTRIES_PER_OBJECT);
        let mut failed = None;
        let write = |group: &[IndexEntry]| -> RepoResult<()> {
            let name = ObjectId::random().to_hex();
            self.write_object(&format!("index/{name}"), index::encode(&index, group))?;
            self.catalog.mark_known(name, packs_of(group));
            Ok(())
        };
        index.for_each_entry_of(&small, |e| {
            if failed.is_some() {
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
        drop(index);
        tracing::info!("merged {} small index objects", small.len());
        for name in &small {
            self.storage().delete(&format!("index/{name}"))?;
        }
        Ok(small.len() as u64)
    }
}
