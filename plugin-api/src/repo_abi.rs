//! The repository service at the boundary: layout-checked types and the
//! host-implemented traits behind [`Repository`](crate::Repository).
//!
//! Plugin authors use the safe wrappers in `repository.rs`; these types
//! are what crosses the boundary.

#![allow(non_local_definitions, non_camel_case_types)]

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    sabi_types::RRef,
    std_types::{RArc, ROption, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::failure::AbiResult;

/// A chunk's dedup key: a hash of its plain data with the function the
/// repository was created with (BLAKE3, or SHA-256 in repositories of
/// format version 3 and older), keyed once the repository is encrypted.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Token(pub [u8; 32]);

/// One stored copy of a chunk: its token and a variant (0 for the first copy).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ChunkId {
    /// The chunk's token (see [`Token`]).
    pub token: Token,
    /// 0 for the first stored copy of a token; another copy has a random non-zero variant.
    pub variant: u64,
}

/// The kind of a file-system object.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EntryKind {
    /// A regular file.
    File = 0,
    /// A directory.
    Dir = 1,
    /// A symbolic link.
    Symlink = 2,
    /// A named pipe.
    Fifo = 3,
    /// A Unix socket.
    Socket = 4,
    /// A character device.
    CharDevice = 5,
    /// A block device.
    BlockDevice = 6,
}

impl EntryKind {
    /// The kind an `st_mode` says (its file-type bits). Since 0.1.4.
    pub fn from_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o040000 => EntryKind::Dir,
            0o120000 => EntryKind::Symlink,
            0o010000 => EntryKind::Fifo,
            0o140000 => EntryKind::Socket,
            0o020000 => EntryKind::CharDevice,
            0o060000 => EntryKind::BlockDevice,
            _ => EntryKind::File,
        }
    }
}

/// An extended attribute.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug)]
pub struct RawXattr {
    /// Its name.
    pub name: RVec<u8>,
    /// Its value.
    pub value: RVec<u8>,
}

/// A generation's entry for one file-system object, as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug)]
pub struct RawEntry {
    /// Its name.
    pub name: RVec<u8>,
    /// What kind it is.
    pub kind: EntryKind,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Owner user name, where known.
    pub user: RString,
    /// Owner group name, where known.
    pub group: RString,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_ns: u32,
    /// Status-change time, seconds since the epoch.
    pub ctime: i64,
    /// Nanoseconds part of the status-change time.
    pub ctime_ns: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Device of the file system holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// A symlink's target.
    pub target: RVec<u8>,
    /// Extended attributes.
    pub xattrs: RVec<RawXattr>,
    /// A regular file's whole-file checksum (see [`checksum`](crate::checksum)).
    pub checksum: RVec<u8>,
    /// A regular file's chunks, in order.
    pub chunks: RVec<ChunkId>,
    /// For a directory: files (non-directories) in its subtree.
    pub subtree_files: u64,
    /// For a directory: bytes of file data in its subtree.
    pub subtree_bytes: u64,
}

/// A generation's description.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawGeneration {
    /// The generation id.
    pub id: RString,
    /// The client it belongs to.
    pub client: RString,
    /// Start of the run that made it, ns since the epoch.
    pub started_ns: i64,
    /// End of the run, ns since the epoch.
    pub ended_ns: i64,
    /// Files (non-directories) in it.
    pub file_count: u64,
    /// Bytes of file data in it.
    pub data_size: u64,
    /// Whether it is a checkpoint.
    pub is_checkpoint: bool,
}

/// Reads one committed generation.
#[sabi_trait]
pub trait GenerationReaderService: Send + Sync {
    /// The boundary form of [`GenerationReader::info`](crate::GenerationReader::info).
    fn info(&self) -> RawGeneration;
    /// The boundary form of [`GenerationReader::lookup`](crate::GenerationReader::lookup).
    fn lookup(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>>;
    #[sabi(last_prefix_field)]
    /// The boundary form of [`GenerationReader::list_dir`](crate::GenerationReader::list_dir).
    fn list_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>>;
    // Added in 0.1.4 (after the last prefix field: optional to older plugins).
    /// The boundary form of [`GenerationReader::subtree_id`](crate::GenerationReader::subtree_id):
    /// `RNone` if the path is no directory, `RSome(RNone)` for an empty
    /// directory stored without a tree.
    fn subtree_id(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<ROption<ChunkId>>>;
    // Added in 0.1.19.
    /// The boundary form of [`GenerationReader::racy_from`](crate::GenerationReader::racy_from).
    fn racy_from(&self) -> i64;
}

/// What [`Repository::forget_missing_packs`](crate::Repository::forget_missing_packs) found.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RawMissingPacks {
    /// Packs the index lists that the storage no longer holds.
    pub packs: u64,
    /// Chunks and trees that were in them.
    pub blobs: u64,
}

/// What [`Repository::check_objects`](crate::Repository::check_objects) found.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawObjectReport {
    /// One line per problem, naming the object.
    pub problems: RVec<RString>,
    /// Packs read whole and checked.
    pub packs_checked: u64,
    /// Blobs checked against their ids.
    pub blobs_checked: u64,
}

/// A generation reader handle.
pub type GenerationReaderBox = GenerationReaderService_TO<'static, RArc<()>>;

/// A generation reader as the handle handed to a plugin (for the host).
pub fn generation_reader_box<S: GenerationReaderService + 'static>(
    service: S,
) -> GenerationReaderBox {
    GenerationReaderService_TO::from_ptr(RArc::new(service), TD_Opaque)
}

/// Builds a client's next generation.
#[sabi_trait]
pub trait GenerationBuilderService: Send + Sync {
    /// The boundary form of [`GenerationBuilder::previous_info`](crate::GenerationBuilder::previous_info).
    fn previous_info(&self) -> ROption<RawGeneration>;
    /// The boundary form of [`GenerationBuilder::previous`](crate::GenerationBuilder::previous).
    fn previous(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>>;
    /// The boundary form of [`GenerationBuilder::previous_dir`](crate::GenerationBuilder::previous_dir).
    fn previous_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>>;
    /// The boundary form of [`GenerationBuilder::put`](crate::GenerationBuilder::put).
    fn put(&self, path: RSlice<'_, u8>, entry: RawEntry) -> AbiResult<()>;
    /// The boundary form of [`GenerationBuilder::remove`](crate::GenerationBuilder::remove).
    fn remove(&self, path: RSlice<'_, u8>) -> AbiResult<()>;
    /// The boundary form of [`GenerationBuilder::list`](crate::GenerationBuilder::list).
    fn list(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>>;
    /// The boundary form of [`GenerationBuilder::finish_dir`](crate::GenerationBuilder::finish_dir).
    fn finish_dir(&self, path: RSlice<'_, u8>) -> AbiResult<()>;
    /// The boundary form of [`GenerationBuilder::commit`](crate::GenerationBuilder::commit).
    fn commit(&self, checkpoint: bool) -> AbiResult<RawGeneration>;
    #[sabi(last_prefix_field)]
    /// The boundary form of [`GenerationBuilder::remove_checkpoints`](crate::GenerationBuilder::remove_checkpoints).
    fn remove_checkpoints(&self) -> AbiResult<u64>;
    // Added in 0.1.8.
    /// The boundary form of [`GenerationBuilder::keep`](crate::GenerationBuilder::keep):
    /// the names each end with a zero byte (no file name holds one); the
    /// answer is the positions of those not kept.
    fn keep(&self, dir: RSlice<'_, u8>, names: RSlice<'_, u8>) -> AbiResult<RVec<u32>>;
    // Added in 0.1.17.
    /// The boundary form of [`GenerationBuilder::take_left_out`](crate::GenerationBuilder::take_left_out).
    fn take_left_out(&self) -> AbiResult<RVec<RawLeftOut>>;
    // Added in 0.1.19.
    /// The boundary form of [`GenerationBuilder::previous_racy_from`](crate::GenerationBuilder::previous_racy_from).
    fn previous_racy_from(&self) -> ROption<i64>;
    /// The boundary form of [`GenerationBuilder::carried_unread`](crate::GenerationBuilder::carried_unread).
    fn carried_unread(&self);
}

/// The boundary form of [`LeftOut`](crate::LeftOut).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawLeftOut {
    /// The folder's path.
    pub path: RVec<u8>,
    /// How many entries it had.
    pub entries: u64,
    /// How many of them the generation holds.
    pub kept: u64,
    /// The name of the first entry left out.
    pub first_left_out: RVec<u8>,
}

/// A generation builder handle.
pub type GenerationBuilderBox = GenerationBuilderService_TO<'static, RArc<()>>;

/// A generation builder as the handle handed to a plugin (for the host).
pub fn generation_builder_box<S: GenerationBuilderService + 'static>(
    service: S,
) -> GenerationBuilderBox {
    GenerationBuilderService_TO::from_ptr(RArc::new(service), TD_Opaque)
}

/// The repository, as the host offers it.
#[sabi_trait]
pub trait RepositoryService: Send + Sync {
    /// The boundary form of [`Repository::id`](crate::Repository::id).
    fn repository_id(&self) -> RString;
    /// The boundary form of [`Repository::url`](crate::Repository::url).
    fn url(&self) -> RString;
    /// The boundary form of [`Repository::clients`](crate::Repository::clients).
    fn clients(&self) -> AbiResult<RVec<RString>>;
    /// The boundary form of [`Repository::add_client`](crate::Repository::add_client).
    fn add_client(&self, name: RStr<'_>) -> AbiResult<()>;
    /// The boundary form of [`Repository::lock_client`](crate::Repository::lock_client).
    fn lock_client(&self, name: RStr<'_>) -> AbiResult<()>;
    /// The boundary form of [`Repository::unlock_client`](crate::Repository::unlock_client).
    fn unlock_client(&self, name: RStr<'_>) -> AbiResult<()>;
    /// The boundary form of [`Repository::lock_exclusive`](crate::Repository::lock_exclusive).
    fn lock_exclusive(&self) -> AbiResult<()>;
    /// The boundary form of [`Repository::unlock_exclusive`](crate::Repository::unlock_exclusive).
    fn unlock_exclusive(&self) -> AbiResult<()>;
    /// The boundary form of [`Repository::force_unlock`](crate::Repository::force_unlock).
    fn force_unlock(&self, client: ROption<RStr<'_>>) -> AbiResult<RVec<RString>>;
    /// The boundary form of [`Repository::token`](crate::Repository::token).
    fn token(&self, data: RSlice<'_, u8>) -> Token;
    /// The boundary form of [`Repository::find_chunks`](crate::Repository::find_chunks).
    fn find_chunks(&self, token: Token) -> RVec<ChunkId>;
    /// The boundary form of [`Repository::put_chunk`](crate::Repository::put_chunk).
    fn put_chunk(&self, token: Token, data: RSlice<'_, u8>) -> AbiResult<ChunkId>;
    /// The boundary form of [`Repository::get_chunk`](crate::Repository::get_chunk).
    fn get_chunk(&self, id: ChunkId) -> AbiResult<RVec<u8>>;
    /// The boundary form of [`Repository::has_chunk`](crate::Repository::has_chunk).
    fn has_chunk(&self, id: ChunkId) -> bool;
    /// The boundary form of [`Repository::generations`](crate::Repository::generations).
    fn generations(&self, client: RStr<'_>) -> AbiResult<RVec<RawGeneration>>;
    /// The boundary form of [`Repository::remove_generation`](crate::Repository::remove_generation).
    fn remove_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<()>;
    /// The boundary form of [`Repository::open_generation`](crate::Repository::open_generation).
    fn open_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<GenerationReaderBox>;
    /// The boundary form of [`Repository::begin_generation`](crate::Repository::begin_generation).
    fn begin_generation(
        &self,
        client: RStr<'_>,
        from_latest: bool,
    ) -> AbiResult<GenerationBuilderBox>;
    /// The boundary form of [`Repository::flush`](crate::Repository::flush).
    fn flush(&self) -> AbiResult<()>;
    #[sabi(last_prefix_field)]
    /// The boundary form of [`Repository::bytes_written`](crate::Repository::bytes_written).
    fn bytes_written(&self) -> u64;
    // Added in 0.1.1 (after the last prefix field: optional to older plugins).
    /// The boundary form of [`Repository::key_slots`](crate::Repository::key_slots).
    fn key_slots(&self) -> AbiResult<RVec<RawKeySlot>>;
    /// The boundary form of [`Repository::put_key_slot`](crate::Repository::put_key_slot).
    fn put_key_slot(&self, id: RStr<'_>, text: RStr<'_>) -> AbiResult<()>;
    /// The boundary form of [`Repository::remove_key_slot`](crate::Repository::remove_key_slot).
    fn remove_key_slot(&self, id: RStr<'_>) -> AbiResult<()>;
    /// The boundary form of [`Repository::is_encrypted`](crate::Repository::is_encrypted).
    fn is_sealed(&self) -> bool;
    // Added in 0.1.2.
    /// The boundary form of [`Repository::forget_missing_packs`](crate::Repository::forget_missing_packs).
    fn forget_missing_packs(&self) -> AbiResult<RawMissingPacks>;
    /// The boundary form of [`Repository::check_objects`](crate::Repository::check_objects).
    fn check_objects(&self, verify_data: bool) -> AbiResult<RawObjectReport>;
    // Added in 0.1.3.
    /// The boundary form of [`Repository::prune`](crate::Repository::prune).
    fn prune(
        &self,
        options: RawPruneOptions,
        progress: PruneProgressRef<'_>,
    ) -> AbiResult<RawPruneReport>;
    /// The boundary form of [`Repository::remove_client`](crate::Repository::remove_client).
    fn remove_client(&self, name: RStr<'_>) -> AbiResult<u64>;
    // Added in 0.1.4.
    /// The boundary form of [`Repository::usage`](crate::Repository::usage).
    fn usage(&self) -> AbiResult<RawUsage>;
    // Added in 0.1.6.
    /// The boundary form of [`Repository::file_checksum_kind`](crate::Repository::file_checksum_kind):
    /// a [`ChecksumKind::code`](crate::checksum::ChecksumKind::code).
    fn file_checksum_kind(&self) -> u8;
    // Added in 0.1.7.
    /// The boundary form of [`Repository::check_objects_except`](crate::Repository::check_objects_except).
    fn check_objects_except(
        &self,
        verify_data: bool,
        verified: RSlice<'_, ChunkId>,
    ) -> AbiResult<RawObjectReport>;
    // Added in 0.1.9.
    /// The boundary form of [`Repository::remember_chunk_reads`](crate::Repository::remember_chunk_reads).
    fn remember_chunk_reads(&self);
    /// The boundary form of [`Repository::chunks_read`](crate::Repository::chunks_read).
    fn chunks_read(&self) -> u64;
    // Added in 0.1.10.
    /// The boundary form of [`Repository::read_records_from_store`](crate::Repository::read_records_from_store).
    fn read_records_from_store(&self);
    // Added in 0.1.11.
    /// The boundary form of [`Repository::damaged_generations`](crate::Repository::damaged_generations).
    fn damaged_generations(&self, client: RStr<'_>) -> AbiResult<RVec<RawDamagedRecord>>;
    // Added in 0.1.12.
    /// The boundary form of [`Repository::prune_pretending_forgotten`](crate::Repository::prune_pretending_forgotten).
    fn prune_pretending_forgotten(
        &self,
        options: RawPruneOptions,
        forgotten: RSlice<'_, RString>,
        progress: PruneProgressRef<'_>,
    ) -> AbiResult<RawPruneReport>;
    // Added in 0.1.14.
    /// The boundary form of [`Repository::lock_client_for_removal`](crate::Repository::lock_client_for_removal).
    fn lock_client_for_removal(&self, name: RStr<'_>) -> AbiResult<()>;
    // Added in 0.1.17.
    /// The boundary form of [`Repository::index_unlisted_packs`](crate::Repository::index_unlisted_packs).
    fn index_unlisted_packs(&self, pretend: bool) -> AbiResult<RawReindexed>;
    // Added in 0.1.18.
    /// The boundary form of [`Repository::forget_lost_blobs`](crate::Repository::forget_lost_blobs).
    fn forget_lost_blobs(&self) -> AbiResult<RawMissingPacks>;
    // Added in 0.1.20.
    /// The boundary form of [`Repository::client_removal_count`](crate::Repository::client_removal_count).
    fn client_removal_count(&self, name: RStr<'_>) -> AbiResult<u64>;
    // Added in 0.1.21.
    /// The boundary form of [`Repository::lock_for_reading`](crate::Repository::lock_for_reading).
    fn lock_for_reading(&self, client: RStr<'_>) -> AbiResult<()>;
    /// The boundary form of [`Repository::repair_packs`](crate::Repository::repair_packs).
    fn repair_packs(&self, names: RVec<RString>, pretend: bool) -> AbiResult<RawRepairedPacks>;
    // Added in 0.1.22.
    /// The boundary form of [`Repository::repair_records`](crate::Repository::repair_records).
    fn repair_records(&self, pretend: bool) -> AbiResult<RawRepairedRecords>;
    /// The boundary form of [`Repository::damaged_generations`](crate::Repository::damaged_generations)
    /// since 0.1.22 (whether `repair-records` undoes each one's damage).
    fn damaged_generation_records(&self, client: RStr<'_>)
        -> AbiResult<RVec<RawDamagedGeneration>>;
}

/// A damaged generation record at the boundary, since 0.1.22 (see
/// [`DamagedRecord`](crate::DamagedRecord)).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawDamagedGeneration {
    /// The generation's id.
    pub id: RString,
    /// What is wrong with it.
    pub problem: RString,
    /// Whether `repair-records` undoes its damage.
    pub repairable: bool,
}

/// The boundary form of [`RepairedRecords`](crate::RepairedRecords).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawRepairedRecords {
    /// The records written again: their keys.
    pub keys: RVec<RString>,
    /// What was wrong with each of `keys`, in the same order.
    pub problems: RVec<RString>,
    /// Damaged records left as they are, each with what is wrong.
    pub left: RVec<RString>,
    /// Records read.
    pub records: u64,
}

/// The boundary form of [`RepairedPack`](crate::RepairedPack).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawRepairedPack {
    /// The pack's key, `packs/XX/ID`.
    pub key: RString,
    /// Whether it cannot be read at all.
    pub gone: bool,
    /// What is wrong with the pack as a whole (empty: nothing).
    pub problem: RString,
    /// The blobs that check, copied.
    pub kept: u64,
    /// Their stored bytes.
    pub kept_bytes: u64,
    /// The blobs dropped, described.
    pub dropped: RVec<RString>,
    /// Whether the pack was deleted and dropped from the index.
    pub replaced: bool,
}

/// The boundary form of [`RepairedPacks`](crate::RepairedPacks).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawRepairedPacks {
    /// Each pack named, in order.
    pub packs: RVec<RawRepairedPack>,
    /// Index objects replaced.
    pub index_objects_replaced: u64,
}

/// The boundary form of [`Reindexed`](crate::Reindexed).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawReindexed {
    /// Packs the store holds that no index object listed.
    pub unlisted_packs: u64,
    /// Of those, the packs indexed from their own lists.
    pub packs_indexed: u64,
    /// The blobs indexed.
    pub blobs_indexed: u64,
    /// What could not be indexed.
    pub problems: RVec<RString>,
    /// Damaged index objects removed.
    pub damaged_removed: RVec<RString>,
}

/// A damaged record at the boundary (see
/// [`DamagedRecord`](crate::DamagedRecord)).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawDamagedRecord {
    /// The record's id (a generation id).
    pub id: RString,
    /// What is wrong with it.
    pub problem: RString,
}

/// One client's share of a repository, at the boundary (see
/// [`ClientUsage`](crate::ClientUsage)).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawClientUsage {
    /// The client's name.
    pub name: RString,
    /// Generations, checkpoints included.
    pub generations: u64,
    /// Of those, checkpoints.
    pub checkpoints: u64,
    /// Files in the newest generation.
    pub latest_files: u64,
    /// Bytes of file data in the newest generation.
    pub latest_bytes: u64,
    /// Bytes of file data summed over every generation.
    pub logical_bytes: u64,
    /// Blobs its generations refer to, each once.
    pub blobs: u64,
    /// Stored bytes of those blobs.
    pub stored_bytes: u64,
}

/// The space of a repository, at the boundary (see [`Usage`](crate::Usage)).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawUsage {
    /// Per client, by name.
    pub clients: RVec<RawClientUsage>,
    /// Packs stored.
    pub packs: u64,
    /// Bytes of the blobs the index lists in stored packs.
    pub pack_bytes: u64,
    /// Blobs the index lists in stored packs.
    pub blobs: u64,
    /// Blobs some generation refers to.
    pub used_blobs: u64,
    /// Stored bytes of those.
    pub used_bytes: u64,
    /// Packs with nothing used in them.
    pub unused_packs: u64,
    /// Packs partly used.
    pub partly_used_packs: u64,
    /// Blobs referred to that are in no stored pack.
    pub missing_blobs: u64,
}

/// How a prune is to run, at the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RawPruneOptions {
    /// Rewrite a pack whose unused bytes are more than this many percent (0 to 100).
    pub repack_threshold: u8,
    /// Decide and report only.
    pub pretend: bool,
}

/// What a prune did, at the boundary (see [`PruneReport`](crate::PruneReport)).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug, Default)]
pub struct RawPruneReport {
    /// Whether it only pretended.
    pub pretend: bool,
    /// Packs deleted (or to delete).
    pub packs_deleted: u64,
    /// Packs rewritten (or to rewrite).
    pub packs_rewritten: u64,
    /// Bytes of the packs deleted.
    pub bytes_freed: u64,
    /// Bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Index objects deleted.
    pub index_objects_deleted: u64,
    /// Whether the deletion waits for running backups.
    pub deferred: bool,
    /// How many runs it waits for.
    pub waiting_runs: u64,
    /// Plans of earlier prunes finished.
    pub finished_earlier_plans: u64,
    /// Plans of earlier prunes abandoned.
    pub abandoned_plans: u64,
    /// Planned packs kept for generations committed since the plan.
    pub packs_kept_for_new_generations: u64,
    /// Generations walked.
    pub generations: u64,
    /// Blobs referred to that are in no stored pack.
    pub missing_blobs: u64,
    /// Keys of the packs (to be) deleted with nothing used in them.
    pub delete: RVec<RString>,
    /// Keys of the packs (to be) rewritten.
    pub rewrite: RVec<RString>,
}

/// Where a prune reports its progress: implemented by the plugin that
/// runs it, called by the host.
#[sabi_trait]
pub trait PruneProgressService {
    /// Step (0: walking generations, 1: rewriting packs, 2: deleting),
    /// what is done of it, and its total.
    #[sabi(last_prefix_field)]
    fn report(&self, step: u8, done: u64, total: u64);
}

/// A prune progress handle, borrowed for the length of the call.
pub type PruneProgressRef<'a> = PruneProgressService_TO<'a, RRef<'a, ()>>;

/// A key slot at the boundary: its id and its text.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct RawKeySlot {
    /// The slot's id (letters, digits, `-`, `_`).
    pub id: RString,
    /// The slot's text, as its plugin wrote it.
    pub text: RString,
}

/// A repository handle.
pub type RepositoryBox = RepositoryService_TO<'static, RArc<()>>;

/// A repository as the handle handed to a plugin (for the host).
pub fn repository_box<S: RepositoryService + 'static>(service: S) -> RepositoryBox {
    RepositoryService_TO::from_ptr(RArc::new(service), TD_Opaque)
}

#[cfg(test)]
mod tests {
    use super::EntryKind;

    #[test]
    fn kinds_from_modes() {
        assert_eq!(EntryKind::from_mode(0o100644), EntryKind::File);
        assert_eq!(EntryKind::from_mode(0o040755), EntryKind::Dir);
        assert_eq!(EntryKind::from_mode(0o120777), EntryKind::Symlink);
        assert_eq!(EntryKind::from_mode(0o010644), EntryKind::Fifo);
        assert_eq!(EntryKind::from_mode(0o020600), EntryKind::CharDevice);
        assert_eq!(EntryKind::from_mode(0o060600), EntryKind::BlockDevice);
        assert_eq!(EntryKind::from_mode(0o140755), EntryKind::Socket);
    }
}
