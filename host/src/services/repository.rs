//! The repository service offered to plugins: the engine's repository,
//! generation readers and builders behind the boundary's traits
//! ([`plugin_api::repo_abi`]). Values cross by [`convert`](super::convert).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plugin_api::abi::AbiResult;
use plugin_api::guard::guarded;
use plugin_api::repo_abi::{
    self as abi, generation_builder_box, generation_reader_box, GenerationBuilderBox,
    GenerationBuilderService, GenerationReaderBox, GenerationReaderService, RawDamagedRecord,
    RawEntry, RawGeneration, RawLeftOut, RawUsage, RepositoryService,
};
use plugin_api::types::{ROption, RSlice, RStr, RString, RVec};
use plugin_api::Error;

use obnam_repository::generation::{GenerationBuilder, GenerationReader};
use obnam_repository::prune::{PruneOptions, PruneStep};
use obnam_repository::tokens::TokenFunction;
use obnam_repository::{RepoError, Repository};
use plugin_api::checksum::ChecksumKind;

use super::convert::Convert;

/// What the user is told when a service method that has no error to
/// return met a bug in obnam.
pub const BUG_MESSAGE: &str = "internal error (a bug in obnam) in a repository service";

fn err(e: RepoError) -> Error {
    Error::msg(e)
}

/// Whether a repository service method with no error to return met a bug
/// (a caught panic) in this run. Such a method cannot report it through
/// its result, so it returns a default value and records the bug here;
/// from then on the repository writes nothing and every service method
/// that can fail does, and the run ends as a bug (see [`crate::run`]).
#[derive(Debug, Default)]
pub struct ServiceBug(AtomicBool);

impl ServiceBug {
    /// Whether a bug was met.
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the services of one repository share: the repository, and the
/// record of a bug in any of them.
#[derive(Clone)]
struct Shield {
    repo: Arc<Repository>,
    bug: Arc<ServiceBug>,
}

impl Shield {
    /// Run a method that has no error to return. A panic in it (a bug in
    /// obnam) must not unwind into the plugin: it is recorded, writes stop,
    /// and the method returns a default value.
    fn no_panic<T: Default>(&self, f: impl FnOnce() -> T) -> T {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => v,
            Err(_) => {
                self.bug.0.store(true, Ordering::SeqCst);
                tracing::debug!("{BUG_MESSAGE}; the repository writes nothing more");
                self.repo.stop_writes();
                T::default()
            }
        }
    }

    /// Run an engine call for a method that can fail: its error becomes
    /// the plugin's error, its value the ABI's form of it.
    fn call<T: Convert<U>, U>(&self, f: impl FnOnce() -> Result<T, RepoError>) -> AbiResult<U> {
        self.guarded(|| Ok(f().map_err(err)?.convert()))
    }

    /// Run a method that can fail, failing at once after a bug.
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> AbiResult<T> {
        guarded(|| {
            if self.bug.happened() {
                return Err(Error::msg(BUG_MESSAGE));
            }
            f()
        })
    }
}

/// The repository service handed to plugins.
pub struct RepoService {
    shield: Shield,
    lock_timeout: Duration,
}

impl RepoService {
    /// The service over an open repository; a bug in it is recorded in `bug`.
    pub fn new(repo: Arc<Repository>, lock_timeout: Duration, bug: Arc<ServiceBug>) -> Self {
        RepoService {
            shield: Shield { repo, bug },
            lock_timeout,
        }
    }

    fn repo(&self) -> &Repository {
        &self.shield.repo
    }
}

impl RepositoryService for RepoService {
    fn repository_id(&self) -> RString {
        self.shield
            .no_panic(|| self.repo().config().id.as_str().convert())
    }

    fn url(&self) -> RString {
        self.shield.no_panic(|| self.repo().url().convert())
    }

    fn clients(&self) -> AbiResult<RVec<RString>> {
        self.shield.call(|| self.repo().clients())
    }

    fn add_client(&self, name: RStr<'_>) -> AbiResult<()> {
        self.shield.call(|| self.repo().add_client(name.as_str()))
    }

    fn lock_client(&self, name: RStr<'_>) -> AbiResult<()> {
        self.shield
            .call(|| self.repo().lock_client(name.as_str(), self.lock_timeout))
    }

    fn lock_client_for_removal(&self, name: RStr<'_>) -> AbiResult<()> {
        self.shield.call(|| {
            self.repo()
                .lock_client_for_removal(name.as_str(), self.lock_timeout)
        })
    }

    fn index_unlisted_packs(&self, pretend: bool) -> AbiResult<abi::RawReindexed> {
        self.shield.guarded(|| {
            let done = self
                .repo()
                .index_unlisted_packs(pretend, self.lock_timeout)
                .map_err(err)?;
            Ok(abi::RawReindexed {
                unlisted_packs: done.unlisted_packs,
                packs_indexed: done.packs_indexed,
                blobs_indexed: done.blobs_indexed,
                problems: done.problems.into_iter().map(RString::from).collect(),
                damaged_removed: done
                    .damaged_removed
                    .into_iter()
                    .map(RString::from)
                    .collect(),
            })
        })
    }
    fn unlock_client(&self, name: RStr<'_>) -> AbiResult<()> {
        self.shield
            .call(|| self.repo().unlock_client(name.as_str()))
    }

    fn lock_exclusive(&self) -> AbiResult<()> {
        self.shield
            .call(|| self.repo().lock_exclusive(self.lock_timeout))
    }

    fn unlock_exclusive(&self) -> AbiResult<()> {
        self.shield.call(|| self.repo().unlock_exclusive())
    }

    fn force_unlock(&self, client: ROption<RStr<'_>>) -> AbiResult<RVec<RString>> {
        self.shield.guarded(|| {
            let client = client.into_option().map(|c| c.as_str().to_string());
            Ok(self
                .repo()
                .force_unlock(client.as_deref())
                .map_err(err)?
                .convert())
        })
    }

    fn token(&self, data: RSlice<'_, u8>) -> abi::Token {
        self.shield
            .no_panic(|| self.repo().token(data.as_slice()).convert())
    }

    fn find_chunks(&self, token: abi::Token) -> RVec<abi::ChunkId> {
        self.shield
            .no_panic(|| self.repo().find_chunks(&token.convert()).convert())
    }

    fn put_chunk(&self, token: abi::Token, data: RSlice<'_, u8>) -> AbiResult<abi::ChunkId> {
        self.shield.guarded(|| {
            let id = self
                .repo()
                .put_chunk(token.convert(), data.as_slice())
                .map_err(err)?;
            Ok(id.convert())
        })
    }

    fn get_chunk(&self, id: abi::ChunkId) -> AbiResult<RVec<u8>> {
        self.shield.call(|| self.repo().get_chunk(&id.convert()))
    }

    fn has_chunk(&self, id: abi::ChunkId) -> bool {
        self.shield
            .no_panic(|| self.repo().has_chunk(&id.convert()))
    }

    fn generations(&self, client: RStr<'_>) -> AbiResult<RVec<RawGeneration>> {
        self.shield
            .call(|| self.repo().generations(client.as_str()))
    }

    fn remove_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<()> {
        self.shield
            .call(|| self.repo().remove_generation(client.as_str(), id.as_str()))
    }

    fn open_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<GenerationReaderBox> {
        self.shield.guarded(|| {
            let gen = self
                .repo()
                .generation(client.as_str(), id.as_str())
                .map_err(err)?;
            let reader = GenerationReader::new(self.shield.repo.clone(), gen);
            Ok(generation_reader_box(ReaderService {
                reader,
                shield: self.shield.clone(),
            }))
        })
    }

    fn begin_generation(
        &self,
        client: RStr<'_>,
        from_latest: bool,
    ) -> AbiResult<GenerationBuilderBox> {
        self.shield.guarded(|| {
            let builder =
                GenerationBuilder::new(self.shield.repo.clone(), client.as_str(), from_latest)
                    .map_err(err)?;
            Ok(generation_builder_box(BuilderService {
                builder,
                shield: self.shield.clone(),
            }))
        })
    }

    fn flush(&self) -> AbiResult<()> {
        self.shield.call(|| self.repo().flush())
    }

    fn bytes_written(&self) -> u64 {
        self.shield.no_panic(|| self.repo().bytes_written())
    }

    fn key_slots(&self) -> AbiResult<RVec<abi::RawKeySlot>> {
        self.shield.call(|| self.repo().key_slots())
    }

    fn put_key_slot(&self, id: RStr<'_>, text: RStr<'_>) -> AbiResult<()> {
        self.shield
            .call(|| self.repo().put_key_slot(id.as_str(), text.as_str()))
    }

    fn remove_key_slot(&self, id: RStr<'_>) -> AbiResult<()> {
        self.shield
            .call(|| self.repo().remove_key_slot(id.as_str()))
    }

    fn is_sealed(&self) -> bool {
        self.shield.no_panic(|| self.repo().is_sealed())
    }

    fn forget_missing_packs(&self) -> AbiResult<abi::RawMissingPacks> {
        self.shield.call(|| self.repo().forget_missing_packs())
    }

    fn forget_lost_blobs(&self) -> AbiResult<abi::RawMissingPacks> {
        self.shield.call(|| self.repo().forget_lost_blobs())
    }

    fn lock_for_reading(&self, client: RStr<'_>) -> AbiResult<()> {
        self.shield
            .call(|| self.shield.repo.lock_reading(client.as_str()))
    }

    fn repair_packs(
        &self,
        names: RVec<RString>,
        pretend: bool,
    ) -> AbiResult<abi::RawRepairedPacks> {
        self.shield.guarded(|| {
            let names: Vec<String> = names.into_iter().map(RString::into_string).collect();
            let done = self
                .repo()
                .salvage_packs(&names, pretend, self.lock_timeout)
                .map_err(err)?;
            Ok(abi::RawRepairedPacks {
                packs: done
                    .packs
                    .into_iter()
                    .map(|p| abi::RawRepairedPack {
                        key: p.key.into(),
                        gone: p.gone,
                        problem: p.problem.into(),
                        kept: p.kept,
                        kept_bytes: p.kept_bytes,
                        dropped: p.dropped.into_iter().map(RString::from).collect(),
                        replaced: p.replaced,
                    })
                    .collect(),
                index_objects_replaced: done.index_objects_replaced,
            })
        })
    }

    fn repair_records(&self, pretend: bool) -> AbiResult<abi::RawRepairedRecords> {
        self.shield.guarded(|| {
            let done = self
                .repo()
                .repair_records(pretend, self.lock_timeout)
                .map_err(err)?;
            let (keys, problems) = done
                .repaired
                .into_iter()
                .map(|r| (RString::from(r.key), RString::from(r.problem)))
                .unzip();
            Ok(abi::RawRepairedRecords {
                keys,
                problems,
                left: done.left.into_iter().map(RString::from).collect(),
                records: done.records,
            })
        })
    }

    fn client_removal_count(&self, name: RStr<'_>) -> AbiResult<u64> {
        self.shield
            .call(|| self.repo().client_removal_count(name.as_str()))
    }

    fn check_objects(&self, verify_data: bool) -> AbiResult<abi::RawObjectReport> {
        self.shield.call(|| self.repo().check_objects(verify_data))
    }

    fn prune(
        &self,
        options: abi::RawPruneOptions,
        progress: abi::PruneProgressRef<'_>,
    ) -> AbiResult<abi::RawPruneReport> {
        self.prune_pretending_forgotten(options, RSlice::from_slice(&[]), progress)
    }

    fn prune_pretending_forgotten(
        &self,
        options: abi::RawPruneOptions,
        forgotten: RSlice<'_, RString>,
        progress: abi::PruneProgressRef<'_>,
    ) -> AbiResult<abi::RawPruneReport> {
        let options = PruneOptions {
            repack_threshold: options.repack_threshold.min(100),
            pretend: options.pretend,
            lock_timeout: self.lock_timeout,
            pretend_forgotten: forgotten.iter().map(|id| id.to_string()).collect(),
        };
        self.shield.call(|| {
            self.repo().prune(&options, &mut |step, done, total| {
                let step = match step {
                    PruneStep::Walk => 0,
                    PruneStep::Rewrite => 1,
                    PruneStep::Delete => 2,
                };
                progress.report(step, done, total)
            })
        })
    }

    fn remove_client(&self, name: RStr<'_>) -> AbiResult<u64> {
        self.shield
            .call(|| self.repo().remove_client(name.as_str()))
    }

    fn usage(&self) -> AbiResult<RawUsage> {
        self.shield.call(|| self.repo().usage())
    }

    fn check_objects_except(
        &self,
        verify_data: bool,
        verified: RSlice<'_, abi::ChunkId>,
    ) -> AbiResult<abi::RawObjectReport> {
        let verified: HashSet<obnam_repository::ids::ChunkId> =
            verified.iter().map(|id| (*id).convert()).collect();
        self.shield
            .call(|| self.repo().check_objects_except(verify_data, &verified))
    }

    fn remember_chunk_reads(&self) {
        self.shield.no_panic(|| self.repo().remember_chunk_reads())
    }

    fn chunks_read(&self) -> u64 {
        self.shield.no_panic(|| self.repo().chunks_read())
    }

    fn read_records_from_store(&self) {
        self.shield
            .no_panic(|| self.repo().read_records_from_store())
    }

    fn damaged_generations(&self, client: RStr<'_>) -> AbiResult<RVec<RawDamagedRecord>> {
        self.shield.call(|| {
            self.repo()
                .damaged_generations(client.as_str())
                .map(|damaged| {
                    damaged
                        .into_iter()
                        .map(|d| RawDamagedRecord {
                            id: d.id.into(),
                            // A plugin built before `repairable` was said
                            // is told the remedy in the problem's words.
                            problem: match d.repairable {
                                true => format!(
                                    "{}; {}",
                                    d.problem,
                                    obnam_repository::damaged_records::REPAIR_ADVICE
                                ),
                                false => d.problem,
                            }
                            .into(),
                        })
                        .collect::<RVec<_>>()
                })
        })
    }

    fn damaged_generation_records(
        &self,
        client: RStr<'_>,
    ) -> AbiResult<RVec<abi::RawDamagedGeneration>> {
        self.shield.call(|| {
            self.repo()
                .damaged_generations(client.as_str())
                .map(|damaged| {
                    damaged
                        .into_iter()
                        .map(|d| abi::RawDamagedGeneration {
                            id: d.id.into(),
                            problem: d.problem.into(),
                            repairable: d.repairable,
                        })
                        .collect::<RVec<_>>()
                })
        })
    }

    fn file_checksum_kind(&self) -> u8 {
        // Whole-file checksums change with tokens, at format version 4:
        // an older obnam reading a version 3 repository must find SHA-256.
        self.shield.no_panic(|| {
            match TokenFunction::of(self.repo().config()) {
                TokenFunction::Blake3 => ChecksumKind::Blake3Blocks,
                TokenFunction::Sha256 => ChecksumKind::Sha256,
            }
            .code()
        })
    }
}

struct ReaderService {
    reader: GenerationReader,
    shield: Shield,
}

impl GenerationReaderService for ReaderService {
    fn info(&self) -> RawGeneration {
        self.shield.no_panic(|| self.reader.generation().convert())
    }

    fn lookup(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>> {
        self.shield.call(|| self.reader.lookup(path.as_slice()))
    }

    fn list_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>> {
        self.shield.call(|| self.reader.list_dir(path.as_slice()))
    }

    fn subtree_id(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<ROption<abi::ChunkId>>> {
        self.shield.call(|| self.reader.subtree_id(path.as_slice()))
    }

    fn racy_from(&self) -> i64 {
        self.shield
            .no_panic(|| self.reader.generation().racy_from())
    }
}

struct BuilderService {
    builder: GenerationBuilder,
    shield: Shield,
}

impl GenerationBuilderService for BuilderService {
    fn previous_info(&self) -> ROption<RawGeneration> {
        self.shield
            .no_panic(|| self.builder.previous_generation().convert())
    }

    fn previous(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>> {
        self.shield.call(|| self.builder.previous(path.as_slice()))
    }

    fn previous_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>> {
        self.shield
            .call(|| self.builder.previous_dir(path.as_slice()))
    }

    fn put(&self, path: RSlice<'_, u8>, entry: RawEntry) -> AbiResult<()> {
        self.shield
            .call(|| self.builder.put(path.as_slice(), entry.convert()))
    }

    fn remove(&self, path: RSlice<'_, u8>) -> AbiResult<()> {
        self.shield.call(|| self.builder.remove(path.as_slice()))
    }

    fn list(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>> {
        self.shield.call(|| self.builder.list(path.as_slice()))
    }

    fn finish_dir(&self, path: RSlice<'_, u8>) -> AbiResult<()> {
        self.shield
            .call(|| self.builder.finish_dir(path.as_slice()))
    }

    fn commit(&self, checkpoint: bool) -> AbiResult<RawGeneration> {
        self.shield.call(|| self.builder.commit(checkpoint))
    }

    fn remove_checkpoints(&self) -> AbiResult<u64> {
        self.shield.call(|| self.builder.remove_checkpoints())
    }

    fn keep(&self, dir: RSlice<'_, u8>, names: RSlice<'_, u8>) -> AbiResult<RVec<u32>> {
        self.shield.guarded(|| {
            // Each name ends with a zero byte: nothing, or a list whose
            // last name is not ended, is refused rather than read as no
            // names (which would keep nothing and refuse nothing).
            let names = match names.as_slice() {
                [] => None,
                [.., 0] => names.as_slice().strip_suffix(&[0]),
                _ => return Err(Error::msg("keep: the names do not end with a zero byte")),
            };
            let names = names.map(|n| n.split(|b| *b == 0)).into_iter().flatten();
            let refused = self.builder.keep(dir.as_slice(), names).map_err(err)?;
            Ok(refused.into_iter().collect())
        })
    }

    fn take_left_out(&self) -> AbiResult<RVec<RawLeftOut>> {
        self.shield.guarded(|| {
            Ok(self
                .builder
                .take_left_out()
                .into_iter()
                .map(|left| RawLeftOut {
                    path: left.path.into(),
                    entries: left.entries as u64,
                    kept: left.kept as u64,
                    first_left_out: left.first_left_out.into(),
                })
                .collect())
        })
    }

    fn previous_racy_from(&self) -> ROption<i64> {
        self.shield.no_panic(|| {
            self.builder
                .previous_generation()
                .map(|g| g.racy_from())
                .into()
        })
    }

    fn carried_unread(&self) {
        self.shield.no_panic(|| self.builder.carried_unread())
    }
}
