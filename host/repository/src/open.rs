//! Opening a repository: reading and checking its `config`, unlocking it
//! (or creating it, when asked to and the URL holds none), and loading
//! its index. This module adds [`Repository::open`] to the repository.

use crate::clock::GenerationClock;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::catalog::Catalog;
use super::codec::Codec;
use super::config::{parse_config, RepoConfig, FORMAT_NAME, FORMAT_VERSION, RECORD_LIMIT};
use super::error::{RepoError, RepoResult};
use super::ids::ObjectId;
use super::index_cache::{IndexCache, IndexCacheDir};
use super::known::{self, KnownRepositories};
use super::object::ObjectFilter;
use super::record_cache::RecordCache;
use super::storage::{Storage, StorageError, StorageOptions};
use super::tokens::{TokenFunction, Tokens};
use super::upload::Uploads;
use super::{creation, keys, lock, Repository};

/// Default target size of a pack.
pub const DEFAULT_PACK_SIZE: u64 = 8 << 20;

/// How to open a repository.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Create the repository if the URL holds none.
    pub create: bool,
    /// Target size of pack files in bytes.
    pub pack_size: u64,
    /// How to reach the storage (remote settings, the crash limit).
    pub storage: StorageOptions,
    /// How long to wait for another process creating the repository.
    pub lock_timeout: Duration,
    /// Development: keep only the first byte of chunk tokens, so that
    /// different chunks collide and the dedup modes that must tell them
    /// apart can be tested.
    pub weak_tokens: bool,
    /// Development: the time, in ns since the epoch, at which generations
    /// made by this process say their run started (their end is as much
    /// later as the run really took), so that retention policies can be
    /// tested on histories of days and years. Locks keep the real time.
    pub generation_clock: Option<i64>,
    /// Where the local cache of the index is (see [`crate::index_cache`]);
    /// by default a temporary one, kept for the run only.
    pub index_cache: IndexCacheDir,
    /// Whether generation and client records are kept in the local cache
    /// beside the index ([`crate::record_cache`]): `None` where the store
    /// asks for it ([`crate::storage::Capabilities::cache_records`]) and
    /// the index cache is kept from run to run.
    pub cache_records: Option<bool>,
    /// Where this machine records the configs of the repositories it
    /// used, to refuse one replaced behind its back ([`crate::known`]);
    /// by default nowhere.
    pub known: KnownRepositories,
    /// How many of its new chunks a backup holds in memory before it
    /// moves those of packs already written to the local index cache
    /// ([`crate::upload::NEW_CHUNKS_IN_MEMORY`]; tests ask for few).
    pub new_chunks_in_memory: usize,
    /// Development: this machine's identity, instead of its machine id
    /// ([`crate::machine`]), so that tests play several machines.
    pub machine_id: Option<String>,
    /// Development: the largest tree object a backup writes, below the
    /// format's limit ([`crate::limits::MAX_TREE_LEN`]), so that tests
    /// show what happens to a folder too large for one without a million
    /// files. `None`: the format's limit.
    pub max_tree_len: Option<usize>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create: false,
            pack_size: DEFAULT_PACK_SIZE,
            storage: StorageOptions::default(),
            lock_timeout: Duration::from_secs(60),
            weak_tokens: false,
            generation_clock: None,
            index_cache: IndexCacheDir::default(),
            cache_records: None,
            new_chunks_in_memory: crate::upload::NEW_CHUNKS_IN_MEMORY,
            known: KnownRepositories::Off,
            machine_id: None,
            max_tree_len: None,
        }
    }
}

/// The config read as `bytes` from `storage`, parsed; read again, up to
/// [`crate::codec::REREADS`] times, while it does not parse: a read cut
/// short once (a store or link that drops the end of a response) must not
/// make a sound repository's config "corrupt", as records are read again
/// before they count as damaged.
fn parse_config_reading_again(
    storage: &Storage,
    url: &str,
    bytes: Vec<u8>,
) -> RepoResult<(Vec<u8>, RepoConfig)> {
    let mut bytes = bytes;
    let mut tries = 0;
    loop {
        match parse_config(url, &bytes) {
            Ok(config) => return Ok((bytes, config)),
            Err(e @ RepoError::Corrupt { .. }) if tries < crate::codec::REREADS => {
                tracing::debug!("{e}; reading it again");
                tries += 1;
                bytes = storage.read_limited("config", RECORD_LIMIT)?;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Repository {
    /// Open the repository at `url` as [`open`](Self::open) does without
    /// creating it, or `None` if there is none there yet and one could be
    /// made there: for a run that pretends to create it. Any other failure
    /// is an error, and so is a location where a creation would be
    /// refused (it holds other things, or this machine used a repository
    /// there that is gone), as for the real run.
    pub fn open_if_any(
        url: impl AsRef<std::ffi::OsStr>,
        options: &OpenOptions,
        filter: Arc<dyn ObjectFilter>,
    ) -> RepoResult<Option<Self>> {
        let options = OpenOptions {
            create: false,
            ..options.clone()
        };
        match Self::open(url.as_ref(), &options, filter.clone()) {
            Ok(repo) => Ok(Some(repo)),
            Err(RepoError::NotARepository { .. }) => {
                let storage = Storage::open(url.as_ref(), &options.storage)?;
                let identity = identity(url.as_ref(), &options)?;
                let refused = options
                    .known
                    .may_create(&identity)
                    .and_then(|()| Ok(storage.check_can_hold_repository()?))
                    .and_then(|()| refuse_foreign_things(&storage))
                    .and_then(|()| keys::check_creation(&storage, filter.as_ref()));
                storage.abandon_creation();
                refused.map(|()| None)
            }
            Err(e) => Err(e),
        }
    }

    /// Open (or create) the repository at `url`: a URL, or a local
    /// folder's name, which need not be UTF-8.
    pub fn open(
        url: impl AsRef<std::ffi::OsStr>,
        options: &OpenOptions,
        filter: Arc<dyn ObjectFilter>,
    ) -> RepoResult<Self> {
        let storage = Storage::open(url.as_ref(), &options.storage)?;
        let identity = identity(url.as_ref(), options)?;
        // As messages show it.
        let url = &storage.url().to_string();
        let mut created = false;
        let (config, token_key) = match storage.read_limited("config", RECORD_LIMIT) {
            Ok(bytes) => {
                let (bytes, config) = parse_config_reading_again(&storage, url, bytes)?;
                let (id, sealed) = (config.id.clone(), config.seal.is_some());
                options.known.check(&identity, &id, sealed, &bytes)?;
                let unlocked = keys::unlock(&storage, filter.as_ref(), config, None)?;
                // Only once it opened: a config that does not is not
                // trusted for the next time.
                options.known.remember(&identity, &id, sealed, &bytes);
                unlocked
            }
            Err(StorageError::NotFound { .. }) if options.create => {
                // Before anything is written (the creation writes its
                // claim), and again as the config is about to be.
                if let Err(e) = options.known.may_create(&identity) {
                    // A config lost from among the objects says so.
                    let lost = holds_objects(&storage).ok().flatten();
                    storage.abandon_creation();
                    return Err(match lost {
                        Some(found) => RepoError::ConfigMissing {
                            url: url.clone(),
                            found,
                        },
                        None => e,
                    });
                }
                match create(&storage, options, filter.as_ref(), &identity) {
                    Ok((unlocked, won)) => {
                        created = won;
                        // This one's creation recorded its config as
                        // pending before it wrote it; now it is there. One
                        // that another process made at the same moment is
                        // checked as any other (a pending record of this
                        // one's gives way to it).
                        let (id, sealed) = (&unlocked.0.id, unlocked.0.seal.is_some());
                        if won {
                            // Unread, the record stays pending: the next
                            // open trusts the config it finds, this one.
                            if let Ok(bytes) = storage.read_limited("config", RECORD_LIMIT) {
                                options.known.created(&identity, id, sealed, &bytes);
                            }
                        } else {
                            let bytes = storage.read_limited("config", RECORD_LIMIT)?;
                            options.known.check(&identity, id, sealed, &bytes)?;
                            options.known.remember(&identity, id, sealed, &bytes);
                        }
                        unlocked
                    }
                    Err(e) => {
                        storage.abandon_creation();
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                // Opening a local folder makes it: a reader pointed at the
                // wrong path must not leave one behind (only folders this
                // open made, and only while empty, are removed).
                storage.abandon_creation();
                return Err(match e {
                    StorageError::NotFound { .. } => match holds_objects(&storage)? {
                        // Not a creation that ended meanwhile.
                        Some(found) if storage.exists("config").ok() == Some(false) => {
                            RepoError::ConfigMissing {
                                url: url.to_string(),
                                found,
                            }
                        }
                        _ => RepoError::NotARepository {
                            url: url.to_string(),
                        },
                    },
                    e => e.into(),
                });
            }
        };
        let index_cache = IndexCache::open(&options.index_cache, &config.id);
        let repo = Repository {
            codec: Codec::new(filter, &config),
            tokens: Tokens::new(TokenFunction::of(&config), token_key, options.weak_tokens),
            uploads: Uploads::new(
                options.pack_size,
                storage.capabilities(),
                options.new_chunks_in_memory,
            ),
            records: RecordCache::new(record_dir(&index_cache, &storage, options)),
            damaged: Default::default(),
            catalog: Catalog::new(index_cache),
            caches: Default::default(),
            locks: lock::Locks::default(),
            clock: GenerationClock::new(options.generation_clock),
            machine: crate::machine::digest(&config.id, options.machine_id.as_deref()),
            max_tree_len: options
                .max_tree_len
                .map_or(crate::limits::MAX_TREE_LEN, |len| {
                    len.min(crate::limits::MAX_TREE_LEN)
                }),
            storage,
            config,
            created,
        };
        // The index is loaded at its first use (`ensure_index`).
        Ok(repo)
    }
}

/// Where records are cached ([`crate::record_cache`]), if they are.
fn record_dir(cache: &IndexCache, storage: &Storage, options: &OpenOptions) -> Option<PathBuf> {
    let wanted = options
        .cache_records
        .unwrap_or_else(|| storage.capabilities().cache_records);
    cache
        .dir()
        .filter(|_| wanted && !cache.is_temporary())
        .map(|dir| dir.join("records"))
}

/// What a store without a config holds that only a repository with one
/// writes, in words (`"clients/ is not empty"`), if anything: every object
/// but the creation's claim and key slots is written after the config
/// (see "Crash safety" in the format doc), so such objects mean that the
/// config was lost, not that a creation crashed. The folders are looked
/// at in the order a first backup fills them, largest last, and the
/// looking stops at the first that holds anything.
fn holds_objects(storage: &Storage) -> RepoResult<Option<String>> {
    for folder in ["clients/", "index/", "generations/", "packs/"] {
        let listed = match folder {
            "generations/" | "packs/" => storage.list_recursive(folder)?,
            _ => storage.list(folder)?,
        };
        if !listed.is_empty() {
            return Ok(Some(format!("{folder} is not empty")));
        }
    }
    Ok(None)
}

/// What is where a new repository would be made that a repository does
/// not hold (a few names of it, for the message): a mistyped
/// `--repository ~/Documents` made a repository among the user's files,
/// exit 0, and a file of theirs named like one of its objects
/// (`creating/x`) then failed every later backup. A repository's own
/// names are no obstacle (another process may be creating it now, or a
/// creation was cut short), nor are the names that file systems, desktops
/// and file servers put in a disk's or share's root (`lost+found`, a
/// trash folder, `System Volume Information`, Synology's `@eaDir`); any
/// other name is, a dot-file included (`-r ~` on a new account).
fn foreign_things(storage: &Storage) -> RepoResult<Option<String>> {
    const OURS: [&str; 10] = [
        "config",
        "clients",
        "index",
        "generations",
        "packs",
        "locks",
        "prune",
        "keys",
        "creating",
        ".tmp",
    ];
    const SYSTEMS: [&str; 16] = [
        "lost+found",
        ".Trashes",
        ".Spotlight-V100",
        ".fseventsd",
        ".DS_Store",
        ".TemporaryItems",
        ".apdisk",
        "System Volume Information",
        "$RECYCLE.BIN",
        "RECYCLER",
        "@eaDir",
        "#recycle",
        "#snapshot",
        ".snapshot",
        ".snapshots",
        ".zfs",
    ];
    // `.new-ID`: a local folder's object being created under its
    // temporary name by another process (`backend/local.rs`).
    let ours = |name: &str| OURS.contains(&name) || name.starts_with(".new-");
    let system = |name: &str| {
        SYSTEMS.contains(&name) || name.starts_with(".Trash-") || name.starts_with("._")
    };
    let mut found: Vec<String> = storage
        .list("")?
        .into_iter()
        .chain(
            storage
                .list_folders("")?
                .into_iter()
                .map(|f| format!("{f}/")),
        )
        .filter(|name| {
            let bare = name.trim_end_matches('/');
            !ours(bare) && !system(bare)
        })
        .collect();
    if found.is_empty() {
        return Ok(None);
    }
    found.sort();
    let more = found.len().saturating_sub(3);
    found.truncate(3);
    let mut text = found
        .iter()
        .map(|n| crate::error::shown(n))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    Ok(Some(text))
}

/// The names this machine records the repository at `url` under
/// ([`known::identity`]).
fn identity(url: &std::ffi::OsStr, options: &OpenOptions) -> RepoResult<Vec<String>> {
    let location = crate::location::Location::parse_os(url).map_err(StorageError::from)?;
    Ok(known::identity(&location, &options.storage))
}

/// Refuse to make a repository where `storage` holds things of someone
/// else's ([`foreign_things`]).
fn refuse_foreign_things(storage: &Storage) -> RepoResult<()> {
    match foreign_things(storage)? {
        Some(found) => Err(RepoError::NotEmpty {
            url: storage.url().to_string(),
            found,
        }),
        None => Ok(()),
    }
}

/// A repository's config and its token key, as [`keys::unlock`] gives them.
type Unlocked = (RepoConfig, Option<[u8; 32]>);

/// Create a new repository in `storage` (or open the one another process
/// created meanwhile): claim the creation, then let the filters choose
/// the seal and write the key slots and the config. Also says whether
/// this process made it (false: another one did meanwhile).
fn create(
    storage: &Storage,
    options: &OpenOptions,
    filter: &dyn ObjectFilter,
    identity: &[String],
) -> RepoResult<(Unlocked, bool)> {
    // Before the claim writes anything.
    refuse_foreign_things(storage)?;
    let mut guard = match creation::claim(storage, options.lock_timeout)? {
        creation::Claim::Won(guard) => {
            // No config, and this process makes it: unless one was lost.
            if let Some(found) = holds_objects(storage)? {
                return Err(RepoError::ConfigMissing {
                    url: storage.url().to_string(),
                    found,
                });
            }
            guard
        }
        creation::Claim::Created(bytes) => {
            let config = parse_config(storage.url(), &bytes)?;
            tracing::info!(
                "repository {} was created meanwhile by another obnam; using it",
                storage.url()
            );
            return Ok((keys::unlock(storage, filter, config, None)?, false));
        }
    };
    let config = RepoConfig {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        id: ObjectId::random().to_hex(),
        // humantime panics on a time before 1970 (a clock set wrong).
        created: humantime::format_rfc3339_seconds(SystemTime::now().max(SystemTime::UNIX_EPOCH))
            .to_string(),
        seal: None,
        tokens: Some(TokenFunction::BLAKE3.into()),
    };
    // The guard removes the claim when this returns, in success or
    // failure (and before the caller abandons a failed creation).
    let ours = config.id.clone();
    guard.before_config = Some(Box::new(|config: &RepoConfig, bytes: &[u8]| {
        (options.known).admit_new(identity, &config.id, config.seal.is_some(), bytes)
    }));
    let unlocked = keys::unlock(storage, filter, config, Some(&guard))?;
    // On a store without conditional writes two processes may both win
    // the claim; the config that is there says whose repository it is.
    let won = unlocked.0.id == ours;
    Ok((unlocked, won))
}
