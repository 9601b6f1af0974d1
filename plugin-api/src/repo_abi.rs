//! The repository service at the boundary: layout-checked types and the
//! host-implemented traits behind [`Repository`](crate::Repository).
//!
//! Plugin authors use the safe wrappers in `repository.rs`; these types
//! are what crosses the boundary.

#![allow(non_local_definitions, non_camel_case_types, missing_docs)]

use abi_stable::{
    sabi_trait,
    std_types::{RArc, ROption, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::abi::AbiResult;

/// A chunk's dedup key: SHA-256 of its plain data (keyed once the
/// repository is encrypted).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Token(pub [u8; 32]);

/// One stored copy of a chunk: its token and a variant (0 for the first copy).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ChunkId {
    pub token: Token,
    pub variant: u64,
}

/// The kind of a file-system object.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EntryKind {
    File = 0,
    Dir = 1,
    Symlink = 2,
    Fifo = 3,
    Socket = 4,
    CharDevice = 5,
    BlockDevice = 6,
}

/// An extended attribute.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug)]
pub struct RawXattr {
    pub name: RVec<u8>,
    pub value: RVec<u8>,
}

/// A generation's entry for one file-system object, as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug)]
pub struct RawEntry {
    pub name: RVec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: RString,
    pub group: RString,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub ctime: i64,
    pub ctime_ns: u32,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
    pub target: RVec<u8>,
    pub xattrs: RVec<RawXattr>,
    pub checksum: RVec<u8>,
    pub chunks: RVec<ChunkId>,
    pub subtree_files: u64,
    pub subtree_bytes: u64,
}

/// A generation's description.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Debug)]
pub struct RawGeneration {
    pub id: RString,
    pub client: RString,
    pub started_ns: i64,
    pub ended_ns: i64,
    pub file_count: u64,
    pub data_size: u64,
    pub is_checkpoint: bool,
}

/// Reads one committed generation.
#[sabi_trait]
pub trait GenerationReaderService: Send + Sync {
    fn info(&self) -> RawGeneration;
    fn lookup(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>>;
    #[sabi(last_prefix_field)]
    fn list_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>>;
}

/// A generation reader handle.
pub type GenerationReaderBox = GenerationReaderService_TO<'static, RArc<()>>;

/// Builds a client's next generation.
#[sabi_trait]
pub trait GenerationBuilderService: Send + Sync {
    fn previous_info(&self) -> ROption<RawGeneration>;
    fn previous(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RawEntry>>;
    fn previous_dir(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>>;
    fn put(&self, path: RSlice<'_, u8>, entry: RawEntry) -> AbiResult<()>;
    fn remove(&self, path: RSlice<'_, u8>) -> AbiResult<()>;
    fn list(&self, path: RSlice<'_, u8>) -> AbiResult<ROption<RVec<RawEntry>>>;
    fn finish_dir(&self, path: RSlice<'_, u8>) -> AbiResult<()>;
    fn commit(&self, checkpoint: bool) -> AbiResult<RawGeneration>;
    #[sabi(last_prefix_field)]
    fn remove_checkpoints(&self) -> AbiResult<u64>;
}

/// A generation builder handle.
pub type GenerationBuilderBox = GenerationBuilderService_TO<'static, RArc<()>>;

/// The repository, as the host offers it.
#[sabi_trait]
pub trait RepositoryService: Send + Sync {
    fn repository_id(&self) -> RString;
    fn url(&self) -> RString;
    fn clients(&self) -> AbiResult<RVec<RString>>;
    fn add_client(&self, name: RStr<'_>) -> AbiResult<()>;
    fn lock_client(&self, name: RStr<'_>) -> AbiResult<()>;
    fn unlock_client(&self, name: RStr<'_>) -> AbiResult<()>;
    fn lock_exclusive(&self) -> AbiResult<()>;
    fn unlock_exclusive(&self) -> AbiResult<()>;
    fn force_unlock(&self, client: ROption<RStr<'_>>) -> AbiResult<RVec<RString>>;
    fn token(&self, data: RSlice<'_, u8>) -> Token;
    fn find_chunks(&self, token: Token) -> RVec<ChunkId>;
    fn put_chunk(&self, token: Token, data: RSlice<'_, u8>) -> AbiResult<ChunkId>;
    fn get_chunk(&self, id: ChunkId) -> AbiResult<RVec<u8>>;
    fn has_chunk(&self, id: ChunkId) -> bool;
    fn generations(&self, client: RStr<'_>) -> AbiResult<RVec<RawGeneration>>;
    fn remove_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<()>;
    fn open_generation(&self, client: RStr<'_>, id: RStr<'_>) -> AbiResult<GenerationReaderBox>;
    fn begin_generation(
        &self,
        client: RStr<'_>,
        from_latest: bool,
    ) -> AbiResult<GenerationBuilderBox>;
    fn flush(&self) -> AbiResult<()>;
    #[sabi(last_prefix_field)]
    fn bytes_written(&self) -> u64;
}

/// A repository handle.
pub type RepositoryBox = RepositoryService_TO<'static, RArc<()>>;
