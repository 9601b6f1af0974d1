//! The local cache of records: generation and client records read from a
//! remote store, kept on the client's disk so that the next run reads
//! again only the records it has not seen.
//!
//! Why: every backup finds its client's latest generation, and `obnam
//! generations`, `restore` and `forget` list the generations too. Each
//! record is an object, and on a remote store each read is a round trip:
//! a client that backs up every hour for a year has 8,760 records, read
//! at every run. A listing of the folder is one request per thousand
//! names (S3), and says of each object its size and its version (an S3
//! `ETag`, a modification time): with the cache, a run lists the folder
//! and reads only the records whose version it has not cached.
//!
//! **Where**: beside the index cache ([`crate::index_cache`]), in
//! `records/generations/` and `records/clients/` of the repository's
//! folder there, so as
//! private as it is (the records are held decoded: in a sealed repository
//! their times, file counts and sizes are in the clear there, as the
//! index entries are). A run whose index cache is temporary keeps no
//! records: they would be gone at its end. A local folder keeps none
//! either: a record read from it costs what one read from the cache does
//! ([`crate::storage::Capabilities::cache_records`]).
//!
//! **What is trusted**: a cached record is used only for a key the
//! listing just showed, with the same [`Stamp`] as when it was cached;
//! what the listing does not show is never taken from the cache (a
//! generation forgotten by another client is gone for this run too). A
//! record altered in the store has another stamp and is read again (but
//! an alteration of the same size within a second, on a store that gives
//! times in seconds and no content hash: SFTP). Each file holds the
//! BLAKE3 hash of the rest: a damaged file is not used (and is replaced
//! by the next read). Files are written under a temporary name and
//! renamed, so runs beside each other see whole files or none.
//!
//! **Within a run**: the generation records a run listed are kept in
//! memory too, so that opening one of them by id (a restore lists the
//! generations, then opens the one it picked; fsck opens each) reads its
//! record no second time, whatever the store. They follow the run's
//! latest listing of their folder (one removed since is dropped when the
//! run lists again) and hold at most 8 MiB, the oldest dropped first.
//!
//! **What is not**: `fsck` reads every record from the store
//! ([`Repository::read_records_from_store`]): a check must see what the
//! repository holds, and a record damaged in the store since it was
//! cached would otherwise go unseen. (Prune takes them from the cache:
//! what it keeps follows the record as its backup committed it.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::codec::Read;
use super::damaged_records::{Damage, Record};
use super::storage::Stamp;
use super::Repository;

/// A record's key and what reading it gave.
type KeyedRead = (String, Read);

/// The length of the hash before the rest of a cache file.
const HASH_LEN: usize = 32;

/// The largest cache file read: a record of the largest size the format
/// allows, its stamp and the hash.
const MAX_FILE_LEN: u64 = crate::limits::MAX_RECORD_LEN as u64 + 4096;

/// What a cache file holds after its hash: the record's stamp and its
/// decoded bytes (JSON).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cached {
    pub(crate) stamp: Stamp,
    #[serde(with = "serde_bytes")]
    pub(crate) record: Vec<u8>,
}

impl Cached {
    /// The bytes of a cache file: the hash of the rest, then the rest.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let body = rmp_serde::to_vec(self).ok()?;
        let mut bytes = blake3::hash(&body).as_bytes().to_vec();
        bytes.extend_from_slice(&body);
        Some(bytes)
    }

    /// What the bytes of a cache file hold, if they are whole.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Cached> {
        let (hash, rest) = bytes.split_at_checked(HASH_LEN)?;
        if blake3::hash(rest).as_bytes() != hash {
            return None;
        }
        rmp_serde::from_slice(rest).ok()
    }
}

/// The records cached for one open repository.
pub(crate) struct RecordCache {
    /// The folder, or `None` if records are not cached.
    dir: Option<PathBuf>,
    /// Set by [`Repository::read_records_from_store`].
    from_store: AtomicBool,
    /// The generation records this process listed last (read, or taken
    /// from the folder), as decoded bytes: a command that lists a
    /// client's generations and then opens one (restore, `ls`, fsck
    /// opening each) does not read its record a second time.
    listed: Mutex<Listed>,
}

/// The records of [`RecordCache::listed`]: at most [`LISTED_BYTES`] of
/// them (a few hundred bytes a generation), the ones listed longest ago
/// dropped first (and read again if opened).
#[derive(Default)]
struct Listed {
    /// Each record with the number of its latest listing.
    by_key: HashMap<String, (u64, Vec<u8>)>,
    /// The keys by the numbers of their latest listings: the oldest first.
    by_number: BTreeMap<u64, String>,
    bytes: usize,
    next: u64,
}

/// The most bytes of records [`Listed`] holds.
const LISTED_BYTES: usize = 8 << 20;

impl Listed {
    fn insert(&mut self, key: &str, bytes: &[u8]) {
        self.remove(key);
        let number = self.next;
        self.next += 1;
        self.bytes += key.len() + bytes.len();
        self.by_key
            .insert(key.to_string(), (number, bytes.to_vec()));
        self.by_number.insert(number, key.to_string());
        while self.bytes > LISTED_BYTES {
            let Some((_, oldest)) = self.by_number.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.by_key.get(key).map(|(_, bytes)| bytes.as_slice())
    }

    fn remove(&mut self, key: &str) {
        if let Some((number, old)) = self.by_key.remove(key) {
            self.by_number.remove(&number);
            self.bytes -= key.len() + old.len();
        }
    }

    /// Drop the records under `folder` that are not in `listed`: a new
    /// listing of the folder no longer shows them (removed meanwhile).
    fn retain_under(&mut self, folder: &str, listed: &HashSet<&str>) {
        let gone: Vec<String> = self
            .by_key
            .keys()
            .filter(|key| key.starts_with(folder) && !listed.contains(key.as_str()))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
    }
}

/// Whether `part` can name a file: the folders and names of records are
/// hex ids; anything else is read from the store, not cached.
fn plain(part: &str) -> bool {
    !part.is_empty() && part.len() <= 64 && part.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl RecordCache {
    /// A cache in `dir`, or none.
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        RecordCache {
            dir,
            from_store: AtomicBool::new(false),
            listed: Mutex::new(Listed::default()),
        }
    }

    fn listed(&self) -> std::sync::MutexGuard<'_, Listed> {
        self.listed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of `key` as this process last listed it, if it did
    /// lately.
    pub(crate) fn listed_record(&self, key: &str) -> Option<Vec<u8>> {
        self.listed().get(key).map(<[u8]>::to_vec)
    }

    /// Whether records are read through the cache.
    pub(crate) fn in_use(&self) -> bool {
        self.dir.is_some() && !self.from_store.load(Ordering::Relaxed)
    }

    /// The file of `key`: `generations/CLIENT/ID` or `clients/ID`.
    fn path(&self, key: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let parts: Vec<&str> = key.split('/').collect();
        let known = matches!(
            parts.as_slice(),
            ["generations", client, id] if plain(client) && plain(id)
        ) || matches!(parts.as_slice(), ["clients", id] if plain(id));
        known.then(|| parts.iter().fold(dir.clone(), |p, part| p.join(part)))
    }

    /// The record cached for `key` at version `stamp`, if there is a whole
    /// one.
    pub(crate) fn get(&self, key: &str, stamp: &Stamp) -> Option<Vec<u8>> {
        if !stamp.distinguishes_versions() {
            return None;
        }
        let file = std::fs::File::open(self.path(key)?).ok()?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_FILE_LEN + 1), &mut bytes)
            .ok()?;
        if bytes.len() as u64 > MAX_FILE_LEN {
            return None;
        }
        let cached = Cached::decode(&bytes)?;
        (cached.stamp == *stamp).then_some(cached.record)
    }

    /// Keep `record`, read from the store at version `stamp`, for `key`.
    /// A failure is not an error: the record is read from the store again
    /// next time.
    pub(crate) fn put(&self, key: &str, stamp: &Stamp, record: &[u8]) {
        if !stamp.distinguishes_versions() {
            return;
        }
        let Some(path) = self.path(key) else {
            return;
        };
        let cached = Cached {
            stamp: stamp.clone(),
            record: record.to_vec(),
        };
        let Some(bytes) = cached.encode() else {
            return;
        };
        if let Err(e) = write_new(&path, &bytes) {
            tracing::debug!("record cache {}: {e}", path.display());
        }
    }

    /// Forget `key` (a record this process removed).
    pub(crate) fn remove(&self, key: &str) {
        self.listed().remove(key);
        if let Some(path) = self.path(key) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Remove the cached records under `folder` (a folder of records,
    /// ending in `/`, or `generations/` for every client's) that are not
    /// in `listed` (whole keys): records removed from the store.
    pub(crate) fn retain(&self, folder: &str, listed: &HashSet<&str>) {
        let Some(dir) = &self.dir else {
            return;
        };
        let mut folders = vec![(dir.join(folder.trim_end_matches('/')), folder.to_string())];
        while let Some((path, prefix)) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let key = format!("{prefix}{name}");
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && prefix == "generations/" {
                    folders.push((entry.path(), format!("{key}/")));
                } else if !is_dir && !listed.contains(key.as_str()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Write `bytes` to `path` under a temporary name, then rename it into
/// place, making its folder as needed.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().ok_or(std::io::ErrorKind::InvalidInput)?;
    std::fs::create_dir_all(folder)?;
    let name = path
        .file_name()
        .ok_or(std::io::ErrorKind::InvalidInput)?
        .to_string_lossy();
    let tmp = folder.join(format!(
        ".tmp-{name}-{}",
        crate::ids::ObjectId::random().to_hex()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl Repository {
    /// From now on, read every generation and client record from the
    /// store, not from the local cache: for a check, which must see what
    /// the repository holds.
    pub fn read_records_from_store(&self) {
        self.records.from_store.store(true, Ordering::Relaxed);
    }

    /// Every record under `folder` (ending in `/`) whose key `wanted`
    /// accepts: directly in it, or, if `recursive`, at any depth; each
    /// with its whole key, sorted by key. Through the local cache where
    /// it is in use; a record listed but gone when read (removed since
    /// the listing) is skipped. A damaged record, and a name that is no
    /// record's, are left out with a warning ([`crate::damaged_records`]);
    /// a record that cannot be read for another reason is an error.
    pub(crate) fn read_listed_records<T: Record>(
        &self,
        folder: &str,
        recursive: bool,
        wanted: &dyn Fn(&str) -> bool,
    ) -> crate::error::RepoResult<Vec<(String, T)>> {
        let wanted = |key: &str| {
            if !T::valid_key(key) {
                self.damaged.stray(key);
                return false;
            }
            wanted(key)
        };
        let parse = |key: &str, bytes: &[u8]| -> Result<T, String> {
            match serde_json::from_slice::<T>(bytes) {
                Ok(record) => match record.mismatch(self, key) {
                    None => Ok(record),
                    Some(why) => Err(why),
                },
                Err(e) => Err(e.to_string()),
            }
        };
        let sound = |key: &str, bytes: &[u8]| parse(key, bytes).is_ok();
        let (all, read) = if self.records.in_use() {
            self.read_records_through_cache(folder, recursive, &wanted, &sound)?
        } else {
            let all: Vec<String> = match recursive {
                true => self.storage().list_recursive(folder)?,
                false => self
                    .storage()
                    .list(folder)?
                    .into_iter()
                    .map(|name| format!("{folder}{name}"))
                    .collect(),
            };
            let keys: Vec<String> = all.iter().filter(|key| wanted(key)).cloned().collect();
            let read = self.read_objects_each(&keys, &sound)?;
            (all, keys.into_iter().zip(read).collect())
        };
        let listed_keys: HashSet<&str> = all.iter().map(String::as_str).collect();
        if folder.starts_with("generations/") {
            let mut listed = self.records.listed();
            listed.retain_under(folder, &listed_keys);
            for (key, read) in &read {
                if let Read::Bytes(bytes) = read {
                    if sound(key, bytes) {
                        listed.insert(key, bytes);
                    }
                }
            }
        }
        let mut records = Vec::with_capacity(read.len());
        let mut damaged = Vec::new();
        for (key, read) in read {
            match read {
                Read::Bytes(bytes) => match parse(&key, &bytes) {
                    Ok(record) => records.push((key, record)),
                    Err(problem) => {
                        let problem = crate::error::RepoError::corrupt(&key, problem).to_string();
                        damaged.push((key, Damage::content(problem)));
                    }
                },
                Read::Gone => {}
                Read::Damaged(e) => damaged.push((key, Damage::of(&e))),
            }
        }
        self.damaged.note(folder, &listed_keys, damaged);
        Ok(records)
    }

    /// The records of [`read_listed_records`](Self::read_listed_records)
    /// through the cache, as what reading each gave, sorted by key; and
    /// every key the listing showed, wanted or not. Only records that are
    /// `sound` are cached, or taken from the cache: a read cut short must
    /// not stay in the cache as the record, for as long as its object in
    /// the store is unchanged.
    fn read_records_through_cache(
        &self,
        folder: &str,
        recursive: bool,
        wanted: &dyn Fn(&str) -> bool,
        sound: &dyn Fn(&str, &[u8]) -> bool,
    ) -> crate::error::RepoResult<(Vec<String>, Vec<KeyedRead>)> {
        let listed = self.storage().list_stamped(folder, recursive)?;
        let mut records = Vec::with_capacity(listed.len());
        let mut missing = Vec::new();
        for (key, stamp) in listed.iter().filter(|(key, _)| wanted(key)) {
            match self.records.get(key, stamp) {
                Some(bytes) if sound(key, &bytes) => {
                    records.push((key.clone(), Read::Bytes(bytes)))
                }
                _ => missing.push((key.clone(), stamp)),
            }
        }
        let keys: Vec<String> = missing.iter().map(|(key, _)| key.clone()).collect();
        for ((key, stamp), read) in missing.iter().zip(self.read_objects_each(&keys, sound)?) {
            match &read {
                Read::Bytes(bytes) if sound(key, bytes) => self.records.put(key, stamp, bytes),
                _ => self.records.remove(key),
            }
            records.push((key.clone(), read));
        }
        let keys: HashSet<&str> = listed.iter().map(|(key, _)| key.as_str()).collect();
        self.records.retain(folder, &keys);
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let all = listed.into_iter().map(|(key, _)| key).collect();
        Ok((all, records))
    }

    /// Forget the cached record of `key`: it was removed from the store.
    pub(crate) fn uncache_record(&self, key: &str) {
        self.records.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::generation::{Generation, GenerationBuilder};
    use crate::index_cache::IndexCacheDir;
    use crate::object::NoFilters;
    use crate::tree::TreeEntry;
    use crate::OpenOptions;

    /// The repository in `repo`, its records cached under `cache` (as on
    /// a remote store) or not.
    fn open(repo: &Path, cache: &Path, cached: bool) -> Arc<Repository> {
        let options = OpenOptions {
            create: true,
            index_cache: IndexCacheDir::At(cache.into()),
            cache_records: Some(cached),
            ..OpenOptions::default()
        };
        Arc::new(Repository::open(repo.to_str().unwrap(), &options, Arc::new(NoFilters)).unwrap())
    }

    /// Commit a generation of client `c` holding one folder.
    fn commit(repo: &Arc<Repository>) -> Generation {
        repo.add_client("c").unwrap();
        let b = GenerationBuilder::new(repo.clone(), "c", true).unwrap();
        b.put(b"/data", TreeEntry::bare_dir(b"")).unwrap();
        b.finish_dir(b"/data").unwrap();
        b.commit(false).unwrap()
    }

    /// The files under `dir`, at any depth (no temporary ones).
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                out.extend(files(&entry.path()));
            } else {
                out.push(entry.path());
            }
        }
        out.sort();
        out
    }

    /// Write `bytes` over the file at `path` and give it back its
    /// modification time: what a listing shows of it does not change.
    fn alter_unseen(path: &Path, bytes: &[u8]) {
        let modified = std::fs::metadata(path).unwrap().modified().unwrap();
        std::fs::write(path, bytes).unwrap();
        set_modified(path, modified);
    }

    fn set_modified(path: &Path, when: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    /// A second run reads no record it cached; a record altered in the
    /// store is read again once the listing shows it changed, and at once
    /// by a run that reads from the store (fsck); a record removed from
    /// the store is gone from the cache too.
    #[test]
    fn records_are_read_again_only_when_the_listing_shows_another_version() {
        let repo_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let writer = open(repo_dir.path(), cache.path(), true);
        let made: Vec<Generation> = (0..3).map(|_| commit(&writer)).collect();
        let client = writer.client_id("c");
        let records = cache
            .path()
            .join(writer.config().id.clone())
            .join("records");

        let first = open(repo_dir.path(), cache.path(), true);
        assert_eq!(first.generations("c").unwrap(), made);
        assert_eq!(first.clients().unwrap(), ["c"]);
        let cached = files(&records.join("generations").join(&client));
        assert_eq!(cached.len(), 3, "{cached:?}");
        assert_eq!(files(&records.join("clients")).len(), 1);

        // Each record in the store replaced by garbage of its length,
        // unseen by a listing: a run that trusts the cache does not see
        // it; one that reads the store does, and names the record.
        let stored = files(&repo_dir.path().join("generations").join(&client));
        assert_eq!(stored.len(), 3);
        for path in &stored {
            let len = std::fs::metadata(path).unwrap().len() as usize;
            alter_unseen(path, &vec![b'x'; len]);
        }
        let second = open(repo_dir.path(), cache.path(), true);
        assert_eq!(second.generations("c").unwrap(), made);
        // (Damaged records are left out, and named: see
        // `damaged_records`.)
        let checker = open(repo_dir.path(), cache.path(), true);
        checker.read_records_from_store();
        assert_eq!(checker.generations("c").unwrap(), []);
        let damaged = checker.damaged_generations("c").unwrap();
        assert_eq!(damaged.len(), 3, "{damaged:?}");
        assert!(
            damaged.iter().all(|d| d.problem.contains("generations/")),
            "{damaged:?}"
        );
        let uncached = open(repo_dir.path(), cache.path(), false);
        assert_eq!(uncached.generations("c").unwrap(), []);

        // Seen as altered: read again, and the damage named.
        let later = SystemTime::now() + Duration::from_secs(5);
        set_modified(&stored[0], later);
        let third = open(repo_dir.path(), cache.path(), true);
        assert_eq!(third.generations("c").unwrap().len(), 2);
        let name = stored[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let damaged = third.damaged_generations("c").unwrap();
        assert_eq!(damaged.len(), 1, "{damaged:?}");
        assert_eq!(damaged[0].id, name);

        // Removed: gone from what a run lists, and from the cache.
        std::fs::remove_file(&stored[0]).unwrap();
        let fourth = open(repo_dir.path(), cache.path(), true);
        let left = fourth.generations("c").unwrap();
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|g| !name.contains(&g.id)));
        assert_eq!(files(&records.join("generations").join(&client)).len(), 2);
    }

    /// A generation this process listed is opened by id without reading
    /// its record again; one it did not list (or removed) is read.
    #[test]
    fn a_generation_listed_is_opened_without_another_read() {
        let repo_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let writer = open(repo_dir.path(), cache.path(), false);
        let made = vec![commit(&writer), commit(&writer)];
        let lister = open(repo_dir.path(), cache.path(), false);
        assert_eq!(lister.generations("c").unwrap(), made);
        let client = writer.client_id("c");
        let stored = files(&repo_dir.path().join("generations").join(&client));
        for path in &stored {
            std::fs::write(path, b"garbage").unwrap();
        }
        for gen in &made {
            assert_eq!(&lister.generation("c", &gen.id).unwrap(), gen);
        }
        let other = open(repo_dir.path(), cache.path(), false);
        assert!(other.generation("c", &made[0].id).is_err());
        // Removed by this process: gone, even from what it listed.
        lister.remove_generation("c", &made[1].id).unwrap();
        assert!(matches!(
            lister.generation("c", &made[1].id),
            Err(crate::error::RepoError::NoSuchGeneration(..))
        ));
        // Removed by another process: gone once this one lists again.
        let record = repo_dir
            .path()
            .join("generations")
            .join(&client)
            .join(&made[0].id);
        std::fs::remove_file(record).unwrap();
        assert_eq!(lister.generations("c").unwrap(), []);
        assert!(matches!(
            lister.generation("c", &made[0].id),
            Err(crate::error::RepoError::NoSuchGeneration(..))
        ));
    }

    /// What a run keeps of the records it listed stays within its bound,
    /// the oldest dropped first, however often the same ones are listed.
    #[test]
    fn the_records_a_run_listed_are_bounded() {
        let mut listed = Listed::default();
        let record = vec![7u8; 1000];
        let key = |i: usize| format!("generations/c/{i:016x}");
        for round in 0..5 {
            for i in 0..100 {
                listed.insert(&key(i), &record);
            }
            assert_eq!(listed.by_key.len(), 100, "round {round}");
        }
        assert_eq!(listed.by_number.len(), 100);
        let fits = LISTED_BYTES / (record.len() + key(0).len());
        for i in 100..100 + 2 * fits {
            listed.insert(&key(i), &record);
        }
        assert!(listed.bytes <= LISTED_BYTES);
        assert_eq!(listed.by_key.len(), fits);
        assert!(listed.get(&key(0)).is_none());
        assert_eq!(listed.get(&key(100 + 2 * fits - 1)), Some(&record[..]));
        let held: usize = listed
            .by_key
            .iter()
            .map(|(k, (_, b))| k.len() + b.len())
            .sum();
        assert_eq!(held, listed.bytes);
    }

    /// A cache file that fails its hash is not used: the record is read
    /// from the store and cached again.
    #[test]
    fn a_damaged_cache_file_is_read_again_from_the_store() {
        let repo_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let writer = open(repo_dir.path(), cache.path(), true);
        let made = vec![commit(&writer), commit(&writer)];
        assert_eq!(writer.generations("c").unwrap(), made);
        let records = cache
            .path()
            .join(writer.config().id.clone())
            .join("records");
        let cached = files(&records.join("generations"));
        assert_eq!(cached.len(), 2);
        let good = std::fs::read(&cached[0]).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x01;
        std::fs::write(&cached[0], &bad).unwrap();

        let reader = open(repo_dir.path(), cache.path(), true);
        assert_eq!(reader.generations("c").unwrap(), made);
        assert_eq!(std::fs::read(&cached[0]).unwrap(), good);
    }

    /// A listing that tells no versions apart (only sizes) is no ground
    /// for trusting a cached record.
    #[test]
    fn records_are_not_cached_without_a_version_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RecordCache::new(Some(dir.path().into()));
        let key = "generations/00ff/0123456789abcdef";
        let sized = Stamp {
            size: 5,
            etag: None,
            modified_ns: None,
        };
        cache.put(key, &sized, b"{}");
        assert!(files(dir.path()).is_empty());
        let tagged = Stamp {
            etag: Some("\"abc\"".into()),
            ..sized
        };
        cache.put(key, &tagged, b"{}");
        assert_eq!(cache.get(key, &tagged).as_deref(), Some(&b"{}"[..]));
        let other = Stamp {
            etag: Some("\"abd\"".into()),
            ..tagged.clone()
        };
        assert_eq!(cache.get(key, &other), None);
        // Keys that are not records of these kinds, or could name another
        // file, are not cached.
        for key in ["generations/../x/0123", "locks/abc", "generations/a/b/c"] {
            cache.put(key, &tagged, b"{}");
            assert_eq!(cache.get(key, &tagged), None, "{key}");
        }
        assert_eq!(files(dir.path()).len(), 1);
    }

    /// The repository in `repo`, opened as [`open`] does with injected
    /// storage faults.
    /// (The first of seeds `seed`, `seed + 1`, ... under which the
    /// repository's config reads whole.)
    fn open_with_faults(
        repo: &Path,
        cache: &Path,
        cached: bool,
        faults: &str,
        seed: u64,
    ) -> Arc<Repository> {
        let mut options = OpenOptions {
            create: true,
            index_cache: IndexCacheDir::At(cache.into()),
            cache_records: Some(cached),
            ..OpenOptions::default()
        };
        for seed in seed..seed + 100 {
            let spec = format!("{faults},seed={seed}");
            options.storage.faults = crate::fault_injection::FaultSpec::parse(&spec).unwrap();
            if let Ok(repo) =
                Repository::open(repo.to_str().unwrap(), &options, Arc::new(NoFilters))
            {
                return Arc::new(repo);
            }
        }
        panic!("the repository never opened under {faults}");
    }

    /// A record whose read is cut short is read again before it counts as
    /// damaged (left out, with advice to forget it), and what was cut
    /// short is never cached as the record. With a quarter of the reads
    /// cut short, reading each once leaves about 50 of these 200 records
    /// out; read up to three times, about 3.
    #[test]
    fn a_record_read_short_is_read_again_before_it_counts_as_damaged() {
        let repo_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let writer = open(repo_dir.path(), cache.path(), false);
        let made: Vec<Generation> = (0..20).map(|_| commit(&writer)).collect();
        let mut damaged = 0;
        for (run, cached) in (0..10).zip([false, true].into_iter().cycle()) {
            let reader = open_with_faults(
                repo_dir.path(),
                cache.path(),
                cached,
                "short-read=0.25",
                1000 * run,
            );
            let listed = reader.generations("c").unwrap();
            let left_out = reader.damaged_generations("c").unwrap();
            assert_eq!(listed.len() + left_out.len(), made.len());
            damaged += left_out.len();
        }
        assert!(damaged <= 12, "{damaged} of 200 records read as damaged");
        let clean = open(repo_dir.path(), cache.path(), true);
        assert_eq!(clean.generations("c").unwrap(), made);
        assert_eq!(clean.damaged_generations("c").unwrap(), []);
    }

    /// A backup that cannot read its client's newest generation record
    /// (damaged, or read short every time) still commits a generation
    /// that comes after it once it reads whole again: the latest is the
    /// last one committed, which `restore` and the next backup take.
    #[test]
    fn a_generation_committed_past_an_unreadable_record_comes_after_it() {
        let repo_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let repo = open(repo_dir.path(), cache.path(), false);
        let made: Vec<Generation> = (0..3).map(|_| commit(&repo)).collect();
        // The second gone (forgotten), the third unreadable for a while:
        // the highest `seq` that can be read is the first's.
        repo.remove_generation("c", &made[1].id).unwrap();
        let newest = repo_dir
            .path()
            .join("generations")
            .join(repo.client_id("c"))
            .join(&made[2].id);
        let sound = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &sound[..sound.len() / 2]).unwrap();
        let backup = open(repo_dir.path(), cache.path(), false);
        let listed = backup.generations("c").unwrap();
        assert_eq!(listed, [made[0].clone()]);
        let last = commit(&backup);
        std::fs::write(&newest, &sound).unwrap();
        let later = open(repo_dir.path(), cache.path(), false);
        let ids: Vec<String> = later
            .generations("c")
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(ids, [made[0].id.clone(), made[2].id.clone(), last.id]);
    }
}
