//! The repository engine offered to plugins: adapters from the engine's
//! types to the ABI's, and the data filters implemented with the
//! `repository-data` filter hook.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RSlice, RStr, RString, RVec},
};
use plugin_api::abi::AbiResult;
use plugin_api::guard::guarded;
use plugin_api::repo_abi::{
    self as abi, GenerationBuilderBox, GenerationBuilderService, GenerationBuilderService_TO,
    GenerationReaderBox, GenerationReaderService, GenerationReaderService_TO, RawEntry,
    RawGeneration, RawXattr, RepositoryService,
};
use plugin_api::Error;

use obnam_repository::generation::{Generation, GenerationBuilder, GenerationReader};
use obnam_repository::ids::{self, ChunkId};
use obnam_repository::object::{ObjectFilter, UnlockRequest, Unlocked};
use obnam_repository::tree::{EntryKind, StoredChunkId, TreeEntry};
use obnam_repository::{RepoError, Repository};

use super::Host;

/// The name of the filter hook every repository object passes through.
pub const DATA_FILTER_HOOK: &str = plugin_api::payloads::REPOSITORY_DATA;
use plugin_api::payloads::REPOSITORY_OPEN;

fn err(e: RepoError) -> Error {
    Error::msg(e)
}

/// Run a service method that has no error to return. A panic in it (a bug
/// in obnam) must not unwind into the plugin, and there is no way to report
/// it through the method's result: so it ends the process with the same
/// message and exit code as any other internal error.
fn no_panic<T>(f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("ERROR: internal error (a bug in obnam) in a repository service");
            std::process::exit(crate::EXIT_BUG);
        }
    }
}

fn chunk_to_abi(id: &ChunkId) -> abi::ChunkId {
    abi::ChunkId {
        token: abi::Token(id.token.0),
        variant: id.variant,
    }
}

fn chunk_from_abi(id: &abi::ChunkId) -> ChunkId {
    ChunkId {
        token: ids::Token(id.token.0),
        variant: id.variant,
    }
}

fn kind_to_abi(kind: EntryKind) -> abi::EntryKind {
    match kind {
        EntryKind::File => abi::EntryKind::File,
        EntryKind::Dir => abi::EntryKind::Dir,
        EntryKind::Symlink => abi::EntryKind::Symlink,
        EntryKind::Fifo => abi::EntryKind::Fifo,
        EntryKind::Socket => abi::EntryKind::Socket,
        EntryKind::CharDevice => abi::EntryKind::CharDevice,
        EntryKind::BlockDevice => abi::EntryKind::BlockDevice,
    }
}

fn kind_from_abi(kind: abi::EntryKind) -> EntryKind {
    match kind {
        abi::EntryKind::File => EntryKind::File,
        abi::EntryKind::Dir => EntryKind::Dir,
        abi::EntryKind::Symlink => EntryKind::Symlink,
        abi::EntryKind::Fifo => EntryKind::Fifo,
        abi::EntryKind::Socket => EntryKind::Socket,
        abi::EntryKind::CharDevice => EntryKind::CharDevice,
        abi::EntryKind::BlockDevice => EntryKind::BlockDevice,
    }
}

/// An engine entry at the boundary.
pub fn entry_to_abi(e: TreeEntry) -> RawEntry {
    RawEntry {
        name: e.name.into(),
        kind: kind_to_abi(e.kind),
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        user: e.user.into(),
        group: e.group.into(),
        size: e.size,
        mtime: e.mtime,
        mtime_ns: e.mtime_ns,
        ctime: e.ctime,
        ctime_ns: e.ctime_ns,
        nlink: e.nlink,
        dev: e.dev,
        ino: e.ino,
        rdev: e.rdev,
        target: e.target.into(),
        xattrs: e
            .xattrs
            .into_iter()
            .map(|(n, v)| RawXattr {
                name: n.into_vec().into(),
                value: v.into_vec().into(),
            })
            .collect(),
        checksum: e.checksum.into(),
        chunks: e.chunks.iter().map(|c| chunk_to_abi(&c.0)).collect(),
        subtree_files: e.subtree_files,
        subtree_bytes: e.subtree_bytes,
    }
}

/// A boundary entry for the engine. The subtree fields are the engine's
/// to fill in.
pub fn entry_from_abi(e: RawEntry) -> TreeEntry {
    TreeEntry {
        name: e.name.into_vec(),
        kind: kind_from_abi(e.kind),
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        user: e.user.into_string(),
        group: e.group.into_string(),
        size: e.size,
        mtime: e.mtime,
        mtime_ns: e.mtime_ns,
        ctime: e.ctime,
        ctime_ns: e.ctime_ns,
        nlink: e.nlink,
        dev: e.dev,
        ino: e.ino,
        rdev: e.rdev,
        target: e.target.into_vec(),
        xattrs: e
            .xattrs
            .into_iter()
            .map(|x| {
                (
                    serde_bytes::ByteBuf::from(x.name.into_vec()),
                    serde_bytes::ByteBuf::from(x.value.into_vec()),
                )
            })
            .collect(),
        checksum: e.checksum.into_vec(),
        chunks: e
            .chunks
            .iter()
            .map(|c| StoredChunkId(chunk_from_abi(c)))
            .collect(),
        subtree: None,
        subtree_files: 0,
        subtree_bytes: 0,
    }
}

fn generation_to_abi(g: &Generation) -> RawGeneration {
    RawGeneration {
        id: g.id.as_str().into(),
        client: g.client.as_str().into(),
        started_ns: g.started,
        ended_ns: g.ended,
        file_count: g.file_count,
        data_size: g.data_size,
        is_checkpoint: g.is_checkpoint,
    }
}

fn entries_to_abi(entries: Option<Vec<TreeEntry>>) -> ROption<RVec<RawEntry>> {
    entries
        .map(|v| v.into_iter().map(entry_to_abi).collect::<RVec<_>>())
        .into()
}

/// The data filters of the engine, run through the `repository-data` hook.
pub struct HookFilter {
    pub host: &'static Host,
}

impl ObjectFilter for HookFilter {
    fn encode(
        &self,
        context: &str,
        data: Vec<u8>,
        skip: Option<&str>,
    ) -> Result<(Vec<u8>, Vec<String>), String> {
        if !self.host.has_filters(DATA_FILTER_HOOK) {
            return Ok((data, Vec::new()));
        }
        let out = self
            .host
            .run_filter_write(DATA_FILTER_HOOK, context, RVec::from(data), skip)
            .map_err(|e| e.to_string())?;
        Ok((
            out.data.into_vec(),
            out.tags.into_iter().map(RString::into_string).collect(),
        ))
    }

    fn encode_with(
        &self,
        tag: &str,
        context: &str,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, String> {
        self.host
            .run_one_filter(DATA_FILTER_HOOK, tag, context, &data)
            .map(|out| out.map(RVec::into_vec))
            .map_err(|e| e.to_string())
    }

    fn decode(&self, context: &str, data: Vec<u8>, tags: &[String]) -> Result<Vec<u8>, String> {
        if tags.is_empty() {
            return Ok(data);
        }
        self.host
            .run_filter_read(DATA_FILTER_HOOK, context, RVec::from(data), tags)
            .map(RVec::into_vec)
            .map_err(|e| e.to_string())
    }

    fn provides(&self, tag: &str) -> bool {
        self.host.has_filter(DATA_FILTER_HOOK, tag)
    }

    /// Ask the plugins on the `repository-open` hook (see
    /// [`plugin_api::payloads::REPOSITORY_OPEN`]).
    fn unlock(&self, request: &UnlockRequest) -> Result<Unlocked, String> {
        let slots: serde_json::Map<String, serde_json::Value> = request
            .key_slots
            .iter()
            .map(|(id, text)| (id.clone(), serde_json::Value::String(text.clone())))
            .collect();
        let payload = serde_json::json!({
            "url": request.url,
            "repository_id": request.repository_id,
            "creating": request.creating,
            "seal": request.seal,
            "key_slots": slots,
        });
        let answer = self
            .host
            .call_json_hook(REPOSITORY_OPEN, payload)
            .map_err(|e| e.to_string())?;
        let bad = |what: &str| format!("hook {REPOSITORY_OPEN}: {what}");
        let token_key = match answer.get("token_key") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let bytes = v
                    .as_str()
                    .and_then(|t| hex::decode(t).ok())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad("token_key is not 64 hex digits"))?;
                Some(bytes)
            }
        };
        let seal = match answer.get("seal") {
            Some(v) if request.creating && !v.is_null() => Some(v.clone()),
            _ => None,
        };
        let mut new_key_slots = Vec::new();
        if let Some(v) = answer.get("new_key_slots").filter(|v| !v.is_null()) {
            let map = v
                .as_object()
                .ok_or_else(|| bad("new_key_slots is not an object"))?;
            for (id, text) in map {
                let text = text
                    .as_str()
                    .ok_or_else(|| bad("a new key slot is not text"))?;
                new_key_slots.push((id.clone(), text.to_string()));
            }
        }
        Ok(Unlocked {
            seal,
            new_key_slots,
            token_key,
        })
    }
}

/// The repository service handed to plugins.
pub struct RepoService {
    pub repo: Arc<Repository>,
    pub lock_timeout: Duration,
}

impl RepositoryService for RepoService {
    fn repository_id(&self) -> RString {
        no_panic(|| self.repo.config().id.as_str().into())
    }

    fn url(&self) -> RString {
        no_panic(|| self.repo.url().into())
    }

    fn clients(&self) -> AbiResult<RVec<RString>> {
        guarded(|| {
            Ok(self
                .repo
                .clients()
                .map_err(err)?
                .into_iter()
                .map(RString::from)
                .collect())
        })
    }

    fn add_client(&self, name: RStr<'_>) -> AbiResult<()> {
        guarded(|| self.repo.add_client(name.as_str()).map_err(err))
    }

    fn lock_client(&self, name: RStr<'_>) -> AbiResult<()> {
        guarded(|| {
            self.repo
                .lock_client(name.as_str(), self.lock_timeout)
                .map_err(err)
        })
    }

    fn unlock_client(&self, name: RStr<'_>) -> AbiResult<()> {
        guarded(|| self.repo.unlock_client(name.as_str()).map_err(err))
    }

    fn lock_exclusive(&self) -> AbiResult<()> {
        guarded(|| self.repo.lock_exclusive(self.lock_timeout).map_err(err))
    }

    fn unlock_exclusive(&self) -> AbiResult<()> {
        guarded(|| self.repo.unlock_exclusive().map_err(err))
    }

    fn force_unlock(&self, client: ROption<RStr<'_>>) -> AbiResult<RVec<RString>> {
        guarded(|| {
            let client = client.into_option().map(|c| c.as_str().to_string());
            Ok(self
                .repo
                .force_unlock(client.as_deref())
                .map_err(err)?
                .into_iter()
                .map(RString::from)
                .collect())
        })
    }

    fn token(&self, data: RSlice<'_, u8>) -> abi::Token {
        no_panic(|| abi::Token(self.repo.token(data.as_slice()).0))
    }

    fn find_chunks(&self, token: abi::Token) -> RVec<abi::ChunkId> {
        no_panic(|| {
            self.repo
                .find_chunks(&ids::Token(token.0))
                .iter()
                .map(chunk_to_abi)
                .collect()
        })
    }

    fn put_chunk(&self, token: abi::Token, data: RSlice<'_, u8>) -> AbiResult<abi::ChunkId> {
        guarded(|| {
            let id = self
                .repo
                .put_chunk(ids::Token(token.0), data.as_slice().to_vec())
                .map_err(err)?;
            Ok(chunk_to_abi(&id))
        })
    }

    fn get_chunk(&self, id: abi::ChunkId) -> AbiResult<RVec<u8>> {
        guarded(|| {
            Ok(self
                .repo
                .get_chunk(&chunk_from_abi(&id))
                .map_err(err)?
                .into())
        })
    }

    fn has_chunk(&self, id: abi::ChunkId) -> bool {
        no_panic(|| self.repo.has_chunk(&chunk_from_abi(&id)))
    }

    fn generations(&self, client: RStr<'_>) -> AbiResult<RVec<RawGeneration>> {
        guarded(|| {
            Ok(self
                .repo
                .generations(client.as_str())
                .map_err(err)?
                .iter()
                .map(generation_to_abi)
                .collect())
        })
    }

    fn remove_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<()> {
        guarded(|| {
            self.repo
                .remove_generation(client.as_str(), id.as_str())
                .map_err(err)
        })
    }

    fn open_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<GenerationReaderBox> {
        guarded(|| {
            let gen = self
                .repo
                .generation(client.as_str(), id.as_str())
                .map_err(err)?;
            let reader = GenerationReader::new(self.repo.clone(), gen);
            Ok(GenerationReaderService_TO::from_ptr(
                RArc::new(ReaderService { reader }),
                TD_Opaque,
            ))
        })
    }

    fn begin_generation(
        &self,
        client: RStr<'_>,
        from_latest: bool,
    ) -> AbiResult<GenerationBuilderBox> {
        guarded(|| {
            let builder = GenerationBuilder::new(self.repo.clone(), client.as_str(), from_latest)
                .map_err(err)?;
            Ok(GenerationBuilderService_TO::from_ptr(
                RArc::new(BuilderService { builder }),
                TD_Opaque,
            ))
        })
    }

    fn flush(&self) -> AbiResult<()> {
        guarded(|| self.repo.flush().map_err(err))
    }

    fn bytes_written(&self) -> u64 {
        no_panic(|| self.repo.bytes_written())
    }

    fn key_slots(&self) -> AbiResult<RVec<abi::RawKeySlot>> {
        guarded(|| {
            Ok(self
                .repo
                .key_slots()
                .map_err(err)?
                .into_iter()
                .map(|(id, text)| abi::RawKeySlot {
                    id: id.into(),
                    text: text.into(),
                })
                .collect())
        })
    }

    fn put_key_slot(&self, id: RStr<'_>, text: RStr<'_>) -> AbiResult<()> {
        guarded(|| {
            self.repo
                .put_key_slot(id.as_str(), text.as_str())
                .map_err(err)
        })
    }

    fn remove_key_slot(&self, id: RStr<'_>) -> AbiResult<()> {
        guarded(|| self.repo.remove_key_slot(id.as_str()).map_err(err))
    }

    fn is_sealed(&self) -> bool {
        no_panic(|| self.repo.is_sealed())
    }

    fn forget_missing_packs(&self) -> AbiResult<abi::RawMissingPacks> {
        guarded(|| {
            let found = self.repo.forget_missing_packs().map_err(err)?;
            Ok(abi::RawMissingPacks {
                packs: found.packs as u64,
                blobs: found.blobs as u64,
            })
        })
    }

    fn check_objects(&self, verify_data: bool) -> AbiResult<abi::RawObjectReport> {
        guarded(|| {
            let report = self.repo.check_objects(verify_data).map_err(err)?;
            Ok(abi::RawObjectReport {
                problems: report.problems.into_iter().map(RString::from).collect(),
                packs_checked: report.packs_checked,
                blobs_checked: report.blobs_checked,
            })
        })
    }
}

struct ReaderService {
    reader: GenerationReader,
}

impl GenerationReaderService for ReaderService {
    fn info(&self) -> RawGeneration {
        no_panic(|| generation_to_abi(self.reader.generation()))
    }

    fn lookup(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>> {
        guarded(|| {
            Ok(self
                .reader
                .lookup(path.as_slice())
                .map_err(err)?
                .map(entry_to_abi)
                .into())
        })
    }

    fn list_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>> {
        guarded(|| {
            Ok(entries_to_abi(
                self.reader.list_dir(path.as_slice()).map_err(err)?,
            ))
        })
    }
}

struct BuilderService {
    builder: GenerationBuilder,
}

impl GenerationBuilderService for BuilderService {
    fn previous_info(&self) -> ROption<RawGeneration> {
        self.builder
            .previous_generation()
            .map(generation_to_abi)
            .into()
    }

    fn previous(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>> {
        guarded(|| {
            Ok(self
                .builder
                .previous(path.as_slice())
                .map_err(err)?
                .map(entry_to_abi)
                .into())
        })
    }

    fn previous_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>> {
        guarded(|| {
            Ok(entries_to_abi(
                self.builder.previous_dir(path.as_slice()).map_err(err)?,
            ))
        })
    }

    fn put(&self, path: RSlice<'_, u8>, entry: RawEntry) -> AbiResult<()> {
        guarded(|| {
            self.builder
                .put(path.as_slice(), entry_from_abi(entry))
                .map_err(err)
        })
    }

    fn remove(&self, path: RSlice<'_, u8>) -> AbiResult<()> {
        guarded(|| self.builder.remove(path.as_slice()).map_err(err))
    }

    fn list(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>> {
        guarded(|| {
            Ok(entries_to_abi(
                self.builder.list(path.as_slice()).map_err(err)?,
            ))
        })
    }

    fn finish_dir(&self, path: RSlice<'_, u8>) -> AbiResult<()> {
        guarded(|| self.builder.finish_dir(path.as_slice()).map_err(err))
    }

    fn commit(&self, checkpoint: bool) -> AbiResult<RawGeneration> {
        guarded(|| {
            Ok(generation_to_abi(
                &self.builder.commit(checkpoint).map_err(err)?,
            ))
        })
    }

    fn remove_checkpoints(&self) -> AbiResult<u64> {
        guarded(|| Ok(self.builder.remove_checkpoints().map_err(err)? as u64))
    }
}
