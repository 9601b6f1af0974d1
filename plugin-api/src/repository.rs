//! The repository, as a plugin sees it: chunks, generations, clients and
//! locks. The host owns the repository; plugins reach it only through
//! [`Context::repository`](crate::Context::repository).
//!
//! Chunk *tokens* (the dedup key, [`Token`]) are kept apart from chunk
//! *ids* ([`ChunkId`]): a token may have several stored copies (after a
//! hash collision, or when a policy stores a chunk again on purpose), each
//! with its own id. [`Repository::find_chunks`] lists the copies of a
//! token; [`Repository::put_chunk`] always stores a new copy.
//!
//! Every method may be called from several threads at once.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::std_types::{ROption, RSlice, RStr, RString, RVec};

pub use crate::entry::Entry;
use crate::guard::unwrap_abi;
pub use crate::repo_abi::{ChunkId, EntryKind, Token};
use crate::repo_abi::{
    GenerationBuilderBox, GenerationReaderBox, PruneProgressRef, PruneProgressService,
    PruneProgressService_TO, RawEntry, RawGeneration, RawObjectReport, RawPruneOptions,
    RawPruneReport, RepositoryBox,
};
use crate::Result;

/// A record of the repository that cannot be used (see
/// [`Repository::damaged_generations`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRecord {
    /// Its id.
    pub id: String,
    /// What is wrong with it.
    pub problem: String,
    /// Whether its damage is known and `obnam repair-records` undoes it
    /// (one byte of its filter header, proven by its checksum): then
    /// nothing need be lost, and a command that names it should say so
    /// rather than advise removing it. Since 0.1.22.
    pub repairable: bool,
}

/// A generation's description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationInfo {
    /// The generation id.
    pub id: String,
    /// The client it belongs to.
    pub client: String,
    /// Start of the run that made it, in ns since the epoch.
    pub started_ns: i64,
    /// End of the run, in ns since the epoch.
    pub ended_ns: i64,
    /// Number of files (non-directories) in it.
    pub file_count: u64,
    /// Bytes of file data in it.
    pub data_size: u64,
    /// Whether it is a checkpoint of a run still going (or interrupted).
    pub is_checkpoint: bool,
}

impl GenerationInfo {
    fn from_raw(raw: RawGeneration) -> Self {
        GenerationInfo {
            id: raw.id.into_string(),
            client: raw.client.into_string(),
            started_ns: raw.started_ns,
            ended_ns: raw.ended_ns,
            file_count: raw.file_count,
            data_size: raw.data_size,
            is_checkpoint: raw.is_checkpoint,
        }
    }
}

/// How a prune is to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneOptions {
    /// Rewrite a pack whose unused bytes are more than this many percent
    /// (0 to 100; 0 rewrites any pack with an unused byte, 100 none).
    pub repack_threshold: u8,
    /// Decide and report only: write and delete nothing.
    pub pretend: bool,
}

/// The steps a prune reports progress in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneStep {
    /// Walking generations (done and total generations).
    Walk,
    /// Copying used blobs out of packs (done and total packs).
    Rewrite,
    /// Deleting (done and total objects).
    Delete,
}

/// What a prune did or, pretending, would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Whether it only pretended.
    pub pretend: bool,
    /// Packs deleted (with nothing used in them, and rewritten ones).
    pub packs_deleted: u64,
    /// Packs whose used blobs were copied into new packs.
    pub packs_rewritten: u64,
    /// Bytes of the packs deleted; less `bytes_rewritten`, the space
    /// that came back.
    pub bytes_freed: u64,
    /// Bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Index objects deleted (replaced by new ones).
    pub index_objects_deleted: u64,
    /// The deletion waits for backups that began before the prune's
    /// plan: a later prune carries it out.
    pub deferred: bool,
    /// How many runs the deletion waits for.
    pub waiting_runs: u64,
    /// Plans of earlier prunes carried out by this one.
    pub finished_earlier_plans: u64,
    /// Plans of earlier prunes that stopped before recording which runs
    /// they waited for: dropped (nothing deleted for them).
    pub abandoned_plans: u64,
    /// Planned packs kept, as generations committed since need them.
    pub packs_kept_for_new_generations: u64,
    /// Generations walked.
    pub generations: u64,
    /// Blobs generations refer to that are in no stored pack (`fsck`
    /// reports them).
    pub missing_blobs: u64,
    /// Keys of the packs (to be) deleted with nothing used in them.
    pub delete: Vec<String>,
    /// Keys of the packs (to be) rewritten.
    pub rewrite: Vec<String>,
}

impl PruneReport {
    fn from_raw(r: RawPruneReport) -> Self {
        let strings = |v: RVec<RString>| v.into_iter().map(RString::into_string).collect();
        PruneReport {
            pretend: r.pretend,
            packs_deleted: r.packs_deleted,
            packs_rewritten: r.packs_rewritten,
            bytes_freed: r.bytes_freed,
            bytes_rewritten: r.bytes_rewritten,
            index_objects_deleted: r.index_objects_deleted,
            deferred: r.deferred,
            waiting_runs: r.waiting_runs,
            finished_earlier_plans: r.finished_earlier_plans,
            abandoned_plans: r.abandoned_plans,
            packs_kept_for_new_generations: r.packs_kept_for_new_generations,
            generations: r.generations,
            missing_blobs: r.missing_blobs,
            delete: strings(r.delete),
            rewrite: strings(r.rewrite),
        }
    }
}

/// One client's share of a repository (see [`Repository::usage`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientUsage {
    /// The client's name.
    pub name: String,
    /// Generations, checkpoints included.
    pub generations: u64,
    /// Of those, checkpoints.
    pub checkpoints: u64,
    /// Files in the newest generation.
    pub latest_files: u64,
    /// Bytes of file data in the newest generation.
    pub latest_bytes: u64,
    /// Bytes of file data summed over every generation: what a full copy
    /// of each would take.
    pub logical_bytes: u64,
    /// Blobs (chunks and directory trees) its generations refer to, each
    /// counted once.
    pub blobs: u64,
    /// Stored bytes of those blobs, as stored (compressed, encrypted):
    /// blobs shared with other clients count for each.
    pub stored_bytes: u64,
}

/// The space of a repository (see [`Repository::usage`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Per client, by name.
    pub clients: Vec<ClientUsage>,
    /// Packs stored.
    pub packs: u64,
    /// Bytes of the blobs the index lists in stored packs.
    pub pack_bytes: u64,
    /// Blobs the index lists in stored packs (every stored copy).
    pub blobs: u64,
    /// Blobs some generation refers to, each counted once.
    pub used_blobs: u64,
    /// Stored bytes of those: what the repository needs.
    pub used_bytes: u64,
    /// Packs with nothing used in them (a prune deletes them).
    pub unused_packs: u64,
    /// Packs with both used and unused bytes.
    pub partly_used_packs: u64,
    /// Blobs generations refer to that are in no stored pack (`fsck`
    /// reports them).
    pub missing_blobs: u64,
}

impl Usage {
    fn from_raw(r: crate::repo_abi::RawUsage) -> Self {
        Usage {
            clients: r
                .clients
                .into_iter()
                .map(|c| ClientUsage {
                    name: c.name.into_string(),
                    generations: c.generations,
                    checkpoints: c.checkpoints,
                    latest_files: c.latest_files,
                    latest_bytes: c.latest_bytes,
                    logical_bytes: c.logical_bytes,
                    blobs: c.blobs,
                    stored_bytes: c.stored_bytes,
                })
                .collect(),
            packs: r.packs,
            pack_bytes: r.pack_bytes,
            blobs: r.blobs,
            used_blobs: r.used_blobs,
            used_bytes: r.used_bytes,
            unused_packs: r.unused_packs,
            partly_used_packs: r.partly_used_packs,
            missing_blobs: r.missing_blobs,
        }
    }

    /// Bytes in packs that no generation needs (a prune with
    /// `--repack-threshold 0` would give them back).
    pub fn unused_bytes(&self) -> u64 {
        self.pack_bytes.saturating_sub(self.used_bytes)
    }

    /// Generations of every client.
    pub fn generations(&self) -> u64 {
        self.clients.iter().map(|c| c.generations).sum()
    }

    /// Bytes of file data over every generation of every client.
    pub fn logical_bytes(&self) -> u64 {
        self.clients.iter().map(|c| c.logical_bytes).sum()
    }
}

/// A plugin's progress function, as the host calls it.
struct ProgressFn<F>(F);

impl<F: Fn(PruneStep, u64, u64)> PruneProgressService for ProgressFn<F> {
    fn report(&self, step: u8, done: u64, total: u64) {
        let step = match step {
            0 => PruneStep::Walk,
            1 => PruneStep::Rewrite,
            _ => PruneStep::Delete,
        };
        (self.0)(step, done, total)
    }
}

fn path_bytes(path: &Path) -> RSlice<'_, u8> {
    RSlice::from_slice(path.as_os_str().as_bytes())
}

fn entries(raw: ROption<RVec<RawEntry>>) -> Option<Vec<Entry>> {
    raw.into_option()
        .map(|v| v.into_iter().map(Entry::from_raw).collect())
}

/// An open repository. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<RepositoryBox>,
}

impl Repository {
    pub(crate) fn new(inner: RepositoryBox) -> Self {
        Repository {
            inner: Arc::new(inner),
        }
    }

    /// The repository's random id.
    pub fn id(&self) -> String {
        self.inner.repository_id().into_string()
    }

    /// The repository's URL (without credentials).
    pub fn url(&self) -> String {
        self.inner.url().into_string()
    }

    /// The names of all clients.
    pub fn clients(&self) -> Result<Vec<String>> {
        Ok(unwrap_abi(self.inner.clients())?
            .into_iter()
            .map(RString::into_string)
            .collect())
    }

    /// Add a client (nothing happens if it exists).
    pub fn add_client(&self, name: &str) -> Result<()> {
        unwrap_abi(self.inner.add_client(RStr::from_str(name)))
    }

    /// Lock a client, waiting up to `--lock-timeout`. The host releases
    /// locks still held when the subcommand ends, whatever the outcome.
    pub fn lock_client(&self, name: &str) -> Result<()> {
        unwrap_abi(self.inner.lock_client(RStr::from_str(name)))
    }

    /// Lock a client for work that only removes generations and stores
    /// nothing (forget, remove-client), waiting up to `--lock-timeout`.
    /// Unlike [`lock_client`](Self::lock_client), a damaged prune plan
    /// does not stop it: such a run builds on no stored data, which is
    /// what a plan's deletions could take away. Released by
    /// [`unlock_client`](Self::unlock_client). Since 0.1.14.
    pub fn lock_client_for_removal(&self, name: &str) -> Result<()> {
        unwrap_abi(self.inner.lock_client_for_removal(RStr::from_str(name)))
    }

    /// What [`remove_client`](Self::remove_client) would remove, judged
    /// as it judges, removing nothing (for `--pretend`): the number of the
    /// client's generations, damaged records included, or the error it
    /// would give (there is no such client). A client known by a damaged
    /// record alone, which no listing names, counts. Since 0.1.20.
    pub fn client_removal_count(&self, name: &str) -> Result<u64> {
        unwrap_abi(self.inner.client_removal_count(RStr::from_str(name)))
    }

    /// Take a reader's lock on `client`'s generations, for a command that
    /// reads them (a restore, say): call it before listing or opening a
    /// generation. It keeps no other run away and waits for none, but a
    /// prune's deletion waits for it as for a backup, so that what the
    /// command reads is not deleted under it (a `forget` and `prune` of
    /// the generation being read). The host keeps it fresh while the
    /// run lasts (reading or idle) and releases it when the run ends.
    /// Fails if the lock cannot be written (a store the user may only
    /// read): the command may go on without it, saying so. Since 0.1.21.
    pub fn lock_for_reading(&self, client: &str) -> Result<()> {
        unwrap_abi(self.inner.lock_for_reading(RStr::from_str(client)))
    }

    /// Release a client's lock.
    pub fn unlock_client(&self, name: &str) -> Result<()> {
        unwrap_abi(self.inner.unlock_client(RStr::from_str(name)))
    }

    /// Take damaged or lost packs out of the repository, losing only
    /// their damaged blobs: each pack named (`packs/XX/ID`, as `fsck`
    /// names it) is read whole and every blob the index places in it
    /// checked against its id; if one does not check (or the pack is
    /// gone), the others are copied into new packs, the index objects
    /// that list the pack are replaced, and the pack is deleted. A backup
    /// that meets the dropped data again stores it anew (under the same
    /// id, mostly: older generations that used it then restore again).
    /// A pack whose blobs all check is left as it is. With `pretend`,
    /// only read and check. Hold the exclusive lock. Since 0.1.21.
    pub fn repair_packs(&self, names: &[String], pretend: bool) -> Result<RepairedPacks> {
        let names = names.iter().map(|n| RString::from(n.as_str())).collect();
        let raw = unwrap_abi(self.inner.repair_packs(names, pretend))?;
        Ok(RepairedPacks {
            packs: raw
                .packs
                .into_iter()
                .map(|p| RepairedPack {
                    key: p.key.into_string(),
                    gone: p.gone,
                    problem: p.problem.into_string(),
                    kept: p.kept,
                    kept_bytes: p.kept_bytes,
                    dropped: p.dropped.into_iter().map(RString::into_string).collect(),
                    replaced: p.replaced,
                })
                .collect(),
            index_objects_replaced: raw.index_objects_replaced,
        })
    }

    /// Write again the records (generation and client records, index
    /// objects) whose filter header one damaged byte made unreadable,
    /// with that byte undone: only those that then check (their checksum
    /// proves what was written); every other damaged record is left as
    /// it is, and returned in `left`. With `pretend`, only read them.
    /// Hold the exclusive lock unless pretending. Since 0.1.22.
    pub fn repair_records(&self, pretend: bool) -> Result<RepairedRecords> {
        let raw = unwrap_abi(self.inner.repair_records(pretend))?;
        Ok(RepairedRecords {
            repaired: raw
                .keys
                .into_iter()
                .zip(raw.problems)
                .map(|(key, problem)| RepairedRecord {
                    key: key.into_string(),
                    problem: problem.into_string(),
                })
                .collect(),
            left: raw.left.into_iter().map(RString::into_string).collect(),
            records: raw.records,
        })
    }

    /// Index the packs the store holds that no index object lists (an
    /// index object lost or removed), from the list of blobs at each
    /// pack's end, each blob checked against its id; with `pretend`, only
    /// read and check them. Hold the exclusive lock. Since 0.1.17.
    pub fn index_unlisted_packs(&self, pretend: bool) -> Result<Reindexed> {
        let raw = unwrap_abi(self.inner.index_unlisted_packs(pretend))?;
        Ok(Reindexed {
            unlisted_packs: raw.unlisted_packs,
            packs_indexed: raw.packs_indexed,
            blobs_indexed: raw.blobs_indexed,
            problems: raw.problems.into_iter().map(RString::into_string).collect(),
            damaged_removed: raw
                .damaged_removed
                .into_iter()
                .map(RString::into_string)
                .collect(),
        })
    }

    /// Take the whole repository for destructive work.
    pub fn lock_exclusive(&self) -> Result<()> {
        unwrap_abi(self.inner.lock_exclusive())
    }

    /// Release the exclusive lock.
    pub fn unlock_exclusive(&self) -> Result<()> {
        unwrap_abi(self.inner.unlock_exclusive())
    }

    /// Remove locks: a client's and the exclusive one, or all with `None`.
    /// Returns a description of each lock removed.
    pub fn force_unlock(&self, client: Option<&str>) -> Result<Vec<String>> {
        let client = client.map(RStr::from_str).into();
        Ok(unwrap_abi(self.inner.force_unlock(client))?
            .into_iter()
            .map(RString::into_string)
            .collect())
    }

    /// The token of some data.
    pub fn token(&self, data: &[u8]) -> Token {
        self.inner.token(RSlice::from_slice(data))
    }

    /// The stored copies of a token (chunks stored earlier in this run too).
    pub fn find_chunks(&self, token: Token) -> Vec<ChunkId> {
        self.inner.find_chunks(token).into_vec()
    }

    /// Store a new copy of a chunk.
    pub fn put_chunk(&self, token: Token, data: &[u8]) -> Result<ChunkId> {
        unwrap_abi(self.inner.put_chunk(token, RSlice::from_slice(data)))
    }

    /// A chunk's data, copied into a `Vec` of this plugin's allocator.
    pub fn get_chunk(&self, id: ChunkId) -> Result<Vec<u8>> {
        Ok(self.get_chunk_data(id)?.into_vec())
    }

    /// A chunk's data in the buffer the host read it into, not copied:
    /// for a plugin that only reads the bytes (a restore writes every
    /// chunk of the repository once, and the copy was a twentieth of its
    /// time). Dropping it frees it through the host's allocator. Since
    /// 0.1.8.
    pub fn get_chunk_data(&self, id: ChunkId) -> Result<RVec<u8>> {
        unwrap_abi(self.inner.get_chunk(id))
    }

    /// Whether a chunk is stored.
    pub fn has_chunk(&self, id: ChunkId) -> bool {
        self.inner.has_chunk(id)
    }

    /// A client's generations, oldest first.
    pub fn generations(&self, client: &str) -> Result<Vec<GenerationInfo>> {
        Ok(unwrap_abi(self.inner.generations(RStr::from_str(client)))?
            .into_iter()
            .map(GenerationInfo::from_raw)
            .collect())
    }

    /// Remove a generation.
    pub fn remove_generation(&self, client: &str, id: &str) -> Result<()> {
        unwrap_abi(
            self.inner
                .remove_generation(RStr::from_str(client), RStr::from_str(id)),
        )
    }

    /// Open a generation for reading.
    pub fn open_generation(&self, client: &str, id: &str) -> Result<GenerationReader> {
        let inner = unwrap_abi(
            self.inner
                .open_generation(RStr::from_str(client), RStr::from_str(id)),
        )?;
        Ok(GenerationReader { inner })
    }

    /// Start a client's next generation, from its latest one or from nothing.
    pub fn begin_generation(&self, client: &str, from_latest: bool) -> Result<GenerationBuilder> {
        let inner = unwrap_abi(
            self.inner
                .begin_generation(RStr::from_str(client), from_latest),
        )?;
        Ok(GenerationBuilder { inner })
    }

    /// Make every chunk stored so far durable.
    pub fn flush(&self) -> Result<()> {
        unwrap_abi(self.inner.flush())
    }

    /// Bytes this process has written to the repository.
    pub fn bytes_written(&self) -> u64 {
        self.inner.bytes_written()
    }

    /// Whether the repository is encrypted: sealed by a filter named in its
    /// config (see the `repository-open` hook).
    pub fn is_encrypted(&self) -> bool {
        self.inner.is_sealed()
    }

    /// The repository's key slots, `(id, text)`, sorted by id. Key slots
    /// are stored as they are, outside the data filters: they hold what an
    /// encryption plugin needs to unlock the repository.
    pub fn key_slots(&self) -> Result<Vec<(String, String)>> {
        let slots = unwrap_abi(self.inner.key_slots())?;
        Ok(slots
            .into_iter()
            .map(|s| (s.id.into_string(), s.text.into_string()))
            .collect())
    }

    /// Store a new key slot. `id` is 1 to 64 letters, digits, `-` or `_`;
    /// an existing slot is never replaced.
    pub fn put_key_slot(&self, id: &str, text: &str) -> Result<()> {
        unwrap_abi(self.inner.put_key_slot(id.into(), text.into()))
    }

    /// Remove a key slot.
    pub fn remove_key_slot(&self, id: &str) -> Result<()> {
        unwrap_abi(self.inner.remove_key_slot(id.into()))
    }

    /// Find the packs that the index lists but the storage no longer
    /// holds (lost to a disk error, say) or holds cut short (shorter, in
    /// the store's listing, than where the index places their blobs),
    /// and forget their chunks and trees: they count as absent from then
    /// on, so that a backup stores them again from the files that still
    /// have them. One listing of the packs. Returns `(packs, blobs)`
    /// forgotten.
    pub fn forget_missing_packs(&self) -> Result<(u64, u64)> {
        let found = unwrap_abi(self.inner.forget_missing_packs())?;
        Ok((found.packs, found.blobs))
    }

    /// Forget what the storage no longer holds, and nothing more: the
    /// chunks and trees of packs that are gone, and of packs cut short
    /// those that end past the cut (those before it still read; where
    /// [`forget_missing_packs`](Self::forget_missing_packs) forgets the
    /// whole pack, so that a backup builds nothing on it). Names nothing
    /// (for a check that names the packs itself, as fsck does, and then
    /// only the files that lost data). Returns `(packs, blobs)`, a pack
    /// cut short counting as one. Since 0.1.18.
    pub fn forget_lost_blobs(&self) -> Result<(u64, u64)> {
        let found = unwrap_abi(self.inner.forget_lost_blobs())?;
        Ok((found.packs, found.blobs))
    }

    /// Check the repository's objects as objects: index objects that could
    /// not be read, packs the index lists that are gone, and with
    /// `verify_data` every pack read whole, its own list of blobs compared
    /// with the index, and every blob checked against its id. Returns the
    /// problems (one line each), the packs and the blobs checked. With
    /// `verify_data`, a chunk read since
    /// [`remember_chunk_reads`](Self::remember_chunk_reads) is not decoded
    /// again where the index places it (since 0.1.9).
    pub fn check_objects(&self, verify_data: bool) -> Result<(Vec<String>, u64, u64)> {
        Self::object_report(unwrap_abi(self.inner.check_objects(verify_data))?)
    }

    /// [`check_objects`](Self::check_objects), except that the blobs in
    /// `verified` (chunks the caller read through
    /// [`get_chunk`](Self::get_chunk), which checks each against its id)
    /// are not decoded and checked again where their pack holds them at
    /// the place the index gives; they count as checked. For fsck, which
    /// reads every file's chunks first. Since 0.1.7.
    pub fn check_objects_except(
        &self,
        verify_data: bool,
        verified: &[ChunkId],
    ) -> Result<(Vec<String>, u64, u64)> {
        Self::object_report(unwrap_abi(
            self.inner
                .check_objects_except(verify_data, RSlice::from_slice(verified)),
        )?)
    }

    /// From now on, have the repository remember where each chunk read
    /// through [`get_chunk`](Self::get_chunk) or
    /// [`get_chunk_data`](Self::get_chunk_data) (and found good against
    /// its id) was stored, in 8 bytes a chunk, so that
    /// [`check_objects`](Self::check_objects) with `verify_data` does not
    /// decode it again. For fsck, which reads every file's chunks first.
    /// Since 0.1.9.
    pub fn remember_chunk_reads(&self) {
        self.inner.remember_chunk_reads()
    }

    /// How many distinct chunks were read since
    /// [`remember_chunk_reads`](Self::remember_chunk_reads), and not yet
    /// taken by a [`check_objects`](Self::check_objects). Since 0.1.9.
    pub fn chunks_read(&self) -> u64 {
        self.inner.chunks_read()
    }

    /// From now on, read every generation and client record from the
    /// repository, never from this machine's cache of them (a remote
    /// repository's records are cached beside the index): for a check,
    /// which must see what the repository holds. Since 0.1.10.
    pub fn read_records_from_store(&self) {
        self.inner.read_records_from_store()
    }

    /// The generation records of `client` that are damaged: left out of
    /// [`generations`](Self::generations), each with what is wrong with
    /// it. [`remove_generation`](Self::remove_generation) removes one by
    /// its id. Since 0.1.11.
    pub fn damaged_generations(&self, client: &str) -> Result<Vec<DamagedRecord>> {
        Ok(unwrap_abi(
            self.inner
                .damaged_generation_records(RStr::from_str(client)),
        )?
        .into_iter()
        .map(|r| DamagedRecord {
            id: r.id.into_string(),
            problem: r.problem.into_string(),
            repairable: r.repairable,
        })
        .collect())
    }

    fn object_report(report: RawObjectReport) -> Result<(Vec<String>, u64, u64)> {
        Ok((
            report
                .problems
                .into_iter()
                .map(RString::into_string)
                .collect(),
            report.packs_checked,
            report.blobs_checked,
        ))
    }
}

impl Repository {
    /// Remove every blob no generation of any client refers to: delete
    /// the packs with nothing used in them, and rewrite those whose
    /// unused share is over the threshold. Backups of every client may
    /// run meanwhile; the deletion waits for those that began before the
    /// prune decided (see `docs/repository-format.md`). `progress` is
    /// called as the prune goes.
    pub fn prune(
        &self,
        options: PruneOptions,
        progress: impl Fn(PruneStep, u64, u64),
    ) -> Result<PruneReport> {
        let raw = RawPruneOptions {
            repack_threshold: options.repack_threshold,
            pretend: options.pretend,
        };
        let progress = ProgressFn(progress);
        let progress: PruneProgressRef<'_> =
            PruneProgressService_TO::from_ptr(&progress, abi_stable::sabi_trait::TD_Opaque);
        Ok(PruneReport::from_raw(unwrap_abi(
            self.inner.prune(raw, progress),
        )?))
    }

    /// What a pretend [`prune`](Self::prune) would do once the
    /// generations `forgotten` (ids, of any client) are removed: what
    /// `forget --prune --pretend` reports, as the generations it would
    /// remove are still there. `options.pretend` must be set: a prune
    /// that deletes never leaves out a generation that is there. Since
    /// 0.1.12.
    pub fn prune_pretending_forgotten(
        &self,
        options: PruneOptions,
        forgotten: &[String],
        progress: impl Fn(PruneStep, u64, u64),
    ) -> Result<PruneReport> {
        if !options.pretend {
            crate::bail!("prune_pretending_forgotten: only a pretend prune leaves generations out");
        }
        let raw = RawPruneOptions {
            repack_threshold: options.repack_threshold,
            pretend: options.pretend,
        };
        let forgotten: Vec<RString> = forgotten
            .iter()
            .map(|id| RString::from(id.as_str()))
            .collect();
        let progress = ProgressFn(progress);
        let progress: PruneProgressRef<'_> =
            PruneProgressService_TO::from_ptr(&progress, abi_stable::sabi_trait::TD_Opaque);
        Ok(PruneReport::from_raw(unwrap_abi(
            self.inner
                .prune_pretending_forgotten(raw, RSlice::from_slice(&forgotten), progress),
        )?))
    }

    /// Where the repository's space goes: per client, its generations
    /// and what they cost in storage; for the repository, its packs and
    /// how much of them is used. Reads every generation's trees and the
    /// index; writes nothing and takes no lock. Since 0.1.4.
    pub fn usage(&self) -> Result<Usage> {
        Ok(Usage::from_raw(unwrap_abi(self.inner.usage())?))
    }

    /// The kind of whole-file checksum a backup records in this
    /// repository (see [`checksum`](crate::checksum)): the BLAKE3 block
    /// list in repositories of format version 4, SHA-256 in older ones,
    /// which older obnam must still read. Since 0.1.6.
    pub fn file_checksum_kind(&self) -> crate::checksum::ChecksumKind {
        crate::checksum::ChecksumKind::from_code(self.inner.file_checksum_kind())
    }

    /// Remove a client: every generation of it, then the client itself.
    /// The caller holds the client's lock. Returns how many generations
    /// were removed. Their data goes with the next prune.
    pub fn remove_client(&self, name: &str) -> Result<u64> {
        unwrap_abi(self.inner.remove_client(RStr::from_str(name)))
    }
}

/// Reads a committed generation by path.
pub struct GenerationReader {
    inner: GenerationReaderBox,
}

impl GenerationReader {
    /// The generation's description.
    pub fn info(&self) -> GenerationInfo {
        GenerationInfo::from_raw(self.inner.info())
    }

    /// The entry at an absolute path.
    pub fn lookup(&self, path: &Path) -> Result<Option<Entry>> {
        Ok(unwrap_abi(self.inner.lookup(path_bytes(path)))?
            .into_option()
            .map(Entry::from_raw))
    }

    /// The entries of a directory (`None` if it is not one).
    pub fn list_dir(&self, path: &Path) -> Result<Option<Vec<Entry>>> {
        Ok(entries(unwrap_abi(self.inner.list_dir(path_bytes(path)))?))
    }

    /// The id of the directory at an absolute path (`/` for the root), or
    /// `None` if it is not a directory in this generation. Directories
    /// are named by their content, all the way down: two with the same
    /// id, in this generation or another of the repository, hold the same
    /// entries with the same metadata and data, so a comparison can skip
    /// them unread. Since 0.1.4.
    pub fn subtree_id(&self, path: &Path) -> Result<Option<TreeId>> {
        Ok(unwrap_abi(self.inner.subtree_id(path_bytes(path)))?
            .into_option()
            .map(|id| TreeId(id.into_option())))
    }

    /// The time (ns since the epoch) from which an entry of this
    /// generation may have been recorded while its file was being
    /// changed, unseen: the start of the earliest run whose entries the
    /// generation holds, which is its own start unless it holds entries of
    /// an earlier generation unchecked (a checkpoint, for what its run had
    /// not reached; a folder a run could not list, kept as it was). A
    /// file whose modification or change time is not before this may have
    /// changed after it was read within the same tick of the file
    /// system's clock, and is read again by the next backup. Since 0.1.19.
    pub fn racy_from(&self) -> i64 {
        self.inner.racy_from()
    }
}

/// What a directory holds, as an id: equal ids mean equal subtrees (see
/// [`GenerationReader::subtree_id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreeId(Option<ChunkId>);

/// What [`Repository::repair_packs`] found in one pack and did with it.
/// Since 0.1.21.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairedPack {
    /// The pack's key, `packs/XX/ID`.
    pub key: String,
    /// Whether it cannot be read at all (the store no longer holds it,
    /// or what is there is not a file): all its blobs are dropped.
    pub gone: bool,
    /// What is wrong with the pack as a whole: why it cannot be read, or
    /// that its own list of blobs does not read (it then goes, its blobs
    /// copied, though every one checks). Empty if nothing is.
    pub problem: String,
    /// The blobs that check, copied into new packs (pretending: that
    /// would be).
    pub kept: u64,
    /// Their stored bytes.
    pub kept_bytes: u64,
    /// The blobs dropped, each described with what is wrong with it.
    pub dropped: Vec<String>,
    /// Whether the pack was deleted and dropped from the index
    /// (pretending: would be). A pack whose blobs all check stays.
    pub replaced: bool,
}

/// What [`Repository::repair_packs`] did. Since 0.1.21.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairedPacks {
    /// Each pack named, in order (a pack named twice once).
    pub packs: Vec<RepairedPack>,
    /// Index objects replaced (they listed a pack that went).
    pub index_objects_replaced: u64,
}

/// One record [`Repository::repair_records`] wrote again (or would).
/// Since 0.1.22.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairedRecord {
    /// Its key (`generations/CLIENT/ID`, `clients/ID`, `index/NAME`).
    pub key: String,
    /// What was wrong with it, and what undoing it took, in words.
    pub problem: String,
}

/// What [`Repository::repair_records`] found and did. Since 0.1.22.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairedRecords {
    /// The records written again (pretending: that would be).
    pub repaired: Vec<RepairedRecord>,
    /// Damaged records that cannot be repaired so, each with what is
    /// wrong with it: left as they are (`fsck` says what to do).
    pub left: Vec<String>,
    /// Records read.
    pub records: u64,
}

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
    /// Damaged index objects removed (`index/NAME`): once every pack is
    /// indexed whole, they list nothing the others do not.
    pub damaged_removed: Vec<String>,
}

/// A folder too large for a generation to hold whole (see
/// [`GenerationBuilder::take_left_out`]): the generation holds its first
/// `kept` entries in name order, of `entries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    /// The folder.
    pub path: PathBuf,
    /// How many entries it had in the backup.
    pub entries: u64,
    /// How many of them the generation holds.
    pub kept: u64,
    /// The name of the first entry left out (a file name, not a path).
    pub first_left_out: Vec<u8>,
}

/// Builds a client's next generation. See the host's documentation of the
/// builder: `put` what the walk finds, `finish_dir` each walked directory,
/// then `commit`.
pub struct GenerationBuilder {
    inner: GenerationBuilderBox,
}

impl GenerationBuilder {
    /// The generation this one starts from.
    pub fn previous_info(&self) -> Option<GenerationInfo> {
        self.inner
            .previous_info()
            .into_option()
            .map(GenerationInfo::from_raw)
    }

    /// The entry at `path` in the previous generation.
    pub fn previous(&self, path: &Path) -> Result<Option<Entry>> {
        Ok(unwrap_abi(self.inner.previous(path_bytes(path)))?
            .into_option()
            .map(Entry::from_raw))
    }

    /// A directory's entries in the previous generation.
    pub fn previous_dir(&self, path: &Path) -> Result<Option<Vec<Entry>>> {
        Ok(entries(unwrap_abi(
            self.inner.previous_dir(path_bytes(path)),
        )?))
    }

    /// Add or replace the entry at an absolute path.
    pub fn put(&self, path: &Path, entry: &Entry) -> Result<()> {
        unwrap_abi(self.inner.put(path_bytes(path), entry.to_raw()))
    }

    /// Remove the entry at a path, with its subtree.
    pub fn remove(&self, path: &Path) -> Result<()> {
        unwrap_abi(self.inner.remove(path_bytes(path)))
    }

    /// A directory's entries in the new generation as it stands.
    pub fn list(&self, path: &Path) -> Result<Option<Vec<Entry>>> {
        Ok(entries(unwrap_abi(self.inner.list(path_bytes(path)))?))
    }

    /// The directory at `path` has been walked: entries not put in this run
    /// are dropped and the directory is written out.
    pub fn finish_dir(&self, path: &Path) -> Result<()> {
        unwrap_abi(self.inner.finish_dir(path_bytes(path)))
    }

    /// Commit as a checkpoint (and go on) or as the final generation.
    pub fn commit(&self, checkpoint: bool) -> Result<GenerationInfo> {
        Ok(GenerationInfo::from_raw(unwrap_abi(
            self.inner.commit(checkpoint),
        )?))
    }

    /// Remove the checkpoints this builder committed.
    pub fn remove_checkpoints(&self) -> Result<u64> {
        unwrap_abi(self.inner.remove_checkpoints())
    }

    /// The folders too large for the generation to hold whole, since the
    /// last call: each holds its first entries in name order, as many as
    /// fit in one tree object (about a million of usual names), and the
    /// rest is not in the generation. Reported by
    /// [`finish_dir`](Self::finish_dir) (for the folder finished and its
    /// unfinished subfolders) and by the final [`commit`](Self::commit)
    /// (for the top folder); a backup reports each as an error, as it
    /// would a file it could not read. Since 0.1.17.
    pub fn take_left_out(&self) -> Result<Vec<LeftOut>> {
        Ok(unwrap_abi(self.inner.take_left_out())?
            .into_iter()
            .map(|raw| LeftOut {
                path: PathBuf::from(std::ffi::OsString::from_vec(raw.path.into_vec())),
                entries: raw.entries,
                kept: raw.kept,
                first_left_out: raw.first_left_out.into_vec(),
            })
            .collect())
    }

    /// [`GenerationReader::racy_from`] of the generation this one starts
    /// from. Since 0.1.19.
    pub fn previous_racy_from(&self) -> Option<i64> {
        self.inner.previous_racy_from().into_option()
    }

    /// Note that this run keeps entries of the previous generation that it
    /// did not check (a folder it could not list, [`put`](Self::put) as
    /// the previous generation had it): the generation then records the
    /// previous generation's [`GenerationReader::racy_from`] as its own,
    /// so that the next run judges those entries as this one would have.
    /// (A checkpoint does so anyway.) Since 0.1.19.
    pub fn carried_unread(&self) {
        self.inner.carried_unread()
    }

    /// Keep entries of the directory `dir` exactly as the generation this
    /// one starts from has them, given by name (files, not directories):
    /// what a backup does with an unchanged file, as one call for many
    /// rather than a [`put`](Self::put) of each. A name is kept only if
    /// the builder still holds it as it was (not put, removed or replaced
    /// in this run) and it is not a directory; returns the positions in
    /// `names` of those it did not keep, which the caller puts instead.
    /// Since 0.1.8.
    pub fn keep(&self, dir: &Path, names: &[&[u8]]) -> Result<Vec<usize>> {
        let mut joined = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for name in names {
            if name.is_empty() || name.contains(&0) || name.contains(&b'/') {
                return Err(crate::Error::msg(format!(
                    "cannot keep \"{}\": not a file name",
                    crate::names::escape(name)
                )));
            }
            joined.extend_from_slice(name);
            joined.push(0);
        }
        Ok(unwrap_abi(
            self.inner
                .keep(path_bytes(dir), RSlice::from_slice(&joined)),
        )?
        .into_iter()
        .map(|i| i as usize)
        .collect())
    }
}
