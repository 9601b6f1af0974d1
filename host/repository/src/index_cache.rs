//! The local cache of the loaded index: which segment files
//! ([`crate::segment`]) hold the entries of which index objects, where
//! they are, how they are made from index objects, and how they are
//! merged.
//!
//! Why a cache on disk: a repository of 100 TB holds about 400 million
//! chunks; held in memory as sorted 56-byte entries, the index alone
//! would take 22 GB in every run of every client. In segment files a run
//! holds about 1/500 of that (one 8-byte key per 4 KiB page), and reads
//! the pages it needs through the OS page cache. Why on the client's
//! disk, and not in the repository: the entries are decoded (and, in a
//! sealed repository, decrypted) index objects, which only a client that
//! holds the key may have; and a local file can be read a page at a time
//! where a remote object costs a round trip.
//!
//! **Where**: `$XDG_CACHE_HOME/obnam/index/REPOSITORY-ID/`, else
//! `~/.cache/obnam/index/REPOSITORY-ID/` ([`IndexCacheDir::User`], what
//! the `obnam` binary uses), made with mode 0700; segment files are
//! 0600. If that cannot be made, a private temporary folder for the run,
//! removed at its end; if not even that, segments kept in memory (as
//! before, but still sorted and compact). The folder also holds
//! `records/`, a remote store's generation and client records
//! ([`crate::record_cache`]), which this module leaves alone. The cache of a sealed
//! repository holds its entries in the clear: tokens (keyed, so they say
//! nothing of the data without the key), pack ids (random), offsets and
//! lengths; it is as private as the user's home folder.
//!
//! **What covers what**: each segment records the names of the index
//! objects it was made from. At the first load a run lists `index/`,
//! opens every segment in the folder (largest first), and takes each
//! listed index object from the first segment that covers it; the index
//! objects that no segment covers are read from the repository, a batch
//! of about a million entries at a time (so the memory of building is
//! bounded too), each batch sorted and written as a new segment. Entries
//! of index objects that are not listed any more are not trusted (see
//! [`crate::index`]), and are left out when segments are merged; a
//! segment none of whose index objects is listed is deleted.
//!
//! **Merging**: a run that finds more than [`MAX_SEGMENTS`] segments
//! merges (reads in order and writes as one) the smallest ones whose
//! total is at least half the largest of them, so that an entry is
//! rewritten a logarithmic number of times and a lookup reads a page of
//! at most a handful of segments. The first run on a machine writes
//! every index object as a batch and then merges them all into one
//! segment.
//!
//! **Runs beside each other, and kill -9**: a segment is written under a
//! temporary name (`.tmp-*`) and renamed when whole (and synced); a
//! merge renames its result before it deletes what it merged. So a
//! folder listing shows only whole segments, and at worst two that cover
//! the same index objects (each object is then read from one of them).
//! A run that finds a segment gone when it opens it reads the index
//! objects it covered from the repository instead. Temporary files a
//! killed run left are removed a day later.
//!
//! **Damage**: a segment file that fails a check (see
//! [`crate::segment`]) is deleted and not used, and its index objects are
//! read again from the repository: at once when the check fails as the
//! file is opened; when a page of it fails during the run, by the lookup
//! that missed (`Repository::heal_index`), which then asks again. A
//! lookup in a damaged file never counts as a hit.
//!
//! There is no filter for misses (most lookups of a new backup are
//! misses): a miss costs what a hit costs, one 4 KiB page read per
//! segment from the page cache, a few microseconds, which is small beside
//! cutting and hashing the chunk looked up; a filter that saved it would
//! cost a byte or more per chunk of memory, which is what this design
//! avoids.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::ids::ObjectId;
use super::index::{BlobKind, Index, IndexEntry, LoadedSegment};
use super::segment::{CoveredObject, SegEntry, Segment, SegmentWriter};

/// Segments a run keeps before it merges some.
pub const MAX_SEGMENTS: usize = 4;
/// Entries read from index objects before they are written as a segment.
pub const BATCH_ENTRIES: usize = 1 << 20;
/// The suffix of segment files.
const SUFFIX: &str = ".ixs";
/// Temporary files older than this were left by a run that was killed.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

/// Where the index cache is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IndexCacheDir {
    /// In the user's cache folder (`$XDG_CACHE_HOME`, else `~/.cache`),
    /// kept from run to run: what the `obnam` binary uses.
    User,
    /// Under this folder (a folder per repository is made in it).
    At(PathBuf),
    /// A private temporary folder, removed when the repository is
    /// closed: nothing is kept from run to run.
    #[default]
    Temporary,
    /// In memory only.
    Memory,
}

/// The index cache of one open repository.
pub struct IndexCache {
    /// The folder, or `None` for memory only.
    dir: Option<PathBuf>,
    /// Whether the folder is this run's own, removed at the end.
    temporary: bool,
}

impl Drop for IndexCache {
    fn drop(&mut self) {
        self.remove_temporary();
    }
}

/// A folder name for a repository id (ids are hex; anything else is
/// hashed, so that it cannot name another folder).
fn folder_name(repository_id: &str) -> String {
    let plain = !repository_id.is_empty()
        && repository_id.len() <= 64
        && repository_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plain {
        repository_id.to_string()
    } else {
        blake3::hash(repository_id.as_bytes()).to_hex().to_string()
    }
}

/// The user's cache folder for obnam's index caches.
fn user_base() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        });
    let Some(base) = base else {
        // Said: every run then reads the whole index from the repository
        // (a service started with no HOME, say), and nothing told why.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                "neither XDG_CACHE_HOME nor HOME names an absolute folder, so the index cache \
                 is not kept from run to run: each run reads the whole index from the \
                 repository (set HOME, or XDG_CACHE_HOME)"
            )
        });
        return None;
    };
    Some(base.join("obnam").join("index"))
}

/// What marks obnam's cache folder as a cache (<https://bford.info/cachedir/>):
/// a backup of the home folder with `--exclude-caches` (obnam's, or
/// another tool's) leaves it out; without the tag every backup of `~`
/// stored the index cache's segments, rewritten run after run.
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by obnam.\n\
# For information about cache directory tags, see https://bford.info/cachedir/\n";

/// Tag `dir` (obnam's folder in the user's cache folder) as a cache, once.
fn tag_as_cache(dir: &Path) {
    // Only in a folder of the cache's own, not one a symlink leads to: a
    // tag planted in a folder a backup reads makes `--exclude-caches`
    // leave it out.
    if !is_real_dir(dir) {
        return;
    }
    let tag = dir.join("CACHEDIR.TAG");
    if std::fs::symlink_metadata(&tag).is_err() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Best effort: the cache works without it.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tag)
            .and_then(|mut f| f.write_all(CACHEDIR_TAG.as_bytes()));
    }
}

/// Whether `dir` is a folder itself, not a symlink to one.
fn is_real_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
}

/// Make a folder (and its parents) private to the user. A symlink in its
/// place is refused, not followed (whoever planted it would have the
/// mode of the folder it leads to changed, and the cache written there).
fn make_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if !is_real_dir(dir) {
        return Err(io::Error::other(
            "it is a symbolic link, not a folder of obnam's own",
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// How the name of a temporary cache folder begins; the process id
/// follows, then a random name.
const TEMPORARY_PREFIX: &str = "obnam-index-";

/// Remove the temporary cache folders of processes that are gone: a
/// process that ends with `exit` (or is killed) does not remove its own.
fn remove_orphaned_temporary_caches() {
    let Ok(listing) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in listing.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMPORARY_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest
            .split_once('-')
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        // Only folders of this user: another user's are not ours to judge.
        let ours = entry.metadata().is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == rustix::process::getuid().as_raw()
        });
        if !alive && ours {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn random_name() -> String {
    ObjectId::random().to_hex()
}

impl IndexCache {
    /// The cache of repository `repository_id`, as `setting` says, or the
    /// next best place (see the module's docs).
    pub fn open(setting: &IndexCacheDir, repository_id: &str) -> IndexCache {
        let persistent = match setting {
            IndexCacheDir::User => user_base(),
            IndexCacheDir::At(base) => Some(base.clone()),
            IndexCacheDir::Temporary | IndexCacheDir::Memory => None,
        };
        if let Some(base) = persistent {
            let dir = base.join(folder_name(repository_id));
            match make_private_dir(&dir) {
                Ok(()) => {
                    if *setting == IndexCacheDir::User {
                        if let Some(obnam) = base.parent() {
                            tag_as_cache(obnam);
                        }
                    }
                    return IndexCache {
                        dir: Some(dir),
                        temporary: false,
                    };
                }
                Err(e) => tracing::warn!(
                    "index cache {}: {e}; using a temporary one for this run",
                    dir.display()
                ),
            }
        }
        if *setting != IndexCacheDir::Memory {
            remove_orphaned_temporary_caches();
            let dir = std::env::temp_dir().join(format!(
                "{TEMPORARY_PREFIX}{}-{}",
                std::process::id(),
                random_name()
            ));
            let made = {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().mode(0o700).create(&dir)
            };
            match made {
                Ok(()) => {
                    return IndexCache {
                        dir: Some(dir),
                        temporary: true,
                    }
                }
                Err(e) => tracing::warn!(
                    "temporary index cache {}: {e}; keeping the index in memory",
                    dir.display()
                ),
            }
        }
        IndexCache {
            dir: None,
            temporary: false,
        }
    }

    /// Remove the folder if it is this run's own (at the end of the run:
    /// segments open stay readable, and one written after is kept in
    /// memory).
    pub fn remove_temporary(&self) {
        if let (true, Some(dir)) = (self.temporary, &self.dir) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// The folder, if the cache has one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether the folder is this run's own, removed at its end.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Open every whole segment in the folder, largest first. A file that
    /// fails its checks is deleted; temporary files left by killed runs
    /// are removed.
    pub fn segments(&self) -> Vec<Segment> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(listing) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut segments = Vec::new();
        for entry in listing.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if name.starts_with(".tmp-") {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STALE_TMP);
                if old {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if !name.starts_with("seg-") || !name.ends_with(SUFFIX) {
                continue;
            }
            match Segment::open(&path) {
                Ok(segment) => segments.push(segment),
                // Gone since the listing: merged by another run.
                Err(_) if !path.exists() => {}
                // Made by an older obnam: made again in this one's format.
                Err(e) if crate::segment::older_format(&path) => {
                    tracing::debug!("{e}; replacing it (an older format)");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    tracing::warn!("{e}; deleting it (the index objects it held are read again)");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        segments.sort_by_key(|s| std::cmp::Reverse(s.len()));
        segments
    }

    /// Delete a segment's file (it is no longer needed).
    pub fn remove(&self, segment: &Segment) {
        if let Some(path) = segment.path() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Write the entries of a batch of index objects as a segment and use
    /// it. `entries` are tagged with their object's number in `objects`
    /// (name, entries). A segment that cannot be written to the folder is
    /// kept in memory.
    pub fn add_batch(
        &self,
        index: &mut Index,
        mut entries: Vec<(IndexEntry, u32)>,
        objects: &[(String, u64)],
    ) {
        if objects.is_empty() {
            return;
        }
        // In the segment's order (pack ids order as the segment's pack
        // numbers do), sorted where they are: the segment is then written
        // as they come, not from a sorted copy (64 MB for a batch of 2^20
        // entries, a new machine's first run's peak).
        entries.sort_unstable_by_key(|(e, object)| {
            (
                e.id,
                index.pack_id(e.location.pack),
                e.location.offset,
                *object,
            )
        });
        let segment =
            match build_segment(index, entries.iter().copied(), objects, self.dir.as_deref()) {
                Ok(segment) => segment,
                Err(e) => {
                    // Only a failure to get randomness for the salt gets here
                    // (the file's failures fall back to memory).
                    tracing::error!("could not keep index entries: {e}");
                    return;
                }
            };
        let live = vec![true; segment.objects.len()];
        index.add_segment(segment, live);
    }

    /// Keep, for the runs after this one, the entries of index objects
    /// this run wrote (`objects`: each object's name and how many entries
    /// it holds; `entries`: exactly those, each with its object's number),
    /// so that the next run does not read them back from the repository
    /// and sort them into a segment itself (the
    /// first no-change backup of the benchmark corpus after its initial
    /// one spent 10 of its 140 ms on that). Only a folder that
    /// outlives the run is written to; a failure is only logged (the next
    /// run reads the objects, as it would have). Returns the segment, for
    /// this run to use too.
    pub fn remember(
        &self,
        index: &Index,
        objects: &[(String, u64)],
        entries: impl Iterator<Item = (IndexEntry, u32)> + Clone,
    ) -> Option<Segment> {
        let dir = self.dir.as_deref().filter(|_| !self.temporary)?;
        if objects.is_empty() {
            return None;
        }
        build_or_warn(
            index,
            entries,
            objects,
            dir,
            "keep this run's index entries in the cache",
        )
    }

    /// Write this process's own chunks of packs whose index objects it
    /// wrote (`objects`: each object's name and how many entries it holds;
    /// `entries`: exactly those, each with its object's number) as a
    /// segment in the folder, so that they need not be held in memory
    /// until the run ends. `None` where there is no folder (a segment in
    /// memory would save nothing) or it cannot be written.
    pub fn keep_own(
        &self,
        index: &Index,
        objects: &[(String, u64)],
        entries: impl Iterator<Item = (IndexEntry, u32)> + Clone,
    ) -> Option<Segment> {
        let dir = self.dir.as_deref()?;
        build_or_warn(
            index,
            entries,
            objects,
            dir,
            "move this run's index entries to the cache",
        )
        .filter(|segment| segment.path().is_some())
    }

    /// Merge segments while there are more than [`MAX_SEGMENTS`] (see the
    /// module's docs). A merge that fails leaves the segments as they
    /// were.
    pub fn compact(&self, index: &mut Index) {
        // A run's own segments are not merged: its merge of its index
        // objects reads them, and they go when it has.
        let loaded = |index: &Index| -> Vec<(usize, u64)> {
            index
                .segments()
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.own)
                .map(|(i, s)| (i, s.segment.len()))
                .collect()
        };
        while loaded(index).len() > MAX_SEGMENTS {
            let picked = pick_merge(&loaded(index));
            let merged = match self.merge(index, &picked) {
                Ok(merged) => merged,
                Err(e) => {
                    tracing::warn!("merging index cache segments: {e}");
                    return;
                }
            };
            let inputs: Vec<*const Segment> = picked
                .iter()
                .map(|i| Arc::as_ptr(&index.segments()[*i].segment))
                .collect();
            let gone = index.remove_segments(|s| inputs.contains(&Arc::as_ptr(&s.segment)));
            let live = vec![true; merged.objects.len()];
            index.add_segment(merged, live);
            for segment in gone {
                self.remove(&segment);
            }
        }
    }

    /// Write the trusted entries of segments `picked` as one.
    fn merge(&self, index: &Index, picked: &[usize]) -> io::Result<Segment> {
        let inputs: Vec<&LoadedSegment> = picked.iter().map(|i| &index.segments()[*i]).collect();
        // The live objects of each input, numbered anew, and their packs.
        let mut packs: Vec<ObjectId> = Vec::new();
        let mut object_maps: Vec<Vec<Option<u32>>> = Vec::new();
        let mut kept: Vec<(usize, &CoveredObject)> = Vec::new();
        for (k, s) in inputs.iter().enumerate() {
            let mut map = vec![None; s.segment.objects.len()];
            for (o, object) in s.segment.objects.iter().enumerate() {
                if s.live.get(o).copied().unwrap_or(false) {
                    map[o] = Some(kept.len() as u32);
                    kept.push((k, object));
                    packs.extend(object.packs.iter().filter_map(|n| s.pack_id(index, *n)));
                }
            }
            object_maps.push(map);
        }
        packs.sort_unstable();
        packs.dedup();
        let pack_maps: Vec<Vec<Option<u32>>> = inputs
            .iter()
            .map(|s| {
                (0..s.segment.pack_count() as u32)
                    .map(|n| {
                        let id = s.pack_id(index, n)?;
                        packs.binary_search(&id).ok().map(|n| n as u32)
                    })
                    .collect()
            })
            .collect();
        let objects: Vec<CoveredObject> = kept
            .iter()
            .map(|(k, o)| CoveredObject {
                name: o.name.clone(),
                entries: o.entries,
                packs: o
                    .packs
                    .iter()
                    .filter_map(|n| pack_maps[*k].get(*n as usize).copied().flatten())
                    .collect(),
            })
            .collect();
        let mut fill = |w: &mut SegmentWriter| -> io::Result<()> {
            let mut cursors: Vec<_> = inputs.iter().map(|s| s.segment.cursor()).collect();
            // The next trusted entry of input `k`, renumbered.
            let mut next = |k: usize| -> io::Result<Option<SegEntry>> {
                let cursor = &mut cursors[k];
                while let Some(e) = cursor.peek().map_err(io::Error::other)?.copied() {
                    cursor.advance();
                    let object = object_maps[k].get(e.object as usize).copied().flatten();
                    let pack = pack_maps[k].get(e.pack as usize).copied().flatten();
                    if let (Some(object), Some(pack)) = (object, pack) {
                        return Ok(Some(SegEntry { object, pack, ..e }));
                    }
                }
                Ok(None)
            };
            let key = |e: &SegEntry| (e.id, e.pack, e.offset, e.object);
            let mut heads = BinaryHeap::new();
            for k in 0..inputs.len() {
                if let Some(e) = next(k)? {
                    heads.push(Reverse((key(&e), k, e.length, e.kind as u8)));
                }
            }
            while let Some(Reverse(((id, pack, offset, object), k, length, kind))) = heads.pop() {
                let kind = BlobKind::from_u8(kind).ok_or_else(|| io::Error::other("bad kind"))?;
                w.push(&SegEntry {
                    id,
                    pack,
                    offset,
                    length,
                    kind,
                    object,
                })?;
                if let Some(e) = next(k)? {
                    heads.push(Reverse((key(&e), k, e.length, e.kind as u8)));
                }
            }
            Ok(())
        };
        write_segment(self.dir.as_deref(), &packs, &objects, &mut fill)
    }
}

/// [`build_segment`] in `dir` (or, if it cannot be written there, in
/// memory); a failure is logged as what could not be done.
fn build_or_warn(
    index: &Index,
    entries: impl Iterator<Item = (IndexEntry, u32)> + Clone,
    objects: &[(String, u64)],
    dir: &Path,
    what: &str,
) -> Option<Segment> {
    build_segment(index, entries, objects, Some(dir))
        .inspect_err(|e| tracing::warn!("could not {what}: {e}"))
        .ok()
}

/// Which segments to merge: the smallest ones, from the first (by size,
/// largest first) that is no more than twice the total of those smaller
/// than it; at least two.
fn pick_merge(segments: &[(usize, u64)]) -> Vec<usize> {
    let mut order: Vec<(usize, u64)> = segments.to_vec();
    order.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let sizes: Vec<u64> = order.iter().map(|(_, len)| *len).collect();
    let mut smaller = 0u64;
    let mut from = sizes.len().saturating_sub(2);
    for i in (0..sizes.len()).rev() {
        if i + 1 < sizes.len() && sizes[i] <= smaller.saturating_mul(2) {
            from = from.min(i);
        }
        smaller += sizes[i];
    }
    order[from..].iter().map(|(i, _)| *i).collect()
}

/// Write a segment into `dir` (under a temporary name, renamed when whole),
/// or in memory when `dir` is `None`; `fill` pushes its entries.
fn write_segment(
    dir: Option<&Path>,
    packs: &[ObjectId],
    objects: &[CoveredObject],
    fill: &mut dyn FnMut(&mut SegmentWriter) -> io::Result<()>,
) -> io::Result<Segment> {
    let Some(dir) = dir else {
        let mut w = SegmentWriter::new(None, packs.len(), objects.len())?;
        fill(&mut w)?;
        let bytes = w
            .finish(packs, objects)?
            .ok_or_else(|| io::Error::other("a segment in memory has no bytes"))?;
        return Segment::from_bytes(bytes).map_err(io::Error::other);
    };
    let name = random_name();
    let tmp = dir.join(format!(".tmp-{name}"));
    let path = dir.join(format!("seg-{name}{SUFFIX}"));
    let result = (|| {
        let mut w = SegmentWriter::new(Some(&tmp), packs.len(), objects.len())?;
        fill(&mut w)?;
        w.finish(packs, objects)?;
        std::fs::rename(&tmp, &path)?;
        Segment::open(&path).map_err(io::Error::other)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Sort entries read from index objects (tagged with their object's
/// number in `objects`: name, entries) and write them as a segment, in
/// `dir` if it can be written there, else in memory. Entries that come
/// in the segment's order already (a run's own, from its sorted map) are
/// written as they come, not gathered into a sorted list first (64 bytes
/// an entry).
pub fn build_segment(
    index: &Index,
    entries: impl Iterator<Item = (IndexEntry, u32)> + Clone,
    objects: &[(String, u64)],
    dir: Option<&Path>,
) -> io::Result<Segment> {
    let mut packs: Vec<ObjectId> = entries
        .clone()
        .filter_map(|(e, _)| index.pack_id(e.location.pack))
        .collect();
    packs.sort_unstable();
    packs.dedup();
    let numbers: HashMap<u32, u32> = entries
        .clone()
        .filter_map(|(e, _)| {
            let id = index.pack_id(e.location.pack)?;
            let local = packs.binary_search(&id).ok()?;
            Some((e.location.pack, local as u32))
        })
        .collect();
    // An entry as the segment holds it, if its pack and object are known.
    let seg_entry = |(e, object): (IndexEntry, u32)| -> Option<SegEntry> {
        let pack = *numbers.get(&e.location.pack)?;
        ((object as usize) < objects.len()).then_some(SegEntry {
            id: e.id,
            pack,
            offset: e.location.offset,
            length: e.location.length,
            kind: e.location.kind,
            object,
        })
    };
    let order = |e: &SegEntry| (e.id, e.pack, e.offset, e.object);
    let mut object_packs: Vec<Vec<u32>> = vec![Vec::new(); objects.len()];
    let mut in_order = true;
    let mut previous = None;
    for e in entries.clone().filter_map(seg_entry) {
        object_packs[e.object as usize].push(e.pack);
        in_order &= previous.is_none_or(|p| p <= order(&e));
        previous = Some(order(&e));
    }
    let sorted: Vec<SegEntry> = if in_order {
        Vec::new()
    } else {
        // Counted, not taken from the iterator's hint: one of several
        // lists gives none, and the list must not grow by doubling.
        let mut sorted = Vec::with_capacity(entries.clone().count());
        sorted.extend(entries.clone().filter_map(seg_entry));
        sorted.sort_unstable_by_key(order);
        sorted
    };
    let covered: Vec<CoveredObject> = objects
        .iter()
        .zip(object_packs)
        .map(|((name, count), mut listed)| {
            listed.sort_unstable();
            listed.dedup();
            CoveredObject {
                name: name.clone(),
                entries: *count,
                packs: listed,
            }
        })
        .collect();
    let mut fill = |w: &mut SegmentWriter| -> io::Result<()> {
        if in_order {
            for e in entries.clone().filter_map(seg_entry) {
                w.push(&e)?;
            }
        } else {
            for e in &sorted {
                w.push(e)?;
            }
        }
        Ok(())
    };
    match write_segment(dir, &packs, &covered, &mut fill) {
        Ok(segment) => Ok(segment),
        Err(e) if dir.is_some() => {
            tracing::warn!("writing an index cache segment: {e}; keeping it in memory");
            write_segment(None, &packs, &covered, &mut fill)
        }
        Err(e) => Err(e),
    }
}
