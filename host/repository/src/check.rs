//! Checks of the repository's objects as objects: that the packs the index
//! lists exist, that each pack's trailer agrees with the index, and that
//! every blob decodes to its id. The walk of generations (trees, files) is
//! the fsck plugin's; this is what only the engine can see.
//!
//! A lost pack (a disk error, a careless `rm`) must not poison later
//! backups: [`Repository::forget_missing_packs`] drops the index entries of
//! packs that are gone, so that the blobs they held count as absent and a
//! backup stores them again from the files that still have them.
//!
//! This module adds to [`Repository`] those two operations:
//! [`Repository::forget_missing_packs`] and [`Repository::check_objects`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::blobs::blob_context;
use super::error::{RepoError, RepoResult};
use super::ids::{ChunkId, ObjectId};
use super::index::{self, IndexEntry};
use super::storage::StorageError;
use super::{pack, Repository};

/// What the check of one pack found: the blobs checked, and the problems.
type PackCheck = (u64, Vec<String>);

/// What [`Repository::forget_missing_packs`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MissingPacks {
    /// Packs the index lists that the storage does not hold.
    pub packs: usize,
    /// Blobs (chunks and trees) that were in them.
    pub blobs: usize,
}

/// What [`Repository::check_objects`] found: one line per problem.
#[derive(Debug, Default)]
pub struct ObjectReport {
    pub problems: Vec<String>,
    pub packs_checked: u64,
    pub blobs_checked: u64,
}

/// The id of the pack stored under `key` (`packs/XX/PACKID`), if it is one.
fn pack_id_of(key: &str) -> Option<ObjectId> {
    let name = key.strip_prefix("packs/")?;
    let (folder, id) = name.split_once('/')?;
    let id = ObjectId::from_hex(id).ok()?;
    (id.to_hex().starts_with(folder) && folder.len() == 2).then_some(id)
}

impl Repository {
    /// The packs the storage holds (one listing).
    pub(crate) fn stored_packs(&self) -> RepoResult<HashSet<ObjectId>> {
        Ok(self
            .storage()
            .list_recursive("packs/")?
            .iter()
            .filter_map(|key| pack_id_of(key))
            .collect())
    }

    /// Drop the index entries of every pack the storage no longer holds,
    /// so that their blobs count as absent (and are stored again by
    /// whoever has their data). Returns what was dropped.
    pub fn forget_missing_packs(&self) -> RepoResult<MissingPacks> {
        self.ensure_index()?;
        let stored = self.stored_packs()?;
        let mut index = self.catalog.write();
        let missing: HashSet<u32> = index
            .listed_packs()
            .into_iter()
            .filter(|n| index.pack_id(*n).is_none_or(|id| !stored.contains(&id)))
            .collect();
        // Packs this process is still writing are not in the listing yet.
        let writing: HashSet<u32> = self.uploads.packs_in_memory();
        let missing: HashSet<u32> = missing.difference(&writing).copied().collect();
        if missing.is_empty() {
            return Ok(MissingPacks::default());
        }
        let (lost, blobs) = index.retain_packs(|n| !missing.contains(&n))?;
        drop(index);
        self.catalog.mark_lost(lost);
        Ok(MissingPacks {
            packs: missing.len(),
            blobs,
        })
    }

    /// Check the objects of the repository: index objects that could not be
    /// read, packs the index lists that are gone, and with `verify_data`
    /// every pack read whole: its trailer, its agreement with the index,
    /// and every blob in it against its id.
    pub fn check_objects(&self, verify_data: bool) -> RepoResult<ObjectReport> {
        self.check_objects_except(verify_data, &HashSet::new())
    }

    /// [`check_objects`](Self::check_objects), except that a blob in
    /// `verified` is not decoded and checked again where the pack holds
    /// it at the place the index gives: fsck reads every file's chunks
    /// through the index first (each checked against its id as it is
    /// read, see [`get_chunk`](Self::get_chunk)), and then only the
    /// packs' trailers, trees and blobs no file uses are left to check.
    pub fn check_objects_except(
        &self,
        verify_data: bool,
        verified: &HashSet<ChunkId>,
    ) -> RepoResult<ObjectReport> {
        self.ensure_index()?;
        let mut report = ObjectReport {
            problems: self.damaged_index_objects(),
            ..ObjectReport::default()
        };
        for problem in self.check_index_objects()? {
            if !report.problems.contains(&problem) {
                report.problems.push(problem);
            }
        }
        let mut gone = self.check_listed_packs(verify_data, verified, &mut report)?;
        if !gone.is_empty() {
            // A prune running meanwhile deletes the index objects that
            // list a pack before the pack: with the index loaded afresh,
            // the packs it deleted are listed no more. A pack still listed
            // is missing indeed.
            self.reload_index()?;
            let listed: HashSet<ObjectId> = {
                let index = self.catalog.read();
                index
                    .listed_packs()
                    .into_iter()
                    .filter_map(|n| index.pack_id(n))
                    .collect()
            };
            let stored = self.stored_packs()?;
            gone.retain(|(id, _)| listed.contains(id) && !stored.contains(id));
            report.problems.extend(gone.into_iter().map(|(_, p)| p));
        }
        Ok(report)
    }

    /// Read and decode every index object the repository lists, whatever
    /// this machine's index cache holds: a run takes the entries of an
    /// object the cache covers from the cache (and the run that wrote an
    /// object leaves it there), so damage to the object in the repository,
    /// which every other machine would meet, is found only here. An object
    /// this process read already (loading the index, or an earlier check)
    /// is not read again. Returns the problems (an object deleted
    /// meanwhile, by a prune, is none).
    fn check_index_objects(&self) -> RepoResult<Vec<String>> {
        let mut problems = Vec::new();
        let mut unread = Vec::new();
        for name in self.storage.list("index/")? {
            match self.catalog.read_back_problem(&name) {
                Some(problem) => problems.extend(problem),
                None => unread.push(name),
            }
        }
        for window in unread.chunks(crate::catalog::INDEX_READ_WINDOW) {
            let keys: Vec<String> = window.iter().map(|n| format!("index/{n}")).collect();
            for ((name, key), data) in window.iter().zip(&keys).zip(self.read_objects(&keys)) {
                let problem = match data {
                    Ok(data) => index::decode(&mut index::Index::default(), &data)
                        .err()
                        .map(|e| RepoError::corrupt(key, e).to_string()),
                    Err(RepoError::Storage(StorageError::NotFound { .. })) => continue,
                    Err(e @ RepoError::Corrupt { .. }) => Some(e.to_string()),
                    Err(e) => return Err(e),
                };
                self.catalog.read_back(name, problem.clone());
                problems.extend(problem);
            }
        }
        Ok(problems)
    }

    /// Check every pack the index lists (see [`check_objects`]); returns
    /// the packs found gone, with the problem each would be, for a second
    /// look.
    fn check_listed_packs(
        &self,
        verify_data: bool,
        verified: &HashSet<ChunkId>,
        report: &mut ObjectReport,
    ) -> RepoResult<Vec<(ObjectId, String)>> {
        let stored = self.stored_packs()?;
        let by_pack = self.catalog.read().blobs_by_pack()?;
        let mut packs: Vec<(ObjectId, Vec<IndexEntry>)> = by_pack
            .into_iter()
            .filter_map(|(n, entries)| Some((self.catalog.read().pack_id(n)?, entries)))
            .collect();
        packs.sort_by_key(|(id, _)| *id);
        let missing = |id: &ObjectId, entries: &[IndexEntry]| {
            format!(
                "{} is missing: the index lists {} blobs in it",
                pack::key(id),
                entries.len()
            )
        };
        let mut gone = Vec::new();
        let mut to_check = Vec::new();
        for (id, entries) in &packs {
            if !stored.contains(id) {
                gone.push((*id, missing(id, entries)));
            } else if verify_data {
                to_check.push((id, entries.as_slice()));
            }
        }
        // In pack-id order, whichever thread checked each.
        for ((id, entries), result) in to_check.iter().zip(self.check_packs(&to_check, verified)) {
            report.packs_checked += 1;
            match result {
                Ok((checked, problems)) => {
                    report.blobs_checked += checked;
                    report.problems.extend(problems);
                }
                Err(RepoError::Storage(StorageError::NotFound { .. })) => {
                    gone.push((**id, missing(id, entries)));
                }
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        Ok(gone)
    }

    /// [`check_pack`](Self::check_pack) each of `packs`, on as many
    /// threads as there are processors (a pack is read, decrypted,
    /// decompressed and hashed: work for every core), each holding one
    /// pack at a time; the results in the order of `packs`.
    fn check_packs(
        &self,
        packs: &[(&ObjectId, &[IndexEntry])],
        verified: &HashSet<ChunkId>,
    ) -> Vec<RepoResult<PackCheck>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8)
            .min(packs.len().max(1));
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<RepoResult<PackCheck>>>> =
            Mutex::new((0..packs.len()).map(|_| None).collect());
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((id, entries)) = packs.get(i) else {
                return;
            };
            let result = self.check_pack(id, entries, verified);
            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RepoError::Usage("a pack was not checked".into()))))
            .collect()
    }

    /// Read one pack whole and check it; returns the blobs checked and the
    /// problems found.
    fn check_pack(
        &self,
        id: &ObjectId,
        indexed: &[IndexEntry],
        verified: &HashSet<ChunkId>,
    ) -> RepoResult<PackCheck> {
        let key = pack::key(id);
        let bytes = self
            .storage()
            .read_limited(&key, crate::limits::MAX_PACK_LEN)?;
        let sealed_trailer =
            pack::split_trailer(&bytes).map_err(|e| RepoError::corrupt(&key, e))?;
        let trailer = self
            .codec
            .decode(&format!("pack/{id}"), sealed_trailer.to_vec())?;
        let listed = pack::decode_trailer(&trailer, 0).map_err(|e| RepoError::corrupt(&key, e))?;
        let mut problems = Vec::new();
        let in_trailer: HashSet<(_, u32, u32)> = listed
            .iter()
            .map(|e| (e.id, e.location.offset, e.location.length))
            .collect();
        for e in indexed {
            if !in_trailer.contains(&(e.id, e.location.offset, e.location.length)) {
                problems.push(format!(
                    "{key}: the index places blob {} at bytes {}..{}, which the pack's own list does not",
                    e.id,
                    e.location.offset,
                    u64::from(e.location.offset) + u64::from(e.location.length)
                ));
            }
        }
        // Where the index places each blob of this pack: a blob read and
        // checked through the index was read from there.
        let in_index: HashSet<(_, u32, u32)> = indexed
            .iter()
            .map(|e| (e.id, e.location.offset, e.location.length))
            .collect();
        let mut checked = 0;
        for e in &listed {
            let context = blob_context(&e.id, e.location.kind);
            let start = e.location.offset as usize;
            let Some(stored) = start
                .checked_add(e.location.length as usize)
                .and_then(|end| bytes.get(start..end))
            else {
                problems.push(format!("{key}: blob {} lies outside the pack", e.id));
                continue;
            };
            checked += 1;
            if verified.contains(&e.id)
                && in_index.contains(&(e.id, e.location.offset, e.location.length))
            {
                continue;
            }
            let verified = self
                .codec
                .open_blob_borrowed(&context, stored)
                .and_then(|plain| self.verify_blob(&context, &e.id, &plain));
            if let Err(e) = verified {
                problems.push(format!("{key}: {e}"));
            }
        }
        Ok((checked, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_keys_are_recognised() {
        let id = ObjectId([0xab; 16]);
        assert_eq!(pack_id_of(&pack::key(&id)), Some(id));
        assert_eq!(pack_id_of("packs/ab/xyz"), None);
        assert_eq!(pack_id_of(&format!("packs/cd/{}", id.to_hex())), None);
        assert_eq!(pack_id_of("index/ab"), None);
    }
}
