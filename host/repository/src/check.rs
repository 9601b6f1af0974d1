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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::blobs::blob_context;
use super::error::{RepoError, RepoResult};
use super::ids::{ChunkId, ObjectId};
use super::index;
use super::storage::StorageError;
use super::{pack, Repository};

/// A blob's place as a pack's own list gives it: id, offset, length.
type TrailerPlace = (ChunkId, u32, u32);

/// What the check of one pack found.
struct PackCheck {
    /// Blobs of its own list that lie in it.
    checked: u64,
    problems: Vec<String>,
    /// Its own list, if the index places fewer of the blobs where the
    /// list does than it lists in the pack (to name the others).
    listed_if_short: Option<HashSet<TrailerPlace>>,
}

/// What [`Repository::forget_missing_packs`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MissingPacks {
    /// Packs the index lists that the storage does not hold.
    pub packs: usize,
    /// Blobs (chunks and trees) that were in them.
    pub blobs: usize,
}

/// Whether a listing of packs gives their sizes: a store whose listing
/// gives none says 0 for each. (A pack is never empty, so a 0 among sizes
/// is a pack cut to nothing: taken for "unknown", it passed every backup
/// and plain fsck, exit 0, though nothing of it could be read.)
fn sizes_known(stored: &HashMap<ObjectId, u64>) -> bool {
    stored.values().any(|&size| size > 0)
}

/// How many packs cut short a backup names (see `packs_missing`).
const SHORT_PACKS_NAMED: usize = 5;

/// Packs the index lists that the storage does not hold whole, by id
/// (`None`: a pack number without an id), each with its size and where
/// its blobs end if it was cut short rather than lost.
type PacksMissing = HashMap<Option<ObjectId>, Option<(u64, u64)>>;

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

    /// The packs the storage holds, with their sizes as the listing gives
    /// them (one listing): for what no index object lists, whose size is
    /// known only from the store.
    pub(crate) fn stored_pack_sizes(&self) -> RepoResult<HashMap<ObjectId, u64>> {
        Ok(self
            .storage()
            .list_stamped("packs/", true)?
            .into_iter()
            .filter_map(|(key, stamp)| Some((pack_id_of(&key)?, stamp.size)))
            .collect())
    }

    /// Drop the index entries of every pack the storage no longer holds,
    /// so that their blobs count as absent (and are stored again by
    /// whoever has their data). Returns what was dropped.
    /// A pack cut short (see `packs_missing`) counts as missing whole:
    /// nothing new is built on it. Each is named in a warning (up to a
    /// few).
    pub fn forget_missing_packs(&self) -> RepoResult<MissingPacks> {
        // Made again when a damaged file of the index cache stopped it
        // (see `check_objects_except`): it only reads, then drops what is
        // missing.
        self.healing(|| self.forget_missing_packs_once(true))
    }

    /// Drop the index entries of the blobs the storage no longer holds,
    /// and of no others: every blob of a pack that is gone, and of a pack
    /// cut short those that end past its end (the blobs before the cut
    /// still read). Names nothing: for a check that names the packs
    /// itself (fsck, whose walk then names the files that lost data, and
    /// only those; it called every file with a blob in a cut pack "not in
    /// the repository", though those before the cut restore). Returns
    /// what was dropped, a cut pack counting as one.
    pub fn forget_lost_blobs(&self) -> RepoResult<MissingPacks> {
        self.healing(|| self.forget_missing_packs_once(false))
    }

    /// [`forget_missing_packs`](Self::forget_missing_packs) if
    /// `cut_whole`, else [`forget_lost_blobs`](Self::forget_lost_blobs).
    fn forget_missing_packs_once(&self, cut_whole: bool) -> RepoResult<MissingPacks> {
        self.ensure_index()?;
        let mut missing = self.packs_missing()?;
        // A prune running meanwhile deletes the index objects that list a
        // pack before the pack, and writes those of the blobs it copied
        // before either: with the index loaded afresh, a pack it deleted
        // is listed no more, and its blobs are found in their copies. A
        // pack still listed after a fresh load is missing indeed (a few
        // loads, while a prune's deletions keep changing the answer).
        for _ in 0..3 {
            if missing.is_empty() {
                return Ok(MissingPacks::default());
            }
            self.reload_index()?;
            let again = self.packs_missing()?;
            if again == missing {
                break;
            }
            missing = again;
        }
        if !cut_whole {
            return self.drop_lost(&missing);
        }
        // Each pack cut short is named, up to a few (a failed copy of a
        // repository may have cut hundreds, and every backup finds them
        // again until they are pruned): `fsck` names them all.
        let mut short: Vec<(ObjectId, u64, u64)> = missing
            .iter()
            .filter_map(|(id, short)| Some(((*id)?, short.as_ref()?.0, short.as_ref()?.1)))
            .collect();
        short.sort();
        for (id, size, end) in short.iter().take(SHORT_PACKS_NAMED) {
            tracing::warn!(
                "{} is {size} bytes, but the index places blobs in it up to byte {end}: \
                 it was cut short (truncated or damaged), so nothing new is built on it",
                pack::key(id)
            );
        }
        if short.len() > SHORT_PACKS_NAMED {
            tracing::warn!(
                "and {} more packs were cut short (fsck names them all)",
                short.len() - SHORT_PACKS_NAMED
            );
        }
        // Nothing new is built on a pack cut short: it counts as gone.
        let whole: PacksMissing = missing.into_keys().map(|id| (id, None)).collect();
        self.drop_lost(&whole)
    }

    /// Drop the entries of what `missing` lost: every blob of a pack
    /// gone, the blobs past the end of a pack cut short.
    fn drop_lost(&self, missing: &PacksMissing) -> RepoResult<MissingPacks> {
        let mut index = self.catalog.write();
        let mut gone = HashSet::new();
        let mut cuts = HashMap::new();
        for n in index.listed_packs() {
            match missing.get(&index.pack_id(n)) {
                Some(Some((size, _))) => {
                    cuts.insert(n, *size);
                }
                Some(None) => {
                    gone.insert(n);
                }
                None => {}
            }
        }
        if gone.is_empty() && cuts.is_empty() {
            return Ok(MissingPacks::default());
        }
        let (mut lost, mut blobs) = index.retain_packs(|n| !gone.contains(&n))?;
        if !cuts.is_empty() {
            let (cut_lost, cut_blobs) = index.cut_packs(&cuts)?;
            lost.extend(cut_lost);
            blobs += cut_blobs;
        }
        drop(index);
        self.catalog.mark_lost(lost);
        Ok(MissingPacks {
            packs: gone.len() + cuts.len(),
            blobs,
        })
    }

    /// The packs the index lists that the storage does not hold whole (by
    /// id; `None` for a pack number the index has no id for), but those
    /// this process is still writing (not in the listing yet). A pack
    /// that the store's listing gives as shorter than where the index
    /// places its last blob was cut short (an interrupted copy, a full
    /// disk, a store that lost its end, another object written over it):
    /// as good as missing for what is built on it, although its first
    /// blobs may still be read. (Backups took such a pack for whole, and
    /// every later generation was built on the blobs it lost, exit 0.) A
    /// pack of 0 bytes is cut short too (all its blobs lost), unless the
    /// listing gives no pack a size (a store that gives none).
    /// Each is given with its size and where its blobs end if it was cut
    /// short.
    fn packs_missing(&self) -> RepoResult<PacksMissing> {
        let stored = self.stored_pack_sizes()?;
        let sized = sizes_known(&stored);
        let writing: HashSet<u32> = self.uploads.packs_in_memory();
        let index = self.catalog.read();
        let mut missing = HashMap::new();
        for n in index.listed_packs() {
            if writing.contains(&n) {
                continue;
            }
            let Some(id) = index.pack_id(n) else {
                missing.insert(None, None);
                continue;
            };
            let end = index.pack_end(n);
            match stored.get(&id) {
                None => {
                    missing.insert(Some(id), None);
                }
                Some(&size) if sized && size < end => {
                    missing.insert(Some(id), Some((size, end)));
                }
                Some(_) => {}
            }
        }
        Ok(missing)
    }

    /// Check the objects of the repository: index objects that could not be
    /// read, packs the index lists that are gone, and with `verify_data`
    /// every pack read whole: its trailer, its agreement with the index,
    /// and every blob in it against its id, but for the chunks read since
    /// [`remember_chunk_reads`](Self::remember_chunk_reads) where the
    /// index places them (each was checked against its id as it was read,
    /// see [`get_chunk`](Self::get_chunk)): fsck reads every file's chunks
    /// first, and then only the packs' trailers, trees and blobs no file
    /// uses are left to decode.
    pub fn check_objects(&self, verify_data: bool) -> RepoResult<ObjectReport> {
        self.check_objects_except(verify_data, &HashSet::new())
    }

    /// [`check_objects`](Self::check_objects), except that a blob in
    /// `verified` is not decoded and checked again where the pack holds
    /// it at the place the index gives either. (The fsck of plugin API
    /// 0.1.7 and 0.1.8 gathered what it read into such a set; fsck now
    /// has the engine remember where it read, in 8 bytes a chunk.)
    pub fn check_objects_except(
        &self,
        verify_data: bool,
        verified: &HashSet<ChunkId>,
    ) -> RepoResult<ObjectReport> {
        // A file of the local index cache found damaged on the way
        // stopped the check: with what it held read again from the
        // repository, the check is made again (it checked nothing, and
        // fsck failed of a file outside the repository).
        self.healing(|| self.check_objects_once(verify_data, verified))
    }

    fn check_objects_once(
        &self,
        verify_data: bool,
        verified: &HashSet<ChunkId>,
    ) -> RepoResult<ObjectReport> {
        self.ensure_index()?;
        let mut report = ObjectReport {
            problems: self.damaged_index_objects(),
            ..ObjectReport::default()
        };
        // The records the check listed before (fsck lists every client's
        // generations first) that were damaged.
        report.problems.extend(self.damaged.problems());
        // A damaged prune plan stops backups until a prune removes it.
        for damaged in self.read_plans(true)?.damaged {
            report.problems.push(format!(
                "damaged prune plan: {}; it is never carried out, and it stops backups until \
                 'obnam prune' removes it, deleting nothing it names because of it",
                damaged.problem()
            ));
        }
        // A damaged lock keeps other runs waiting until it is removed.
        report.problems.extend(self.damaged_locks()?);
        // A lock left by a run that is gone is no problem (the next run
        // breaks it), but worth knowing of.
        for (lock, reader) in self.locks_of_gone_processes()? {
            let who = if reader {
                "the next restore or other reading command removes it (prunes pass it over)"
            } else {
                "the next run breaks it"
            };
            tracing::warn!(
                "{lock} (a run that is gone on this host): {who}, or 'obnam force-lock' removes \
                 it"
            );
        }
        report.problems.extend(self.clients_without_records()?);
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
            let listed = self.catalog.read().listed_pack_ids();
            let stored = self.stored_packs()?;
            gone.retain(|(id, _)| listed.contains(id) && !stored.contains(id));
            report.problems.extend(gone.into_iter().map(|(_, p)| p));
        }
        Ok(report)
    }

    /// Generations of clients that have no client record (lost, or
    /// removed by hand): named as problems, by the client's name where one
    /// of its generation records gives it (every walk over the clients
    /// then takes the client from them: see `Repository::clients`), and
    /// where none does, as a folder none of whose records can be read,
    /// which nothing else reaches. `remove-client` removes the record
    /// last, so it leaves none of these behind.
    fn clients_without_records(&self) -> RepoResult<Vec<String>> {
        let known: HashSet<String> = self.storage().list("clients/")?.into_iter().collect();
        let mut orphans: BTreeMap<String, usize> = BTreeMap::new();
        for key in self.storage().list_recursive("generations/")? {
            let mut parts = key.split('/').skip(1);
            if let (Some(client), Some(_), None) = (parts.next(), parts.next(), parts.next()) {
                if crate::damaged_records::is_client_id(client) && !known.contains(client) {
                    *orphans.entry(client.to_string()).or_default() += 1;
                }
            }
        }
        let mut problems = Vec::new();
        for (id, count) in orphans {
            let name = self
                .read_listed_records::<crate::generation::Generation>(
                    &format!("generations/{id}/"),
                    false,
                    &|_| true,
                )
                .ok()
                .and_then(|records| records.into_iter().next())
                .map(|(_, g)| g.client);
            let s = if count == 1 { "" } else { "s" };
            problems.push(match name {
                Some(name) => format!(
                    "client '{}' has {count} generation{s} (generations/{id}/) but no client \
                     record (clients/{id} is missing): the client is taken from its \
                     generations; its next backup writes the record again",
                    crate::error::shown(&name)
                ),
                None => format!(
                    "generations/{id}/ holds {count} generation record{s} of a client that has \
                     no client record (clients/{id} is missing), and none of them can be read \
                     to name it"
                ),
            });
        }
        Ok(problems)
    }

    /// Read and decode every index object the repository lists, whatever
    /// this machine's index cache holds: a run takes the entries of an
    /// object the cache covers from the cache (and the run that wrote an
    /// object leaves it there), so damage to the object in the repository,
    /// which every other machine would meet, is found only here. An object
    /// this process read already (loading the index, or an earlier check)
    /// is not read again. Returns the problems (an object deleted
    /// meanwhile, by a prune, is none).
    pub(crate) fn check_index_objects(&self) -> RepoResult<Vec<String>> {
        let mut problems = Vec::new();
        let mut unread = Vec::new();
        for name in self.list_index_objects()? {
            match self.catalog.read_back_problem(&name) {
                Some(problem) => problems.extend(problem),
                None => unread.push(name),
            }
        }
        let mut reading = crate::catalog::IndexReadWindow::new();
        let mut at = 0;
        while at < unread.len() {
            let window = reading.next(&unread, at);
            at += window.len();
            let keys: Vec<String> = window.iter().map(|n| format!("index/{n}")).collect();
            // One decoded object at a time (see `read_objects_with`).
            self.read_objects_with(&keys, |i, data| {
                let (name, key) = (&window[i], &keys[i]);
                let problem = match data {
                    Ok(data) => {
                        reading.read([data.len()]);
                        index::decode(&mut index::Index::default(), &data)
                            .err()
                            .map(|e| RepoError::corrupt(key, e).to_string())
                    }
                    Err(RepoError::Storage(StorageError::NotFound { .. })) => return Ok(()),
                    // As when the index is loaded: see `load_index_listed`.
                    Err(e) if e.is_damaged_object() => {
                        Some(crate::damaged_records::said_with_remedy(&e))
                    }
                    Err(e) => return Err(e),
                };
                self.catalog.read_back(name, problem.clone());
                problems.extend(problem);
                Ok(())
            })?;
        }
        Ok(problems)
    }

    /// Check every pack the index lists (see [`check_objects`]); returns
    /// the packs found gone, with the problem each would be, for a second
    /// look.
    ///
    /// What it holds does not grow with the blobs: a count of blobs per
    /// pack, then one pack at a time per thread, each blob of its own list
    /// looked up in the index. Only the lists of packs whose blobs the
    /// index places elsewhere are kept, to name those blobs after one more
    /// pass over the index.
    fn check_listed_packs(
        &self,
        verify_data: bool,
        verified: &HashSet<ChunkId>,
        report: &mut ObjectReport,
    ) -> RepoResult<Vec<(ObjectId, String)>> {
        let stored = self.stored_pack_sizes()?;
        let sized = sizes_known(&stored);
        // In pack-id order: how many blobs the index places in each pack,
        // and where the last of them ends.
        let packs: BTreeMap<ObjectId, (u64, u64)> = {
            let index = self.catalog.read();
            index
                .blobs_per_pack()?
                .into_iter()
                .filter_map(|(n, blobs)| Some((index.pack_id(n)?, (blobs, index.pack_end(n)))))
                .collect()
        };
        let missing = |id: &ObjectId, blobs: u64| {
            format!(
                "{} is missing: the index lists {blobs} {} in it; 'obnam repair-packs {}' \
                 before the next backup takes it out of the index, so that backups store \
                 its data again under the ids older generations use",
                pack::key(id),
                if blobs == 1 { "blob" } else { "blobs" },
                pack::key(id)
            )
        };
        let mut gone = Vec::new();
        let mut to_check = Vec::new();
        for (id, (blobs, end)) in &packs {
            match stored.get(id) {
                None => gone.push((*id, missing(id, *blobs))),
                // Shorter than where its blobs end, as the store's listing
                // says (no read needed): cut short, its last blobs lost.
                // (Every backup and plain fsck took it for whole, and the
                // loss showed at restore time only; see `packs_missing`.)
                // Cut to nothing is cut short too (see `sizes_known`).
                Some(size) if sized && size < end => report.problems.push(format!(
                    "{} is {size} bytes, but the index places blobs in it up to byte {end}: \
                     it was cut short (truncated or damaged); backups build nothing new on \
                     it, and store again what its lost blobs held from the files that still \
                     have it",
                    pack::key(id)
                )),
                Some(_) if verify_data => to_check.push((*id, *blobs)),
                Some(_) => {}
            }
        }
        let mut elsewhere = HashMap::new();
        // In pack-id order, whichever thread checked each.
        for ((id, blobs), result) in to_check.iter().zip(self.check_packs(&to_check, verified)) {
            match result {
                Ok(check) => {
                    // A pack counts as checked once it was read (one that
                    // could not be is a problem, not a pack checked).
                    report.packs_checked += 1;
                    report.blobs_checked += check.checked;
                    report.problems.extend(check.problems);
                    if let Some(listed) = check.listed_if_short {
                        elsewhere.insert(*id, listed);
                    }
                }
                Err(RepoError::Storage(StorageError::NotFound { .. })) => {
                    gone.push((*id, missing(id, *blobs)));
                }
                // Its first bytes or its own list of blobs: what
                // `repair-index` reads if its index object is ever lost.
                Err(e) if e.is_damaged_object() => report.problems.push(format!(
                    "{e}; 'obnam repair-packs {}' copies what checks in it into new packs and \
                     takes it out",
                    pack::key(id)
                )),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        if !elsewhere.is_empty() {
            report.problems.extend(self.placed_elsewhere(&elsewhere)?);
        }
        Ok(gone)
    }

    /// The blobs the index places in the packs of `listed` where their
    /// own lists (given) do not: one problem each.
    fn placed_elsewhere(
        &self,
        listed: &HashMap<ObjectId, HashSet<TrailerPlace>>,
    ) -> RepoResult<Vec<String>> {
        let index = self.catalog.read();
        let mut problems = Vec::new();
        index.for_each_blob(|id, places| {
            for l in places {
                let Some(pack) = index.pack_id(l.pack) else {
                    continue;
                };
                if listed
                    .get(&pack)
                    .is_some_and(|own| !own.contains(&(id, l.offset, l.length)))
                {
                    problems.push(format!(
                        "{}: the index places blob {id} at bytes {}..{}, which the pack's own list does not",
                        pack::key(&pack),
                        l.offset,
                        u64::from(l.offset) + u64::from(l.length)
                    ));
                }
            }
        })?;
        Ok(problems)
    }

    /// [`check_pack`](Self::check_pack) each of `packs` (with the number
    /// of blobs the index lists in it), on as many threads as there are
    /// processors (a pack is read, decrypted, decompressed and hashed:
    /// work for every core), each holding one pack at a time; the results
    /// in the order of `packs`.
    fn check_packs(
        &self,
        packs: &[(ObjectId, u64)],
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
            let Some((id, blobs)) = packs.get(i) else {
                return;
            };
            let result = self.check_pack(id, *blobs, verified);
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

    /// Read one pack whole and check it against the index, which lists
    /// `indexed` blobs in it: each blob of the pack's own list is looked
    /// up, and decoded unless it was read where the index places it
    /// (fsck's walk read it: [`crate::read_record`]; or it is in
    /// `verified`).
    /// A pack read whole, and the list of its blobs at its end (decoded
    /// through the filters), as index entries of pack number `number`.
    pub(crate) fn read_pack_with_list(
        &self,
        id: &ObjectId,
        number: u32,
    ) -> RepoResult<(Vec<u8>, Vec<crate::index::IndexEntry>)> {
        let key = pack::key(id);
        let bytes = self
            .storage()
            .read_limited(&key, crate::limits::MAX_PACK_LEN)?;
        let sealed_trailer =
            pack::split_trailer(&bytes).map_err(|e| RepoError::corrupt(&key, e))?;
        let trailer = self
            .codec
            .decode(&format!("pack/{id}"), sealed_trailer.to_vec())
            .map_err(|e| match e {
                // Named as the pack, as every other problem of it is.
                e if e.is_damaged_object() => RepoError::corrupt(
                    &key,
                    format!("its own list of blobs (at its end) cannot be read: {e}"),
                ),
                e => e,
            })?;
        let listed =
            pack::decode_trailer(&trailer, number).map_err(|e| RepoError::corrupt(&key, e))?;
        Ok((bytes, listed))
    }

    fn check_pack(
        &self,
        id: &ObjectId,
        indexed: u64,
        verified: &HashSet<ChunkId>,
    ) -> RepoResult<PackCheck> {
        let key = pack::key(id);
        let (bytes, listed) = self.read_pack_with_list(id, 0)?;
        // Which blobs of the list the index places where the list does.
        let placed: Vec<bool> = {
            let index = self.catalog.read();
            listed
                .iter()
                .map(|e| {
                    index.places(&e.id).iter().any(|l| {
                        l.offset == e.location.offset
                            && l.length == e.location.length
                            && index.pack_id(l.pack) == Some(*id)
                    })
                })
                .collect()
        };
        // The index has one place per blob and pack: as many blobs placed
        // as it lists, or it places some where the list has none.
        let placed_blobs = listed
            .iter()
            .zip(&placed)
            .filter(|(_, placed)| **placed)
            .map(|(e, _)| e.id)
            .collect::<HashSet<_>>()
            .len() as u64;
        let listed_if_short = (placed_blobs < indexed).then(|| {
            listed
                .iter()
                .map(|e| (e.id, e.location.offset, e.location.length))
                .collect()
        });
        let reads = self.caches.reads.take(id);
        let mut problems = Vec::new();
        let mut checked = 0;
        for (e, placed) in listed.iter().zip(placed) {
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
            // A blob read and checked through the index was read from
            // where the index places it.
            if placed && (reads.contains(e.location.offset, &e.id) || verified.contains(&e.id)) {
                continue;
            }
            let verified = self
                .codec
                .open_blob_borrowed_checked(&context, stored, |plain| {
                    self.verify_blob(&context, &e.id, plain)
                });
            // What to do is said where it is found: a backup refers to
            // the stored copy without reading it back, so nothing heals
            // while the pack is there.
            // A filter that is not loaded, or that could not work, says
            // nothing of the pack: taking it out would lose sound data.
            match verified {
                Ok(_) => {}
                Err(RepoError::Filter(e)) => problems.push(format!(
                    "{key}: {e}; check again {} (the data may well be sound: do not take the \
                     pack out)",
                    if e.contains("no loaded plugin provides") {
                        "with the plugin that provides it loaded"
                    } else {
                        "once the filter can work"
                    }
                )),
                Err(e) => problems.push(format!(
                    "{key}: {e}; backups go on referring to it while the pack is there: \
                     'obnam repair-packs {key}' takes the pack out (keeping what else it holds), \
                     and the next backup stores again what is still on disk"
                )),
            }
        }
        Ok(PackCheck {
            checked,
            problems,
            listed_if_short,
        })
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
