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
//! locks/LOCKID                    one per lock held ([`lock`])
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
//!   loaded into the in-memory index ([`index::Index`]) at open.
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
//! index objects at open, and load those written since each time after
//! they read generation objects ([`Repository::generations`],
//! [`Repository::generation`]). Every generation a reader has just read
//! is therefore complete in its index, even one a backup running beside
//! it committed after the reader opened the repository.
//!
//! # The modules, in dependency order
//!
//! - Foundations: [`limits`] (the format's size limits), [`ids`] (tokens,
//!   chunk, object and generation ids), [`error`] ([`RepoError`]).
//! - Storage: [`location`] (repository URLs), [`fault_injection`]
//!   (development: injected storage faults), [`backend`] (the
//!   [`backend::Backend`] trait and one module per store:
//!   [`backend::local`], [`backend::sftp`] with the ssh processes of
//!   SFTP, [`backend::s3`]), [`storage`] (objects over OpenDAL, on a
//!   private tokio runtime, the same for every store: retries, reads,
//!   background writes, byte counts, the crash limit, injected faults).
//! - Stored forms: [`object`] (filter header, checksums, the
//!   [`object::ObjectFilter`] trait), [`index`] (index objects and the
//!   in-memory index), [`pack`] (packs and trailers), [`pack_cache`]
//!   (whole packs read from a remote store), [`tree`] (tree objects).
//! - The repository: this module ([`Repository`]: open or create, the
//!   `config`, chunk and tree put and get, flush, index consolidation,
//!   clients), with [`creation`] (the creation claim), [`keys`] (key
//!   slots and unlocking), [`lock`] (locks), [`generation`] (generations,
//!   their readers and builders) and [`check`] (lost packs, fsck's checks
//!   of the objects) adding to it.

#![forbid(unsafe_code)]

pub mod backend;
pub mod check;
pub mod creation;
pub mod error;
pub mod fault_injection;
pub mod generation;
pub mod ids;
pub mod index;
pub mod keys;
// The format's size limits: one source file, shared with plugin-api
// (which publishes it for the data filters) without depending on it.
#[path = "../../../plugin-api/src/limits.rs"]
pub mod limits;
pub mod location;
pub mod lock;
pub mod object;
pub mod pack;
pub mod pack_cache;
pub mod storage;
pub mod tree;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use error::{RepoError, RepoResult};
use ids::{ChunkId, ObjectId, Token};
use index::{BlobKind, Index, IndexEntry, Location};
use object::ObjectFilter;
use pack::Packer;
use storage::{Storage, StorageError};
use tree::Tree;

/// The newest repository format version this obnam reads, and the one it
/// writes. Version 1 is a repository without a seal, version 2 one with a
/// seal (so that an obnam that knows only version 1 refuses it rather than
/// write plain objects into it); version 3, sealed or not, stores a
/// checksum with every object that is not named by its content, so that
/// nothing read back is used unverified. Versions 1 and 2 are still read.
pub const FORMAT_VERSION: u32 = 3;
/// The first version whose objects carry checksums.
const FIRST_CHECKSUM_VERSION: u32 = 3;
/// Bytes a blob's stored form may exceed its decoded limit by: the filter
/// header, a compressor's framing of data that did not shrink, a seal's
/// nonce and tag.
const STORED_SLACK: usize = 64 << 10;
/// The most read of a plain record (the config, a key slot).
pub(crate) const RECORD_LIMIT: u64 = crate::limits::MAX_RECORD_LEN as u64;
const FORMAT_NAME: &str = "obnam-repository";

/// At most this many sealed packs wait to be written at once to a local
/// folder, where a write costs little more than the copy.
const MAX_INFLIGHT_PACKS: usize = 2;
/// The same for a remote store, where each write waits for the network:
/// more packs in flight keep the uploads overlapping with the work.
const MAX_INFLIGHT_PACKS_REMOTE: usize = 6;

/// Default target size of a pack.
pub const DEFAULT_PACK_SIZE: u64 = 8 << 20;

/// The bootstrap object: the one object not passed through the data filters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub created: String,
    /// The sealing filter, chosen when the repository was created: an
    /// object whose `filter` member is the filter's tag, and whatever else
    /// that filter records (its cipher, say). Absent: not sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<serde_json::Value>,
}

impl RepoConfig {
    /// The tag of the sealing filter, if the repository has one.
    pub fn seal_tag(&self) -> Option<&str> {
        self.seal.as_ref()?.get("filter")?.as_str()
    }
}

/// How to open a repository.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Create the repository if the URL holds none.
    pub create: bool,
    /// Target size of pack files in bytes.
    pub pack_size: u64,
    /// How to reach the storage (remote settings, the crash limit).
    pub storage: storage::StorageOptions,
    /// How long to wait for another process creating the repository.
    pub lock_timeout: std::time::Duration,
    /// Development: keep only the first byte of chunk tokens, so that
    /// different chunks collide and the dedup modes that must tell them
    /// apart can be tested.
    pub weak_tokens: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create: false,
            pack_size: DEFAULT_PACK_SIZE,
            storage: storage::StorageOptions::default(),
            lock_timeout: std::time::Duration::from_secs(60),
            weak_tokens: false,
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// An open repository. Safe to share between threads: chunk puts and gets
/// may come from many threads at once.
pub struct Repository {
    storage: Storage,
    filter: Arc<dyn ObjectFilter>,
    config: RepoConfig,
    /// The sealing filter's tag (from the config), if any.
    seal: Option<String>,
    /// Whether objects carry checksums (format 3 and later).
    checksums: bool,
    /// Development: chunk tokens keep only their first byte.
    weak_tokens: bool,
    /// The key of chunk tokens in a sealed repository.
    token_key: Option<[u8; 32]>,
    pack_size: usize,
    index: RwLock<Index>,
    /// Ids handed out but not yet in the index (so two threads storing the
    /// same new token at once get different variants).
    reserved: Mutex<HashSet<ChunkId>>,
    /// The pack being filled, per blob kind (data, tree).
    packers: [Mutex<Option<Packer>>; 2],
    /// Packs sealed and being written, by pack number, readable meanwhile.
    inflight: Arc<Mutex<HashMap<u32, Arc<pack::Sealed>>>>,
    inflight_done: Arc<Condvar>,
    /// The first failure of a background upload (remote stores): once set,
    /// every later store and flush fails with it, so that nothing is ever
    /// committed that refers to a pack that was not written.
    upload_failure: Arc<Mutex<Option<String>>>,
    /// Index objects written by this process.
    session_indexes: Arc<Mutex<Vec<ObjectId>>>,
    locks: lock::Locks,
    tree_cache: Mutex<TreeCache>,
    /// Whole packs read from a remote store.
    pack_cache: pack_cache::PackCache,
    /// Index objects that could not be read when the repository was
    /// opened, and why (their blobs count as absent).
    damaged_indexes: Mutex<Vec<String>>,
    /// Index objects loaded (or found damaged) so far, by name.
    known_indexes: Mutex<HashSet<String>>,
    /// Ids of blobs whose pack was found missing: never handed out again,
    /// so that a blob stored anew cannot be mistaken for the lost copy
    /// (which older index objects still list).
    lost: Mutex<HashSet<ChunkId>>,
}

/// A small cache of decoded trees, oldest dropped first.
#[derive(Default)]
struct TreeCache {
    map: HashMap<ChunkId, Arc<Tree>>,
    order: std::collections::VecDeque<ChunkId>,
}

impl TreeCache {
    const CAPACITY: usize = 256;

    fn get(&self, id: &ChunkId) -> Option<Arc<Tree>> {
        self.map.get(id).cloned()
    }

    fn insert(&mut self, id: ChunkId, tree: Arc<Tree>) {
        if self.map.insert(id, tree).is_none() {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

impl Repository {
    /// Open (or create) the repository at `url`.
    pub fn open(
        url: &str,
        options: &OpenOptions,
        filter: Arc<dyn ObjectFilter>,
    ) -> RepoResult<Self> {
        let storage = Storage::open(url, &options.storage)?;
        let (config, token_key) = match storage.read_limited("config", RECORD_LIMIT) {
            Ok(bytes) => {
                let config = parse_config(url, &bytes)?;
                keys::unlock(&storage, filter.as_ref(), config, None)?
            }
            Err(StorageError::NotFound { .. }) if options.create => {
                match Self::create(&storage, options, filter.as_ref()) {
                    Ok(unlocked) => unlocked,
                    Err(e) => {
                        storage.abandon_creation();
                        return Err(e);
                    }
                }
            }
            Err(StorageError::NotFound { .. }) => {
                return Err(RepoError::NotARepository {
                    url: url.to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let repo = Repository {
            locks: lock::Locks::default(),
            storage,
            filter,
            seal: config.seal_tag().map(str::to_string),
            checksums: config.version >= FIRST_CHECKSUM_VERSION,
            weak_tokens: options.weak_tokens,
            token_key,
            config,
            pack_size: options.pack_size.clamp(1 << 16, 1 << 30) as usize,
            index: RwLock::new(Index::default()),
            reserved: Mutex::new(HashSet::new()),
            packers: [Mutex::new(None), Mutex::new(None)],
            inflight: Arc::new(Mutex::new(HashMap::new())),
            inflight_done: Arc::new(Condvar::new()),
            upload_failure: Arc::new(Mutex::new(None)),
            session_indexes: Arc::new(Mutex::new(Vec::new())),
            tree_cache: Mutex::new(TreeCache::default()),
            pack_cache: pack_cache::PackCache::default(),
            damaged_indexes: Mutex::new(Vec::new()),
            lost: Mutex::new(HashSet::new()),
            known_indexes: Mutex::new(HashSet::new()),
        };
        repo.load_index()?;
        Ok(repo)
    }

    /// Create a new repository in `storage` (or open the one another
    /// process created meanwhile): claim the creation, then let the
    /// filters choose the seal and write the key slots and the config.
    fn create(
        storage: &Storage,
        options: &OpenOptions,
        filter: &dyn ObjectFilter,
    ) -> RepoResult<(RepoConfig, Option<[u8; 32]>)> {
        let guard = match creation::claim(storage, options.lock_timeout)? {
            creation::Claim::Won(guard) => guard,
            creation::Claim::Created(bytes) => {
                let config = parse_config(storage.url(), &bytes)?;
                tracing::info!(
                    "repository {} was created meanwhile by another obnam; using it",
                    storage.url()
                );
                return keys::unlock(storage, filter, config, None);
            }
        };
        let config = RepoConfig {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: ObjectId::random().to_hex(),
            created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            seal: None,
        };
        // The guard removes the claim when this returns, in success or
        // failure (and before the caller abandons a failed creation).
        keys::unlock(storage, filter, config, Some(&guard))
    }

    /// End the connections to the storage: for the end of a run, when
    /// plugins may still hold handles to the repository but will not use
    /// them.
    pub fn close(&self) {
        self.storage.close();
    }

    /// Write nothing more: the run was interrupted. What was written is
    /// as a crash would leave it (consistent, by the order of writes);
    /// locks can still be released.
    pub fn stop_writes(&self) {
        self.storage.stop_writes();
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

    /// Number of chunks and tree objects in the index.
    pub fn chunk_count(&self) -> usize {
        self.read_index().len()
    }

    /// Bytes of memory the index holds.
    pub fn index_memory_bytes(&self) -> usize {
        self.read_index().memory_bytes()
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored form of an object that is not named by its content: its
    /// checksum appended (format 3), then the data filters.
    fn encode_object(&self, key: &str, mut data: Vec<u8>) -> RepoResult<Vec<u8>> {
        if self.checksums {
            object::add_checksum(key, &mut data);
        }
        object::seal_whole(self.filter.as_ref(), self.seal.as_deref(), key, data)
    }

    /// Undo [`encode_object`](Self::encode_object), checking the checksum.
    fn decode_object(&self, key: &str, stored: Vec<u8>) -> RepoResult<Vec<u8>> {
        let plain = object::open(self.filter.as_ref(), self.seal.as_deref(), key, stored)?;
        if self.checksums {
            object::strip_checksum(key, plain)
        } else {
            Ok(plain)
        }
    }

    /// Seal an object with the data filters and write it under `key`.
    pub(crate) fn write_object(&self, key: &str, data: Vec<u8>) -> RepoResult<()> {
        let sealed = self.encode_object(key, data)?;
        self.storage.write(key, sealed)?;
        Ok(())
    }

    /// Read an object written by [`write_object`](Self::write_object),
    /// verified; no more than the format allows for its kind is read.
    pub(crate) fn read_object(&self, key: &str) -> RepoResult<Vec<u8>> {
        let limit = crate::limits::max_decoded_len(key) + STORED_SLACK;
        let stored = self.storage.read_limited(key, limit as u64)?;
        self.decode_object(key, stored)
    }

    /// Load every index object not loaded yet: all of them when the
    /// repository is opened, and again when a run takes a client's lock,
    /// so that it knows what the run that held the lock before it stored
    /// (its index was loaded before it waited).
    pub(crate) fn load_index(&self) -> RepoResult<()> {
        let names = self.storage.list("index/")?;
        let own: HashSet<String> = self
            .session_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(ObjectId::to_hex)
            .collect();
        let mut known = self.known_indexes.lock().unwrap_or_else(|e| e.into_inner());
        let new: Vec<String> = names
            .into_iter()
            .filter(|n| !known.contains(n) && !own.contains(n))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut index = self.write_index();
        for name in new {
            known.insert(name.clone());
            let key = format!("index/{name}");
            let data = match self.read_object(&key) {
                Ok(data) => data,
                // Merged into another index object and deleted since the listing.
                Err(RepoError::Storage(StorageError::NotFound { .. })) => continue,
                // A damaged index object loses track of its blobs, not of
                // the whole repository: they count as absent (a backup
                // stores them again), and fsck reports the object. (A
                // filter that is not loaded is not damage: that fails.)
                Err(e @ RepoError::Corrupt { .. }) => {
                    self.index_damaged(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            match index::decode(&mut index, &data) {
                Ok(entries) => index.extend_loaded(entries),
                Err(e) => self.index_damaged(RepoError::corrupt(&key, e).to_string()),
            }
        }
        index.finish_loading();
        tracing::debug!(
            "index: {} blobs, {} bytes in memory",
            index.len(),
            index.memory_bytes()
        );
        Ok(())
    }

    fn is_lost(&self, id: &ChunkId) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Remember blobs lost with their packs (see `lost`).
    pub(crate) fn mark_lost(&self, ids: impl IntoIterator<Item = ChunkId>) {
        self.lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    fn index_damaged(&self, problem: String) {
        tracing::error!("{problem}; its blobs count as absent");
        self.damaged_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(problem);
    }

    /// The index objects that could not be read at open, and why.
    pub fn damaged_index_objects(&self) -> Vec<String> {
        self.damaged_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn filter(&self) -> &dyn ObjectFilter {
        self.filter.as_ref()
    }

    fn seal_tag(&self) -> Option<&str> {
        self.seal.as_deref()
    }

    /// The numbers of the packs this process is filling or writing.
    fn packs_in_memory(&self) -> HashSet<u32> {
        let mut numbers: HashSet<u32> = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for slot in &self.packers {
            if let Some(p) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                numbers.insert(p.number);
            }
        }
        numbers
    }

    /// Check a blob's plain bytes against its id: a blob is named by its
    /// content, so nothing else can vouch for it.
    fn verify_blob(&self, context: &str, id: &ChunkId, plain: &[u8]) -> RepoResult<()> {
        let token = if context.starts_with("tree/") {
            self.strong_token(plain)
        } else {
            self.token(plain)
        };
        if token != id.token {
            return Err(RepoError::corrupt(
                context,
                "its content does not match its id (damaged or altered)",
            ));
        }
        Ok(())
    }

    /// The dedup token of some data: its SHA-256, or in a sealed
    /// repository its HMAC-SHA-256 under the repository's token key, so
    /// that stored ids reveal nothing about content to anyone without it.
    ///
    /// This is the token of file chunks; with the development setting
    /// `testing-weak-tokens` it keeps only its first byte.
    pub fn token(&self, data: &[u8]) -> Token {
        let token = self.strong_token(data);
        if !self.weak_tokens {
            return token;
        }
        let mut weak = [0u8; 32];
        weak[0] = token.0[0];
        Token(weak)
    }

    /// The token of trees and client names, never weakened.
    fn strong_token(&self, data: &[u8]) -> Token {
        match &self.token_key {
            Some(key) => Token::keyed(key, data),
            None => Token::of(data),
        }
    }

    /// Whether the repository is sealed (encrypted).
    pub fn is_sealed(&self) -> bool {
        self.seal.is_some()
    }

    /// Every stored copy of a token.
    pub fn find_chunks(&self, token: &Token) -> Vec<ChunkId> {
        self.read_index().find(token)
    }

    /// Whether a chunk is stored.
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.read_index().get(id).is_some()
    }

    /// Store a new copy of a chunk and return its id: the first copy of a
    /// token gets variant 0, later copies a random variant.
    pub fn put_chunk(&self, token: Token, data: Vec<u8>) -> RepoResult<ChunkId> {
        // Never write what no reader would accept.
        if data.len() > crate::limits::MAX_CHUNK_LEN {
            return Err(RepoError::Usage(format!(
                "a chunk of {} bytes is larger than the format allows ({})",
                data.len(),
                crate::limits::MAX_CHUNK_LEN
            )));
        }
        let id = self.allocate_id(token);
        let result = self.put_blob(id, BlobKind::Data, data);
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        result.map(|()| id)
    }

    fn allocate_id(&self, token: Token) -> ChunkId {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        let taken = |id: &ChunkId| {
            reserved.contains(id) || lost.contains(id) || self.read_index().get(id).is_some()
        };
        let first = ChunkId::first(token);
        let id = if taken(&first) {
            loop {
                let id = ChunkId::another(token);
                if !taken(&id) {
                    break id;
                }
            }
        } else {
            first
        };
        drop(lost);
        reserved.insert(id);
        id
    }

    fn context(id: &ChunkId, kind: BlobKind) -> String {
        match kind {
            BlobKind::Data => format!("chunk/{id}"),
            BlobKind::Tree => format!("tree/{id}"),
        }
    }

    fn put_blob(&self, id: ChunkId, kind: BlobKind, data: Vec<u8>) -> RepoResult<()> {
        self.check_uploads()?;
        let (header, payload) = object::seal(
            self.filter.as_ref(),
            self.seal.as_deref(),
            &Self::context(&id, kind),
            data,
        )?;
        let full = {
            let mut slot = self.packers[kind as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let len = header.len() + payload.len();
            let full = match slot.as_ref() {
                Some(p) if p.would_overflow(len, self.pack_size) => slot.take(),
                _ => None,
            };
            let packer = match slot.as_mut() {
                Some(p) => p,
                None => {
                    let pack = ObjectId::random();
                    let number = self.write_index().pack_number(pack);
                    slot.insert(Packer::new(pack, number, kind, self.pack_size + (1 << 16)))
                }
            };
            let location = packer.add(id, &header, &payload);
            self.write_index().add(id, location);
            match full {
                Some(p) => Some(self.start_sealing(p)?),
                None => None,
            }
        };
        if let Some((number, sealed)) = full {
            self.seal(number, sealed)?;
        }
        Ok(())
    }

    /// Finish a full packer's bytes and move it to the in-flight set, where
    /// its blobs stay readable while it is written. Called with the
    /// packer's slot locked, so that its blobs are always findable.
    fn start_sealing(&self, packer: Packer) -> RepoResult<(u32, Arc<pack::Sealed>)> {
        let trailer = self.encode_object(
            &format!("pack/{}", packer.id),
            pack::trailer(&packer.entries),
        )?;
        let sealed = Arc::new(pack::Sealed {
            id: packer.id,
            bytes: bytes::Bytes::from(pack::finish(packer.buf, &trailer)),
            entries: packer.entries,
        });
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the memory held by packs waiting to be written.
        let limit = if self.storage.is_remote() {
            MAX_INFLIGHT_PACKS_REMOTE
        } else {
            MAX_INFLIGHT_PACKS
        };
        while inflight.len() >= limit {
            inflight = self
                .inflight_done
                .wait(inflight)
                .unwrap_or_else(|e| e.into_inner());
        }
        inflight.insert(packer.number, sealed.clone());
        Ok((packer.number, sealed))
    }

    /// Write a pack, then the index object listing its blobs.
    fn seal(&self, number: u32, sealed: Arc<pack::Sealed>) -> RepoResult<()> {
        if self.storage.is_remote() {
            return self.seal_in_background(number, sealed);
        }
        let result = self.write_pack(&sealed);
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        inflight.remove(&number);
        self.inflight_done.notify_all();
        result
    }

    /// On a remote store, [`seal`](Self::seal) without waiting: the pack
    /// and then its index object are uploaded in the background, in that
    /// order, while the caller goes on cutting and compressing chunks. The
    /// pack stays readable from memory until its upload is done.
    fn seal_in_background(&self, number: u32, sealed: Arc<pack::Sealed>) -> RepoResult<()> {
        let done = move |inflight: &Mutex<HashMap<u32, Arc<pack::Sealed>>>, cond: &Condvar| {
            inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&number);
            cond.notify_all();
        };
        let index_id = ObjectId::random();
        let index_key = format!("index/{index_id}");
        let index_object = index::encode(&self.read_index(), &sealed.entries);
        let index_object = match self.encode_object(&index_key, index_object) {
            Ok(bytes) => bytes,
            Err(e) => {
                done(&self.inflight, &self.inflight_done);
                return Err(e);
            }
        };
        let (inflight, cond) = (self.inflight.clone(), self.inflight_done.clone());
        let (failure, indexes) = (self.upload_failure.clone(), self.session_indexes.clone());
        self.storage.write_in_background(
            vec![
                (pack::key(&sealed.id), sealed.bytes.clone()),
                (index_key, bytes::Bytes::from(index_object)),
            ],
            move |result| {
                match result {
                    Ok(()) => indexes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(index_id),
                    Err(e) => {
                        let mut failure = failure.lock().unwrap_or_else(|e| e.into_inner());
                        failure.get_or_insert(e.to_string());
                    }
                }
                done(&inflight, &cond);
            },
        );
        self.check_uploads()?;
        self.refresh_locks()
    }

    /// Fail if a background upload failed.
    fn check_uploads(&self) -> RepoResult<()> {
        match &*self
            .upload_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(message) => Err(RepoError::Read(message.clone())),
            None => Ok(()),
        }
    }

    fn write_pack(&self, sealed: &pack::Sealed) -> RepoResult<()> {
        let key = pack::key(&sealed.id);
        self.storage.write(&key, sealed.bytes.clone())?;
        let index_id = ObjectId::random();
        let data = index::encode(&self.read_index(), &sealed.entries);
        self.write_object(&format!("index/{index_id}"), data)?;
        self.session_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(index_id);
        // A long run keeps its locks fresh as it writes.
        self.refresh_locks()
    }

    /// Write every pack still being filled, and wait for packs other
    /// threads are writing. After this, every blob put so far is durable
    /// and indexed.
    pub fn flush(&self) -> RepoResult<()> {
        for slot in &self.packers {
            let sealed = {
                let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                match slot.take() {
                    Some(p) => Some(self.start_sealing(p)?),
                    None => None,
                }
            };
            if let Some((number, sealed)) = sealed {
                self.seal(number, sealed)?;
            }
        }
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        while !inflight.is_empty() {
            inflight = self
                .inflight_done
                .wait(inflight)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(inflight);
        self.check_uploads()
    }

    /// Replace the index objects this process wrote by one. Call only after
    /// a successful final commit.
    pub fn consolidate_index(&self) -> RepoResult<()> {
        let written = std::mem::take(
            &mut *self
                .session_indexes
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if written.len() < 2 {
            self.session_indexes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(written);
            return Ok(());
        }
        // Merged objects stay well under the largest index object a
        // reader accepts; all are written before any old one is deleted.
        let entries: Vec<IndexEntry> = self.read_index().added_entries();
        let mut merged = Vec::new();
        for group in entries.chunks(index::MAX_ENTRIES_PER_OBJECT) {
            let merged_id = ObjectId::random();
            let data = index::encode(&self.read_index(), group);
            self.write_object(&format!("index/{merged_id}"), data)?;
            merged.push(merged_id);
        }
        for id in &written {
            self.storage.delete(&format!("index/{id}"))?;
        }
        self.session_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(merged);
        Ok(())
    }

    /// The plain data of a chunk.
    pub fn get_chunk(&self, id: &ChunkId) -> RepoResult<Vec<u8>> {
        self.get_blob(id, BlobKind::Data)
    }

    fn get_blob(&self, id: &ChunkId, kind: BlobKind) -> RepoResult<Vec<u8>> {
        let location = self
            .read_index()
            .get(id)
            .ok_or_else(|| RepoError::NoSuchChunk(id.to_hex()))?;
        let context = Self::context(id, kind);
        if location.kind != kind {
            return Err(RepoError::corrupt(
                context,
                "the index lists it as another kind of blob",
            ));
        }
        let limit = crate::limits::max_decoded_len(&context) + STORED_SLACK;
        if location.length as usize > limit {
            return Err(RepoError::corrupt(
                context,
                format!(
                    "the index says it is {} bytes long, more than the format allows",
                    location.length
                ),
            ));
        }
        let stored = match self.blob_in_memory(&location) {
            Some(bytes) => bytes,
            None => {
                let pack = self
                    .read_index()
                    .pack_id(location.pack)
                    .ok_or_else(|| RepoError::corrupt(&context, "unknown pack"))?;
                if self.storage.is_remote() {
                    self.blob_from_cached_pack(pack, &location, &context)?
                } else {
                    self.storage.read_range(
                        &pack::key(&pack),
                        location.offset as u64,
                        location.length as u64,
                    )?
                }
            }
        };
        let plain = object::open(self.filter.as_ref(), self.seal.as_deref(), &context, stored)?;
        self.verify_blob(&context, id, &plain)?;
        Ok(plain)
    }

    /// A blob of a pack on a remote store, read with the whole pack.
    fn blob_from_cached_pack(
        &self,
        pack: ObjectId,
        location: &Location,
        context: &str,
    ) -> RepoResult<Vec<u8>> {
        let key = pack::key(&pack);
        let bytes = self
            .pack_cache
            .get(pack, || {
                self.storage.read_pieces(&key).map_err(|e| e.to_string())
            })
            .map_err(RepoError::Read)?;
        let start = location.offset as usize;
        let end = start + location.length as usize;
        if end > bytes.len() {
            return Err(RepoError::corrupt(
                context,
                format!("{key} ends before it (truncated or damaged)"),
            ));
        }
        Ok(bytes.slice(start..end).to_vec())
    }

    fn blob_in_memory(&self, location: &Location) -> Option<Vec<u8>> {
        for slot in &self.packers {
            let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = guard.as_ref().filter(|p| p.number == location.pack) {
                return p.blob(location);
            }
        }
        let inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        inflight.get(&location.pack).and_then(|p| p.blob(location))
    }

    /// Store a tree object (once: an identical tree is reused).
    pub fn put_tree(&self, tree: &Tree) -> RepoResult<ChunkId> {
        let bytes = tree.encode();
        if bytes.len() > crate::limits::MAX_TREE_LEN {
            return Err(RepoError::Usage(format!(
                "a folder of {} entries is too large to store: its tree object \
                 would be {} bytes, more than the format allows ({})",
                tree.entries.len(),
                bytes.len(),
                crate::limits::MAX_TREE_LEN
            )));
        }
        let token = self.strong_token(&bytes);
        let first = ChunkId::first(token);
        if self.has_chunk(&first) {
            return Ok(first);
        }
        // A tree whose first copy was lost with its pack is stored again
        // under a new variant (see `lost`).
        let id = if self.is_lost(&first) {
            let found = self.find_chunks(&token).into_iter().next();
            match found {
                Some(id) => return Ok(id),
                None => self.allocate_id(token),
            }
        } else {
            first
        };
        let result = self.put_blob(id, BlobKind::Tree, bytes);
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        result.map(|()| id)
    }

    /// Read a tree object. Recently read trees are kept decoded: a backup
    /// reads each directory of the previous generation twice (to compare
    /// with, and to build on).
    pub fn get_tree(&self, id: &ChunkId) -> RepoResult<Arc<Tree>> {
        if let Some(tree) = self
            .tree_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(tree);
        }
        let bytes = self.get_blob(id, BlobKind::Tree)?;
        let tree = Arc::new(
            Tree::decode(&bytes).map_err(|e| RepoError::corrupt(format!("tree/{id}"), e))?,
        );
        self.tree_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id, tree.clone());
        Ok(tree)
    }

    /// The storage id of a client.
    pub fn client_id(&self, name: &str) -> String {
        let token = self.strong_token(format!("obnam-client\0{name}").as_bytes());
        hex::encode(&token.0[..16])
    }

    /// The names of all clients.
    pub fn clients(&self) -> RepoResult<Vec<String>> {
        let mut names = Vec::new();
        for id in self.storage.list("clients/")? {
            let data = self.read_object(&format!("clients/{id}"))?;
            let record: ClientRecord = serde_json::from_slice(&data)
                .map_err(|e| RepoError::corrupt(format!("clients/{id}"), e))?;
            names.push(record.name);
        }
        names.sort();
        Ok(names)
    }

    /// Add a client if it is not there yet.
    pub fn add_client(&self, name: &str) -> RepoResult<()> {
        if name.is_empty() {
            return Err(RepoError::Usage("a client name must not be empty".into()));
        }
        let key = format!("clients/{}", self.client_id(name));
        if self.storage.exists(&key)? {
            return Ok(());
        }
        let record = ClientRecord {
            name: name.to_string(),
            created: now_ns(),
        };
        let data = serde_json::to_vec(&record).map_err(|e| RepoError::corrupt(&key, e))?;
        self.write_object(&key, data)
    }

    /// Locks held by this process.
    pub fn locks(&self) -> &lock::Locks {
        &self.locks
    }

    /// The key slots: id and text, sorted by id.
    pub fn key_slots(&self) -> RepoResult<Vec<(String, String)>> {
        keys::list(&self.storage)
    }

    /// Store a new key slot (never replacing one).
    pub fn put_key_slot(&self, id: &str, text: &str) -> RepoResult<()> {
        keys::put(&self.storage, id, text)
    }

    /// Remove a key slot.
    pub fn remove_key_slot(&self, id: &str) -> RepoResult<()> {
        keys::remove(&self.storage, id)
    }
}

/// The object of one client.
#[derive(Serialize, Deserialize)]
struct ClientRecord {
    name: String,
    created: i64,
}

pub(crate) fn parse_config(url: &str, bytes: &[u8]) -> RepoResult<RepoConfig> {
    #[derive(Deserialize)]
    struct Probe {
        format: String,
        version: u32,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| RepoError::corrupt("config", e))?;
    if probe.format != FORMAT_NAME {
        return Err(RepoError::corrupt(
            "config",
            format!("unknown format '{}'", probe.format),
        ));
    }
    if probe.version > FORMAT_VERSION {
        return Err(RepoError::TooNew {
            url: url.to_string(),
            found: probe.version,
            supported: FORMAT_VERSION,
        });
    }
    let config: RepoConfig =
        serde_json::from_slice(bytes).map_err(|e| RepoError::corrupt("config", e))?;
    // Version 1 predates seals and version 2 is always sealed: a config
    // that says otherwise was not written by obnam.
    match (config.version, config.seal.is_some()) {
        (0, _) => Err(RepoError::corrupt("config", "it has version 0")),
        (1, true) => Err(RepoError::corrupt("config", "version 1 cannot have a seal")),
        (2, false) => Err(RepoError::corrupt("config", "version 2 must have a seal")),
        _ => Ok(config),
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
