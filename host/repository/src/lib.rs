//! The obnam repository engine: the repository format, and everything
//! that reads and writes it (storage, packs, the chunk index, trees,
//! generations, locks, key slots, checks).
//!
//! It knows nothing of plugins: it depends on no plugin machinery, and
//! sees the data filters (compression, encryption) only through its own
//! [`object::ObjectFilter`] trait. The host (crate `obnam-host`) opens a
//! [`Repository`] and offers it to plugins through its service layer
//! (`services::repository`), which converts between this crate's types
//! and the plugin ABI's. `docs/repository-format.md` is the reference for
//! what is stored; `docs/architecture.md` describes the engine's shape.
//!
//! # The objects
//!
//! A repository is a folder of objects (a local folder, a folder over
//! SFTP, or a prefix of an S3 bucket). Objects are written once and never
//! modified, under names unique to their writer, so concurrent writers
//! never overwrite each other:
//!
//! ```text
//! config                          bootstrap: format version, repository id, the seal (plain JSON)
//! keys/SLOTID                     key slots of a sealed repository ([`keys`])
//! packs/XX/PACKID                 blobs (file chunks, or trees) and a trailer listing them ([`pack`])
//! index/INDEXID                   where each blob is: pack, offset, length ([`index`])
//! clients/CLIENTID                one per client ([`Repository::add_client`])
//! generations/CLIENTID/GENID      one per committed generation, naming its root tree ([`generation`])
//! locks/KIND.ID                   one per lock held, its kind (and client) in its name ([`lock`])
//! creating/CLAIMID                only while a process creates the repository ([`creation`])
//! ```
//!
//! - **`config`** is the one object not passed through the data filters:
//!   it must be readable before anything else can be decoded. It is
//!   written once, with the store's create-if-absent where there is one,
//!   and never rewritten. Its `version` ([`FORMAT_VERSION`]) is checked
//!   at every open.
//! - **Key slots** hold the wrapped master key of a sealed (encrypted)
//!   repository; they are stored as the seal's plugin gives them.
//! - **Packs** hold blobs back to back, each a filtered object, and end
//!   with a filtered **trailer** that lists them; a pack holds blobs of
//!   one kind ([`index::BlobKind`]). Blobs are named by their content
//!   ([`ids::ChunkId`]: a token and a variant).
//! - **Index objects** list where each blob is; every index object is
//!   loaded into the index ([`index::Index`]) at the index's first use
//!   in a run (not at open, so that listing generations reads none): read once per
//!   machine into the local index cache ([`index_cache`]), whose sorted
//!   segment files a run reads a page at a time, so that its memory does
//!   not grow with the repository's chunks.
//! - **Trees** ([`tree`]) are blobs: one directory's entries, naming the
//!   chunks of each file and the tree of each subdirectory.
//! - **Generations** name the root tree of one backup, and **clients**
//!   the clients that have made them.
//! - **Locks** keep two runs from building one client's next generation
//!   at once, and destructive work away from running backups; the
//!   **creation claim** keeps two processes from creating one repository
//!   at once. Neither is needed for the consistency of the data.
//!
//! In format 3 every object not named by its content carries a checksum
//! bound to its name ([`object`]); blobs are checked against their ids.
//! Every decoder refuses a claimed size over the format's [`limits`]
//! before allocating for it.
//!
//! # The write order
//!
//! Nothing is ever updated in place, so what a crash can leave behind is
//! decided by the order in which objects appear:
//!
//! 1. **Creation**: the claim (`creating/`), then the key slots, then
//!    `config`, then the claim is removed. Until `config` exists there is
//!    no repository; a later creator removes stray key slots, and breaks
//!    a claim left behind as stale.
//! 2. **A backup** takes the client's lock, then stores blobs into packs.
//!    A full pack is written, and only then its index object. A commit
//!    ([`generation::GenerationBuilder::commit`]) writes the trees,
//!    flushes (writes the packs being filled and their index objects, and
//!    waits for those still being written), and only then writes the
//!    generation object. After the final commit, the index objects this
//!    run wrote are merged: the merged objects are written before the
//!    others are deleted. Then the checkpoints are removed and the lock
//!    released.
//!
//! So packs come before the index objects that list them, and both before
//! the generation that refers to their blobs. A crash at any moment
//! leaves the last committed generation whole; what it may leave besides
//! is unreferenced: packs without an index object, index objects no
//! generation needs, checkpoints, a stale lock or claim, a half-written
//! file in `.tmp/` that nothing reads. Two index objects may list the
//! same blob; a reader takes either.
//!
//! **Readers** take no lock and rely on that order instead: they load the
//! index objects at the index's first use, and, once loaded, load those
//! written since each time after they read generation objects ([`Repository::generations`],
//! [`Repository::generation`]). Every generation a reader has just read
//! is therefore complete in its index, even one a backup running beside
//! it committed after the reader opened the repository.
//!
//! # The modules, in dependency order
//!
//! - Foundations: [`limits`] (the format's size limits), [`ids`] (tokens,
//!   chunk, object and generation ids), [`error`] ([`RepoError`]),
//!   [`config`] (the `config` object and the format versions), [`clock`]
//!   (the time generations record).
//! - Storage: [`location`] (repository URLs), [`fault_injection`]
//!   (development: injected storage faults), [`backend`] (the
//!   [`backend::Backend`] trait, the [`backend::Capabilities`] the engine
//!   asks of a store, and one module per store: [`backend::local`],
//!   [`backend::sftp`] with the ssh processes of SFTP, [`backend::s3`]),
//!   [`storage`] (objects over OpenDAL, on a private tokio runtime, the
//!   same for every store: retries, reads, background writes, byte
//!   counts, the crash limit, injected faults).
//! - Stored forms: [`object`] (filter header, checksums, the
//!   [`object::ObjectFilter`] trait), [`index`] (index objects and the
//!   index a run consults), [`segment`] (the index cache's sorted, paged
//!   files), [`pack`] (packs and trailers), [`tree`] (tree objects).
//! - The parts of an open repository, each a field of [`Repository`]:
//!   [`codec`] (one repository's filters, seal and checksums; reading and
//!   writing its objects), [`tokens`] (how its tokens are made),
//!   [`catalog`] (the index, and the ids reserved and lost),
//!   [`index_cache`] (where the loaded index is kept on local disk),
//!   [`record_cache`] (generation and client records of a remote store,
//!   kept beside it),
//!   [`upload`] (the pack-upload pipeline, [`upload::UploadError`]),
//!   [`pack_cache`] (whole packs read, kept a while), [`tree_cache`]
//!   (decoded trees, kept a while) and [`read_record`] (where the chunks
//!   fsck read were).
//! - The repository's operations: this module ([`Repository`] and its
//!   accessors), and the modules that each add a group of operations to
//!   it: [`open`] (open or create), [`blobs`] (chunk and tree put and
//!   get), [`clients`], [`creation`] (the creation claim), [`keys`] (key
//!   slots and unlocking), [`known`] (the configs this machine trusted
//!   on first use), [`lock`] (locks), [`generation`] (generations,
//!   their readers and builders), [`check`] (lost packs, fsck's checks
//!   of the objects), [`reindex`] (packs no index object lists,
//!   indexed from their own lists), [`salvage`] (damaged or lost packs
//!   taken out of the index, their good blobs copied) and
//!   [`record_repair`] (records whose filter header one damaged byte
//!   made unreadable, written again with it undone).

#![forbid(unsafe_code)]

pub mod backend;
pub mod blobs;
pub mod catalog;
pub mod check;
pub mod clients;
pub mod clock;
pub mod codec;
pub mod config;
pub mod creation;
pub mod damaged_records;
pub mod done;
pub mod error;
pub mod fault_injection;
pub mod generation;
pub mod ids;
pub mod index;
pub mod index_cache;
pub mod keys;
pub mod known;
// The format's size limits: one source file, shared with plugin-api
// (which publishes it for the data filters) without depending on it.
#[path = "../../../plugin-api/src/limits.rs"]
pub mod limits;
pub mod location;
pub mod lock;
pub mod machine;
// How a name that need not be UTF-8, or that a repository holds (a
// client's, a host's), is shown in messages: one source file, shared with
// plugin-api without depending on it, so that the engine shows names as
// every command does.
#[path = "../../../plugin-api/src/names.rs"]
pub mod names;
pub mod object;
pub mod open;
pub mod pack;
pub mod pack_cache;
pub mod prune;
pub mod read_record;
pub mod record_cache;
pub mod record_repair;
pub mod reindex;
pub mod salvage;
pub mod segment;
pub mod storage;
pub mod tokens;
pub mod tree;
pub mod tree_cache;
pub mod upload;
pub mod usage;

use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{RepoConfig, FORMAT_VERSION};
pub use error::{RepoError, RepoResult};
pub use open::{OpenOptions, DEFAULT_PACK_SIZE};

use blobs::ReadCaches;
use catalog::Catalog;
use clock::GenerationClock;
use codec::Codec;
use record_cache::RecordCache;
use storage::Storage;
use tokens::Tokens;
use upload::Uploads;

/// Nanoseconds since the Unix epoch: 0 for a clock before 1970, and the
/// most an `i64` holds for one past 2262 (a wrapping cast made such a
/// clock's generations say they were made in 1677).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An open repository. Safe to share between threads: chunk puts and gets
/// may come from many threads at once.
///
/// Its operations are added by the modules named in the crate's module
/// map; this module has only the accessors.
pub struct Repository {
    storage: Storage,
    config: RepoConfig,
    /// How objects are stored: filters, seal, checksums.
    codec: Codec,
    /// How tokens are made.
    tokens: Tokens,
    /// The in-memory index and the ids reserved and lost.
    catalog: Catalog,
    /// Generation and client records kept on local disk.
    records: RecordCache,
    /// Damaged records and stray names met.
    damaged: damaged_records::DamagedRecords,
    /// The packs being filled and written.
    uploads: Uploads,
    /// Whole packs and decoded trees read.
    caches: ReadCaches,
    locks: lock::Locks,
    /// The time generations record (real, unless a test set it).
    clock: GenerationClock,
    /// Whether this process created the repository when it opened it.
    created: bool,
    /// This machine, as its generations record it ([`machine`]).
    machine: String,
    /// The largest tree object a backup writes (see
    /// [`OpenOptions::max_tree_len`]).
    max_tree_len: usize,
}

impl Repository {
    /// End the connections to the storage: for the end of a run, when
    /// plugins may still hold handles to the repository but will not use
    /// them.
    pub fn close(&self) {
        self.storage.close();
        // The process may end with `exit`, which drops nothing.
        self.catalog.cache().remove_temporary();
    }

    /// Write nothing more: the run was interrupted. What was written is
    /// as a crash would leave it (consistent, by the order of writes);
    /// locks can still be released.
    pub fn stop_writes(&self) {
        self.storage.stop_writes();
    }

    /// Whether the writes begun before [`stop_writes`](Self::stop_writes)
    /// have ended, waiting up to `limit` (see
    /// [`storage::Storage::writes_done_within`]).
    pub fn writes_done_within(&self, limit: std::time::Duration) -> bool {
        self.storage.writes_done_within(limit)
    }

    /// The repository's config object.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The storage, for the lock and generation modules.
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The repository URL.
    pub fn url(&self) -> &str {
        self.storage.url()
    }

    /// Bytes written to storage by this process.
    pub fn bytes_written(&self) -> u64 {
        self.storage.bytes_written()
    }

    /// Whether opening it created it: true in the one process that wrote
    /// its config, false in every other, even one that asked to create it
    /// and found that another process had just done so.
    pub fn created_by_this_process(&self) -> bool {
        self.created
    }

    /// Whether the repository is sealed (encrypted).
    pub fn is_sealed(&self) -> bool {
        self.codec.seal_tag().is_some()
    }

    /// Locks held by this process.
    pub fn locks(&self) -> &lock::Locks {
        &self.locks
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod tests;
