//! Tests of the paged index ([`crate::index`] over [`crate::segment`]
//! files kept by [`crate::index_cache`]): its answers against a plain
//! model of what the index objects say, and the cache's behaviour when
//! its files are damaged, stale, or written by two runs at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ids::{ChunkId, ObjectId, Token};
use super::index::{BlobKind, Index, IndexEntry, Location};
use super::index_cache::{IndexCache, IndexCacheDir, MAX_SEGMENTS};
use super::object::NoFilters;
use super::{OpenOptions, Repository};

/// A small deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One entry as an index object lists it, with its pack by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ModelEntry {
    id: ChunkId,
    pack: ObjectId,
    offset: u32,
    length: u32,
}

/// What the index objects say, answered the plain way: every entry of
/// every live object in one list.
struct Model {
    objects: BTreeMap<String, Vec<ModelEntry>>,
    live: HashSet<String>,
    planned: HashSet<ObjectId>,
    /// Packs found missing (0) or cut short (their size).
    dropped: HashMap<ObjectId, u64>,
    added: BTreeMap<ChunkId, ModelEntry>,
}

impl Model {
    /// Whether an entry still counts: its pack neither gone nor cut
    /// short before the blob's end.
    fn kept(&self, e: &ModelEntry) -> bool {
        still_counts(&self.dropped, e)
    }

    /// Trusted copies of `id` (all ids of `token` if `id` is None), one
    /// per (id, pack), in (id, pack id, offset) order.
    fn copies(&self, token: &Token, id: Option<&ChunkId>) -> Vec<ModelEntry> {
        let mut out: Vec<ModelEntry> = self
            .objects
            .iter()
            .filter(|(name, _)| self.live.contains(*name))
            .flat_map(|(_, entries)| entries)
            .filter(|e| match id {
                Some(id) => e.id == *id,
                None => e.id.token == *token,
            })
            .filter(|e| self.kept(e))
            .copied()
            .collect();
        out.sort_by_key(|e| (e.id, e.pack, e.offset));
        out.dedup_by_key(|e| (e.id, e.pack));
        out
    }

    fn get(&self, id: &ChunkId) -> Option<(ObjectId, u32)> {
        if let Some(e) = self.added.get(id) {
            return Some((e.pack, e.offset));
        }
        let copies = self.copies(&id.token, Some(id));
        copies
            .iter()
            .find(|e| !self.planned.contains(&e.pack))
            .or(copies.first())
            .map(|e| (e.pack, e.offset))
    }

    fn get_kept(&self, id: &ChunkId) -> Option<(ObjectId, u32)> {
        if let Some(e) = self.added.get(id) {
            return Some((e.pack, e.offset));
        }
        self.copies(&id.token, Some(id))
            .iter()
            .find(|e| !self.planned.contains(&e.pack))
            .map(|e| (e.pack, e.offset))
    }

    fn find(&self, token: &Token) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self
            .copies(token, None)
            .iter()
            .filter(|e| !self.planned.contains(&e.pack))
            .map(|e| e.id)
            .chain(self.added.keys().filter(|id| id.token == *token).copied())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Every blob with its packs, in id order.
    fn blobs(&self) -> Vec<(ChunkId, Vec<ObjectId>)> {
        let mut all: BTreeMap<ChunkId, Vec<ObjectId>> = BTreeMap::new();
        for (name, entries) in &self.objects {
            if !self.live.contains(name) {
                continue;
            }
            for e in entries.iter().filter(|e| self.kept(e)) {
                all.entry(e.id).or_default().push(e.pack);
            }
        }
        for (id, e) in &self.added {
            all.entry(*id).or_default().push(e.pack);
        }
        all.into_iter()
            .map(|(id, mut packs)| {
                packs.sort();
                packs.dedup();
                (id, packs)
            })
            .collect()
    }
}

/// Whether entry `e` still counts after the packs of `dropped` were
/// found missing or cut short.
fn still_counts(dropped: &HashMap<ObjectId, u64>, e: &ModelEntry) -> bool {
    match dropped.get(&e.pack) {
        None => true,
        Some(size) => *size > 0 && u64::from(e.offset) + u64::from(e.length) <= *size,
    }
}

/// Tokens from a small space (so that ids repeat across objects and
/// packs), variants mostly 0.
fn random_id(rng: &mut Rng) -> ChunkId {
    let mut token = [0u8; 32];
    let n = rng.below(400) as u16;
    token[..2].copy_from_slice(&n.to_be_bytes());
    // Some tokens share their first 8 bytes, to exercise page keys.
    token[31] = rng.below(3) as u8;
    ChunkId {
        token: Token(token),
        variant: if rng.below(5) == 0 { rng.below(3) } else { 0 },
    }
}

/// A model of `objects` index objects over `packs` packs, with
/// duplicates: an entry listed by two objects, a blob in two packs.
fn random_model(rng: &mut Rng, objects: usize, packs: usize) -> Model {
    let pack_ids: Vec<ObjectId> = (0..packs).map(|_| ObjectId::random()).collect();
    let mut model = Model {
        objects: BTreeMap::new(),
        live: HashSet::new(),
        planned: HashSet::new(),
        dropped: HashMap::new(),
        added: BTreeMap::new(),
    };
    let mut previous: Vec<ModelEntry> = Vec::new();
    for o in 0..objects {
        let name = format!("{o:04x}{}", ObjectId::random().to_hex());
        let count = rng.below(300) as usize;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let e = if !previous.is_empty() && rng.below(10) == 0 {
                // The same entry again (a merged object beside its parts).
                previous[rng.below(previous.len() as u64) as usize]
            } else {
                ModelEntry {
                    id: random_id(rng),
                    pack: pack_ids[rng.below(packs as u64) as usize],
                    offset: rng.below(1 << 20) as u32,
                    length: 1 + rng.below(1000) as u32,
                }
            };
            entries.push(e);
        }
        previous.extend(&entries);
        model.live.insert(name.clone());
        model.objects.insert(name, entries);
    }
    model
}

fn location(index: &mut Index, e: &ModelEntry) -> Location {
    Location {
        pack: index.pack_number(e.pack),
        offset: e.offset,
        length: e.length,
        kind: BlobKind::Data,
    }
}

/// The paged index of a model's objects, a few objects per batch (so
/// that there are more segments than [`MAX_SEGMENTS`] and they merge).
fn paged_index(model: &Model, cache: &IndexCache) -> Index {
    let mut index = Index::default();
    let names: Vec<&String> = model.objects.keys().collect();
    for group in names.chunks(3) {
        let mut batch = Vec::new();
        let mut objects = Vec::new();
        for name in group {
            let entries = &model.objects[*name];
            let number = objects.len() as u32;
            objects.push(((*name).clone(), entries.len() as u64));
            for e in entries {
                let location = location(&mut index, e);
                batch.push((IndexEntry { id: e.id, location }, number));
            }
        }
        cache.add_batch(&mut index, batch, &objects);
    }
    cache.compact(&mut index);
    index
}

/// Compare every answer of `index` with `model`'s, for the ids of
/// `probe` (and a few never stored).
fn assert_same(index: &Index, model: &Model, probe: &[ChunkId]) {
    let at = |l: Option<Location>| l.map(|l| (index.pack_id(l.pack).unwrap(), l.offset));
    for id in probe {
        assert_eq!(at(index.get(id)), model.get(id), "get {id}");
        assert_eq!(at(index.get_kept(id)), model.get_kept(id), "get_kept {id}");
        assert_eq!(
            index.has_kept(id),
            model.get_kept(id).is_some(),
            "has_kept {id}"
        );
        assert_eq!(index.find(&id.token), model.find(&id.token), "find {id}");
    }
    let mut blobs = Vec::new();
    index
        .for_each_blob(|id, places| {
            let mut packs: Vec<ObjectId> = places
                .iter()
                .map(|l| index.pack_id(l.pack).unwrap())
                .collect();
            packs.sort();
            blobs.push((id, packs));
        })
        .unwrap();
    assert_eq!(blobs, model.blobs(), "for_each_blob");
    let mut entries: Vec<(ChunkId, ObjectId)> = index
        .entries()
        .map(|e| {
            let e = e.unwrap();
            (e.id, index.pack_id(e.location.pack).unwrap())
        })
        .collect();
    entries.sort();
    let expected: Vec<(ChunkId, ObjectId)> = model
        .blobs()
        .into_iter()
        .flat_map(|(id, packs)| packs.into_iter().map(move |p| (id, p)))
        .collect();
    assert_eq!(entries, expected, "entries");
}

#[test]
fn paged_answers_equal_the_plain_ones_on_random_data() {
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::open(&IndexCacheDir::At(dir.path().into()), "r");
        let mut model = random_model(&mut rng, 20, 12);
        let mut index = paged_index(&model, &cache);
        assert!(index.segments().len() <= MAX_SEGMENTS);
        let mut probe: Vec<ChunkId> = model.objects.values().flatten().map(|e| e.id).collect();
        probe.sort();
        probe.dedup();
        probe.extend((0..50).map(|_| random_id(&mut rng)));
        assert_same(&index, &model, &probe);

        // A prune plans some packs; this run adds some blobs.
        let packs: Vec<ObjectId> = model
            .objects
            .values()
            .flatten()
            .map(|e| e.pack)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let planned: Vec<ObjectId> = packs.iter().take(3).copied().collect();
        index.set_planned(planned.iter().copied());
        model.planned.extend(planned);
        let new_pack = ObjectId::random();
        for _ in 0..40 {
            let e = ModelEntry {
                id: random_id(&mut rng),
                pack: new_pack,
                offset: rng.below(1000) as u32,
                length: 10,
            };
            let location = location(&mut index, &e);
            index.add(e.id, location);
            model.added.insert(e.id, e);
        }
        assert_same(&index, &model, &probe);

        // Index objects go (merged or pruned away since the cache was
        // made): their entries are not trusted any more.
        let gone: Vec<String> = model.objects.keys().step_by(3).cloned().collect();
        for s in index.segments_mut() {
            let segment = s.segment.clone();
            for (o, live) in segment.objects.iter().zip(s.live.iter_mut()) {
                if gone.contains(&o.name) {
                    *live = false;
                }
            }
        }
        for name in &gone {
            model.live.remove(name);
        }
        assert_same(&index, &model, &probe);

        // Packs found missing are dropped.
        let missing: HashSet<u32> = packs
            .iter()
            .skip(3)
            .take(2)
            .map(|p| index.pack_number(*p))
            .collect();
        let (lost, _) = index.retain_packs(|n| !missing.contains(&n)).unwrap();
        model
            .dropped
            .extend(missing.iter().map(|n| (index.pack_id(*n).unwrap(), 0)));
        for id in &lost {
            assert_eq!(model.get(id), None, "{id} was lost but has a copy");
        }
        assert_same(&index, &model, &probe);

        // Packs found cut short lose the blobs past the cut, and only
        // those: one cut in the middle, one cut to nothing, one gone
        // already (it stays gone), and this run's own pack.
        let cut: HashMap<u32, u64> = [
            (packs[5], 1 << 19),
            (packs[6], 0),
            (packs[3], 1 << 19),
            (new_pack, 500),
        ]
        .into_iter()
        .map(|(p, size)| (index.pack_number(p), size))
        .collect();
        let (lost, _) = index.cut_packs(&cut).unwrap();
        for (n, size) in &cut {
            let pack = index.pack_id(*n).unwrap();
            let kept = model
                .dropped
                .get(&pack)
                .map_or(*size, |was| (*was).min(*size));
            model.dropped.insert(pack, kept);
        }
        model.added.retain(|_, e| still_counts(&model.dropped, e));
        for id in &lost {
            assert_eq!(model.get(id), None, "{id} was lost but has a copy");
        }
        assert!(!lost.is_empty(), "nothing was past the cuts");
        assert_same(&index, &model, &probe);

        // And the same again, with segments merged after the changes:
        // what is not trusted is left out of the merge.
        let mut again = paged_index(&model, &cache);
        again.set_planned(model.planned.iter().copied());
        for (id, e) in &model.added {
            let location = location(&mut again, e);
            again.add(*id, location);
        }
        for s in again.segments_mut() {
            let segment = s.segment.clone();
            for (o, live) in segment.objects.iter().zip(s.live.iter_mut()) {
                *live = model.live.contains(&o.name);
            }
        }
        let missing: HashSet<u32> = model
            .dropped
            .iter()
            .filter(|(_, size)| **size == 0)
            .map(|(p, _)| again.pack_number(*p))
            .collect();
        again.retain_packs(|n| !missing.contains(&n)).unwrap();
        let cut: HashMap<u32, u64> = model
            .dropped
            .iter()
            .filter(|(_, size)| **size > 0)
            .map(|(p, size)| (again.pack_number(*p), *size))
            .collect();
        again.cut_packs(&cut).unwrap();
        assert_same(&again, &model, &probe);
    }
}

// Through the repository: runs that share a cache folder.

fn options(cache: &Path) -> OpenOptions {
    OpenOptions {
        create: true,
        pack_size: 1 << 16,
        index_cache: IndexCacheDir::At(cache.to_path_buf()),
        ..OpenOptions::default()
    }
}

/// The repository at `repo`, opened with its index cache in `cache`, and
/// its index loaded (as a run's first use of it would).
fn open_with(repo: &Path, cache: &Path) -> Repository {
    let repo =
        Repository::open(repo.to_str().unwrap(), &options(cache), Arc::new(NoFilters)).unwrap();
    repo.ensure_index().unwrap();
    repo
}

fn chunk(i: u32) -> Vec<u8> {
    let mut data = format!("cached chunk {i} ").into_bytes();
    data.resize(300 + (i as usize % 200), (i % 251) as u8);
    data
}

/// Store chunks `range` in one run; returns their ids.
fn store(repo: &Repository, range: std::ops::Range<u32>) -> Vec<ChunkId> {
    crate::tests::store_made(repo, range, chunk)
}

/// The segment files of the cache folder (of the one repository in it).
fn segment_files(cache: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for repo in std::fs::read_dir(cache).unwrap() {
        for f in std::fs::read_dir(repo.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|e| e == "ixs") {
                files.push(path);
            }
        }
    }
    files
}

fn absent() -> ChunkId {
    ChunkId::first(Token([0xee; 32]))
}

/// Every id is found and readable, and a chunk never stored is not.
fn assert_all_there(repo: &Repository, ids: &[ChunkId], from: u32) {
    for (i, id) in ids.iter().enumerate() {
        assert!(repo.has_chunk(id), "chunk {i} missing");
        assert_eq!(repo.get_chunk(id).unwrap(), chunk(from + i as u32));
    }
    assert!(!repo.has_chunk(&absent()));
}

#[test]
fn a_second_run_reads_its_index_from_the_cache() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = open_with(dir.path(), cache.path());
    let ids = store(&repo, 0..500);
    drop(repo);
    let repo = open_with(dir.path(), cache.path());
    assert_all_there(&repo, &ids, 0);
    drop(repo);
    assert!(!segment_files(cache.path()).is_empty());
    // Garble every index object in the repository: a run with the cache
    // does not read them again, and finds everything; one without it
    // finds them damaged.
    for f in std::fs::read_dir(dir.path().join("index")).unwrap() {
        std::fs::write(f.unwrap().path(), b"garbage").unwrap();
    }
    let repo = open_with(dir.path(), cache.path());
    assert!(repo.damaged_index_objects().is_empty());
    assert_all_there(&repo, &ids, 0);
    let no_cache = Repository::open(
        dir.path().to_str().unwrap(),
        &OpenOptions::default(),
        Arc::new(NoFilters),
    )
    .unwrap();
    assert!(!no_cache.damaged_index_objects().is_empty());
    // The folders are private.
    use std::os::unix::fs::PermissionsExt;
    for f in segment_files(cache.path()) {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        let folder = std::fs::metadata(f.parent().unwrap()).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
    }
}

/// A run that merges the index objects it wrote keeps their entries in
/// the cache: the next run on the machine reads none of them back.
#[test]
fn a_run_that_merges_its_index_objects_leaves_them_in_the_cache() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = open_with(dir.path(), cache.path());
    let ids = store(&repo, 0..500);
    repo.consolidate_index().unwrap();
    drop(repo);
    let objects: Vec<PathBuf> = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    assert_eq!(objects.len(), 1, "merged into one");
    // Garbled, the merged object is not read: its entries come from the
    // cache, and are all there.
    std::fs::write(&objects[0], b"garbage").unwrap();
    let repo = open_with(dir.path(), cache.path());
    assert!(repo.damaged_index_objects().is_empty());
    assert_all_there(&repo, &ids, 0);
    drop(repo);
    // A run with another cache reads it, and finds it damaged.
    let elsewhere = tempfile::tempdir().unwrap();
    let repo = open_with(dir.path(), elsewhere.path());
    assert!(!repo.damaged_index_objects().is_empty());
    assert!(ids.iter().all(|id| !repo.has_chunk(id)));
}

/// The index is loaded at its first use: listing clients and
/// generations, and taking a client's lock, read no index object and
/// build no cache, and the first chunk read does both.
#[test]
fn the_index_is_loaded_at_its_first_use_not_at_open() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = Arc::new(open_with(dir.path(), cache.path()));
    repo.add_client("c").unwrap();
    let b = crate::generation::GenerationBuilder::new(repo.clone(), "c", false).unwrap();
    b.put(b"/d", crate::tree::TreeEntry::bare_dir(b"")).unwrap();
    let ids = store(&repo, 0..50);
    b.finish_dir(b"/d").unwrap();
    b.commit(false).unwrap();
    drop(b);
    drop(repo);
    // On another machine (the run above left its entries in its cache).
    let other = tempfile::tempdir().unwrap();
    let lazy = Repository::open(
        dir.path().to_str().unwrap(),
        &options(other.path()),
        Arc::new(NoFilters),
    )
    .unwrap();
    assert_eq!(lazy.clients().unwrap(), ["c"]);
    assert_eq!(lazy.generations("c").unwrap().len(), 1);
    // A load would have written the index objects' entries to the cache.
    assert!(segment_files(other.path()).is_empty());
    assert!(!lazy.index_loaded());
    // Nor does taking the client's lock (a forget takes it, and reads no
    // chunk): the first use after it loads what the last holder stored.
    lazy.lock_client("c", std::time::Duration::from_secs(5))
        .unwrap();
    assert!(!lazy.index_loaded());
    assert!(segment_files(other.path()).is_empty());
    lazy.unlock_client("c").unwrap();
    assert_eq!(lazy.get_chunk(&ids[7]).unwrap(), chunk(7));
    assert!(lazy.index_loaded());
    assert!(!segment_files(other.path()).is_empty());
    assert_all_there(&lazy, &ids, 0);
}

#[test]
fn damaged_cache_files_are_rebuilt_and_never_invent_a_chunk() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 6] = [
        ("truncated", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(len / 2).unwrap();
        }),
        ("emptied", |p| std::fs::write(p, b"").unwrap()),
        ("random bytes", |p| {
            let mut rng = Rng(99);
            let len = std::fs::metadata(p).unwrap().len() as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            std::fs::write(p, bytes).unwrap();
        }),
        ("a page flipped", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            bytes[4096 + 1000] ^= 0x10;
            std::fs::write(p, bytes).unwrap();
        }),
        ("a table flipped", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            let at = bytes.len() - 5;
            bytes[at] ^= 0x01;
            std::fs::write(p, bytes).unwrap();
        }),
        ("a page of another segment", |p| {
            // Two pages swapped: each passes only in its own place.
            let mut bytes = std::fs::read(p).unwrap();
            let (a, b) = (4096..8192, 8192..12288);
            let first: Vec<u8> = bytes[a.clone()].to_vec();
            bytes.copy_within(b.clone(), a.start);
            bytes[b].copy_from_slice(&first);
            std::fs::write(p, bytes).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let repo = open_with(dir.path(), cache.path());
        let ids = store(&repo, 0..800);
        drop(repo);
        drop(open_with(dir.path(), cache.path()));
        let files = segment_files(cache.path());
        assert!(!files.is_empty(), "{what}: no segment");
        for f in &files {
            damage(f);
        }
        // A garbage file that calls itself a segment.
        let folder = files[0].parent().unwrap();
        std::fs::write(folder.join("seg-bogus.ixs"), vec![7u8; 9000]).unwrap();
        // The run with the damaged cache: a chunk is found or not, but a
        // chunk never stored is never found, and nothing panics.
        let repo = open_with(dir.path(), cache.path());
        assert!(!repo.has_chunk(&absent()), "{what}");
        for id in &ids {
            if repo.has_chunk(id) {
                assert!(repo.get_chunk(id).is_ok(), "{what}");
            }
        }
        drop(repo);
        // The next run has it all again.
        let repo = open_with(dir.path(), cache.path());
        assert_all_there(&repo, &ids, 0);
        assert!(!folder.join("seg-bogus.ixs").exists(), "{what}");
    }
}

thread_local! {
    /// Makes the merge of a run's index objects on this thread fail to
    /// write, as on a store that went away just after the commit.
    pub(crate) static FAIL_MERGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A generation is committed before the run's index objects are merged:
/// a merge that fails then (the store went away) leaves the run's own
/// objects as they were, and the commit stands (the backup exited 1 with
/// no generation named, though it was committed and restores).
#[test]
fn a_commit_stands_when_the_merge_after_it_fails() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = Arc::new(open_with(dir.path(), cache.path()));
    repo.uploads.set_merged_entries(64);
    repo.add_client("c").unwrap();
    let b = crate::generation::GenerationBuilder::new(repo.clone(), "c", false).unwrap();
    b.put(b"/data", crate::tree::TreeEntry::bare_dir(b""))
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..400 {
        let data = chunk(i);
        let id = repo.put_chunk(repo.token(&data), &data).unwrap();
        ids.push(id);
        let mut f = crate::tests::file(data.len() as u64);
        f.chunks = vec![crate::tree::StoredChunkId(id)];
        b.put(format!("/data/f{i}").as_bytes(), f).unwrap();
    }
    b.finish_dir(b"/data").unwrap();
    let objects = || std::fs::read_dir(dir.path().join("index")).unwrap().count();
    FAIL_MERGE.with(|f| f.set(true));
    let committed = b.commit(false);
    FAIL_MERGE.with(|f| f.set(false));
    let gen = committed.expect("the commit stands");
    assert!(objects() > 1, "the run's own index objects stay");
    drop(b);
    drop(repo);
    // A run elsewhere finds the generation and every chunk.
    let elsewhere = tempfile::tempdir().unwrap();
    let repo = open_with(dir.path(), elsewhere.path());
    assert!(repo.damaged_index_objects().is_empty());
    assert!(repo
        .generations("c")
        .unwrap()
        .iter()
        .any(|g| g.id == gen.id));
    assert_all_there(&repo, &ids, 0);
}

/// A run's index objects are merged a group of chunks at a time (so that
/// no list of all a run's new chunks is made): several objects, each
/// listing the next chunks by id, which the next run on the machine finds
/// in its cache and a run elsewhere reads from the repository.
#[test]
fn a_run_with_many_new_chunks_merges_them_into_several_objects() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = open_with(dir.path(), cache.path());
    repo.uploads.set_merged_entries(64);
    let ids = store(&repo, 0..500);
    repo.consolidate_index().unwrap();
    drop(repo);
    let objects: Vec<PathBuf> = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    assert_eq!(objects.len(), 8, "500 chunks in objects of 64");
    // A run elsewhere reads them all from the repository.
    let elsewhere = tempfile::tempdir().unwrap();
    let repo = open_with(dir.path(), elsewhere.path());
    assert!(repo.damaged_index_objects().is_empty());
    assert_all_there(&repo, &ids, 0);
    let mut ranges = Vec::new();
    let mut listed = HashSet::new();
    for path in &objects {
        let name = path.file_name().unwrap().to_str().unwrap();
        let data = repo.read_object(&format!("index/{name}")).unwrap();
        let mut index = Index::default();
        let entries = super::index::decode(&mut index, &data).unwrap();
        assert!(entries.len() <= 64 && !entries.is_empty());
        assert!(entries.windows(2).all(|w| w[0].id < w[1].id), "in id order");
        ranges.push((entries[0].id, entries[entries.len() - 1].id, entries.len()));
        listed.extend(entries.iter().map(|e| e.id));
    }
    assert_eq!(listed, ids.iter().copied().collect::<HashSet<_>>());
    ranges.sort();
    assert!(
        ranges.windows(2).all(|w| w[0].1 < w[1].0),
        "ranges do not overlap"
    );
    assert_eq!(
        ranges.iter().filter(|r| r.2 < 64).count(),
        1,
        "only the last is short"
    );
    drop(repo);
    // This machine's next run takes them from its cache: garbled in the
    // repository, they are not even read.
    for path in &objects {
        std::fs::write(path, b"garbage").unwrap();
    }
    let repo = open_with(dir.path(), cache.path());
    assert!(repo.damaged_index_objects().is_empty());
    assert_all_there(&repo, &ids, 0);
}

/// A run that stores more new chunks than it holds in memory moves those
/// of packs already written into a segment of its own in the local
/// cache: every chunk is still found, during the run and after it (a run
/// stopped before its merge leaves them to the next run), and the run's
/// merge of its index objects takes them from there.
#[test]
fn a_run_keeps_most_of_its_new_chunks_on_disk_not_in_memory() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let own_segments = |repo: &Repository| {
        let index = repo.catalog.read();
        index.segments().iter().filter(|s| s.own).count()
    };
    // A backup's repository, opened to hold 64 new chunks in memory.
    let open_backup = |cache: &Path| {
        let options = OpenOptions {
            new_chunks_in_memory: 64,
            ..options(cache)
        };
        let repo =
            Repository::open(dir.path().to_str().unwrap(), &options, Arc::new(NoFilters)).unwrap();
        repo.ensure_index().unwrap();
        repo.limit_new_chunks_in_memory();
        repo
    };
    let repo = open_backup(cache.path());
    let first = store(&repo, 0..500);
    let in_memory = repo.catalog.read().added_len();
    assert!(in_memory < 300, "{in_memory} of 500 chunks still in memory");
    assert!(own_segments(&repo) > 0);
    assert_all_there(&repo, &first, 0);
    // Stopped here, without merging its index objects: the next run on
    // this machine, and a run elsewhere, find every chunk.
    drop(repo);
    let repo = open_with(dir.path(), cache.path());
    assert_all_there(&repo, &first, 0);
    drop(repo);
    let elsewhere = tempfile::tempdir().unwrap();
    assert_all_there(&open_with(dir.path(), elsewhere.path()), &first, 0);

    // A run that merges its index objects, a group of 100 at a time.
    let repo = open_backup(cache.path());
    repo.uploads.set_merged_entries(100);
    let before: HashSet<String> = repo.storage().list("index/").unwrap().into_iter().collect();
    let second = store(&repo, 500..1000);
    assert!(own_segments(&repo) > 0);
    repo.consolidate_index().unwrap();
    assert_eq!(
        own_segments(&repo),
        0,
        "the merged objects' segment took over"
    );
    assert_all_there(&repo, &second, 500);
    let after: HashSet<String> = repo.storage().list("index/").unwrap().into_iter().collect();
    let merged: Vec<&String> = after.difference(&before).collect();
    assert_eq!(merged.len(), 5, "500 chunks in objects of 100");
    let mut listed = HashSet::new();
    for name in merged {
        let data = repo.read_object(&format!("index/{name}")).unwrap();
        let mut index = Index::default();
        let entries = super::index::decode(&mut index, &data).unwrap();
        assert_eq!(entries.len(), 100);
        listed.extend(entries.iter().map(|e| e.id));
    }
    assert_eq!(listed, second.iter().copied().collect::<HashSet<_>>());
    drop(repo);
    // Every chunk of both runs, for this machine and for another.
    let repo = open_with(dir.path(), cache.path());
    assert!(repo.damaged_index_objects().is_empty());
    assert_all_there(&repo, &first, 0);
    assert_all_there(&repo, &second, 500);
    drop(repo);
    let elsewhere = tempfile::tempdir().unwrap();
    let repo = open_with(dir.path(), elsewhere.path());
    assert_all_there(&repo, &first, 0);
    assert_all_there(&repo, &second, 500);
}

#[test]
fn the_cache_follows_index_objects_that_come_merge_and_go() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Another machine (its own cache) stores chunks in two runs, the
    // second merging its run's index objects (deleting the parts).
    let other = tempfile::tempdir().unwrap();
    let repo = open_with(dir.path(), other.path());
    let first = store(&repo, 0..300);
    drop(repo);
    let repo = open_with(dir.path(), other.path());
    let second = store(&repo, 300..600);
    repo.consolidate_index().unwrap();
    drop(repo);
    // This machine caches both runs' index objects, in one segment.
    let repo = open_with(dir.path(), cache.path());
    assert_all_there(&repo, &first, 0);
    assert_all_there(&repo, &second, 300);
    drop(repo);
    assert_eq!(segment_files(cache.path()).len(), 1);
    // The index objects of the first run go (as a prune deletes those
    // of packs it deleted): the cache, whose segment still holds their
    // entries, must not trust them.
    let index_objects = |repo: &Repository| -> HashSet<String> {
        repo.storage().list("index/").unwrap().into_iter().collect()
    };
    let repo = open_with(dir.path(), other.path());
    let before = index_objects(&repo);
    let third = store(&repo, 600..700);
    repo.consolidate_index().unwrap();
    let mut first_objects = HashSet::new();
    for name in &before {
        let data = repo.read_object(&format!("index/{name}")).unwrap();
        let mut index = Index::default();
        let entries = super::index::decode(&mut index, &data).unwrap();
        if entries.iter().any(|e| first.contains(&e.id)) {
            first_objects.insert(name.clone());
        }
    }
    assert!(!first_objects.is_empty());
    for name in &first_objects {
        repo.storage().delete(&format!("index/{name}")).unwrap();
    }
    drop(repo);
    let repo = open_with(dir.path(), cache.path());
    for id in &first {
        assert!(!repo.has_chunk(id), "a chunk of a deleted index object");
    }
    assert_all_there(&repo, &second, 300);
    assert_all_there(&repo, &third, 600);
    drop(repo);
    // The segments of only deleted index objects are gone from the
    // folder, and what is left still answers the same.
    let repo = open_with(dir.path(), cache.path());
    assert!(first.iter().all(|id| !repo.has_chunk(id)));
    assert_all_there(&repo, &second, 300);
}

#[test]
fn two_runs_building_one_cache_at_once_both_see_everything() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let repo = open_with(dir.path(), scratch.path());
    let mut ids = Vec::new();
    // Several runs, several index objects each.
    for run in 0..6 {
        ids.extend(store(&repo, run * 200..(run + 1) * 200));
    }
    drop(repo);
    for round in 0..3 {
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (dir, cache) = (dir.path().to_path_buf(), cache.path().to_path_buf());
                std::thread::spawn(move || open_with(&dir, &cache))
            })
            .collect();
        for t in threads {
            let repo = t.join().unwrap();
            assert_all_there(&repo, &ids, 0);
        }
        // Whole files only: no temporary one is left, and every segment
        // opens.
        let folder = segment_files(cache.path())[0]
            .parent()
            .unwrap()
            .to_path_buf();
        for f in std::fs::read_dir(&folder).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().to_string();
            assert!(!name.starts_with(".tmp-"), "round {round}: {name} left");
        }
        for f in segment_files(cache.path()) {
            super::segment::Segment::open(&f).unwrap();
        }
    }
    let repo = open_with(dir.path(), cache.path());
    assert_all_there(&repo, &ids, 0);
}

#[test]
fn temporary_files_of_killed_runs_are_removed_when_old() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = open_with(dir.path(), cache.path());
    store(&repo, 0..10);
    drop(repo);
    drop(open_with(dir.path(), cache.path()));
    let folder = segment_files(cache.path())[0]
        .parent()
        .unwrap()
        .to_path_buf();
    let (old, new) = (folder.join(".tmp-old"), folder.join(".tmp-new"));
    std::fs::write(&old, b"half a segment").unwrap();
    std::fs::write(&new, b"being written").unwrap();
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    drop(open_with(dir.path(), cache.path()));
    assert!(!old.exists());
    assert!(new.exists());
}

#[test]
fn an_unusable_cache_folder_falls_back_to_a_temporary_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"").unwrap();
    let cache = IndexCache::open(&IndexCacheDir::At(file.clone()), "r");
    let used = cache.dir().unwrap().to_path_buf();
    assert!(!used.starts_with(&file));
    assert!(used.is_dir());
    drop(cache);
    assert!(!used.exists(), "the temporary folder is removed");
    assert!(IndexCache::open(&IndexCacheDir::Memory, "r")
        .dir()
        .is_none());
    // A repository id that is not a plain name names no other folder.
    let cache = IndexCache::open(&IndexCacheDir::At(dir.path().into()), "../x");
    assert!(cache.dir().unwrap().starts_with(dir.path()));
    assert_eq!(cache.dir().unwrap().parent().unwrap(), dir.path());
}

#[test]
fn temporary_caches_go_at_close_and_orphans_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(
        dir.path().to_str().unwrap(),
        &OpenOptions {
            create: true,
            ..OpenOptions::default()
        },
        Arc::new(NoFilters),
    )
    .unwrap();
    let own = repo.catalog.cache().dir().unwrap().to_path_buf();
    assert!(own.is_dir());
    repo.close();
    assert!(!own.exists());
    // One left by a process that is gone (a pid above the kernel's
    // largest, 2^22), and one of a live process (this one).
    let orphan = std::env::temp_dir().join("obnam-index-2147483646-test");
    let live = std::env::temp_dir().join(format!("obnam-index-{}-test", std::process::id()));
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    drop(IndexCache::open(&IndexCacheDir::Temporary, "r"));
    assert!(!orphan.exists());
    assert!(live.exists());
    std::fs::remove_dir_all(&live).unwrap();
}

/// The filter of an own segment never turns away a token it holds, and
/// lets through few of those it does not (about 1 in 100).
#[test]
fn a_token_filter_holds_its_tokens_and_few_others() {
    let token = |i: u64| {
        let mut t = [0u8; 32];
        t[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        t[8..16].copy_from_slice(
            &(i ^ 0xdead_beef)
                .wrapping_mul(0xbf58_476d_1ce4_e5b9)
                .to_le_bytes(),
        );
        Token(t)
    };
    let filter = super::index::TokenFilter::of(10_000, (0..10_000).map(token));
    assert!((0..10_000).all(|i| filter.may_hold(&token(i))));
    let false_positives = (10_000..110_000)
        .filter(|i| filter.may_hold(&token(*i)))
        .count();
    assert!(false_positives < 3_000, "{false_positives} of 100,000");
}

/// No filter on write; on read, a "sum" filter that is loaded but finds
/// every object it is asked to undo damaged (as zstd does a stream whose
/// last byte changed).
struct SumAlwaysFails;

impl crate::object::ObjectFilter for SumAlwaysFails {
    fn encode<'d>(
        &self,
        context: &str,
        data: &'d [u8],
        skip: Option<&str>,
    ) -> Result<(crate::object::Encoded<'d>, Vec<String>), String> {
        NoFilters.encode(context, data, skip)
    }
    fn encode_with(
        &self,
        tag: &str,
        context: &str,
        data: &[u8],
    ) -> Result<Option<crate::object::FilterOutput>, String> {
        NoFilters.encode_with(tag, context, data)
    }
    fn decode(
        &self,
        context: &str,
        _: &[u8],
        _: &[String],
    ) -> Result<crate::object::FilterOutput, crate::object::DecodeError> {
        Err(crate::object::DecodeError::Damaged(format!(
            "object {context} cannot be summed: data corruption"
        )))
    }
    fn provides(&self, tag: &str) -> bool {
        tag == "sum"
    }
    fn unlock(&self, _: &crate::object::UnlockRequest) -> Result<crate::object::Unlocked, String> {
        Ok(Default::default())
    }
}

/// Every way an index object's bytes can fail to be one (a loaded filter
/// that cannot undo them, larger than the format allows) is the same
/// damage as a bad checksum: the object is reported, its blobs count as
/// absent, the others are found, and a check of the objects goes on. A
/// filter that is not loaded is no damage: loading the index fails.
#[test]
fn an_index_object_that_cannot_be_decoded_or_is_too_large_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let mut objects: Vec<PathBuf> = Vec::new();
    let mut ids = Vec::new();
    for run in 0..3u32 {
        let cache = tempfile::tempdir().unwrap();
        let repo = open_with(dir.path(), cache.path());
        ids.push(store(&repo, run * 50..run * 50 + 50));
        drop(repo);
        let mut new: Vec<PathBuf> = std::fs::read_dir(dir.path().join("index"))
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| !objects.contains(p))
            .collect();
        assert_eq!(new.len(), 1, "one index object per run");
        objects.append(&mut new);
    }
    let name = |p: &Path| format!("index/{}", p.file_name().unwrap().to_str().unwrap());
    // The first needs the "sum" filter, which fails on it; the second is
    // far larger than the format allows (a sparse file: not read).
    std::fs::write(&objects[0], b"\x01\x03sumwhatever").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&objects[1])
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let repo = Repository::open(
        dir.path().to_str().unwrap(),
        &options(cache.path()),
        Arc::new(SumAlwaysFails),
    )
    .unwrap();
    let damaged = repo.damaged_index_objects();
    assert_eq!(damaged.len(), 2, "{damaged:?}");
    assert!(
        damaged
            .iter()
            .any(|d| d.contains(&name(&objects[0])) && d.contains("cannot be summed")),
        "{damaged:?}"
    );
    assert!(
        damaged
            .iter()
            .any(|d| d.contains(&name(&objects[1])) && d.contains("larger than the format allows")),
        "{damaged:?}"
    );
    assert!(ids[0].iter().chain(&ids[1]).all(|id| !repo.has_chunk(id)));
    assert_all_there(&repo, &ids[2], 100);
    let report = repo.check_objects(false).unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    drop(repo);

    // Without the filter loaded, nothing is damaged: the run fails.
    let cache = tempfile::tempdir().unwrap();
    let repo = Repository::open(
        dir.path().to_str().unwrap(),
        &options(cache.path()),
        Arc::new(NoFilters),
    )
    .unwrap();
    let e = repo.ensure_index().unwrap_err();
    assert!(!e.is_damaged_object(), "{e:?}");
    assert!(e.to_string().contains("needs the 'sum' filter"), "{e}");
    assert!(repo.check_objects(false).is_err());
}

/// What took an index object's place in a local folder but cannot be one
/// (a folder, a FIFO, a link to nothing) is damage to that object, named
/// as any other: not an object that is silently absent. It is said once
/// however often the index is loaded again; a folder whose name no index
/// object has is none of obnam's, and not reported.
#[test]
fn an_index_object_replaced_by_what_is_not_a_file_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let mut objects: Vec<PathBuf> = Vec::new();
    let mut ids = Vec::new();
    for run in 0..4u32 {
        let cache = tempfile::tempdir().unwrap();
        let repo = open_with(dir.path(), cache.path());
        ids.push(store(&repo, run * 50..run * 50 + 50));
        drop(repo);
        let mut new: Vec<PathBuf> = std::fs::read_dir(dir.path().join("index"))
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| !objects.contains(p))
            .collect();
        assert_eq!(new.len(), 1, "one index object per run");
        objects.append(&mut new);
    }
    for object in &objects[..3] {
        std::fs::remove_file(object).unwrap();
    }
    std::fs::create_dir(&objects[0]).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &objects[1],
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &objects[2]).unwrap();
    std::fs::create_dir(dir.path().join("index/lost+found")).unwrap();
    let name = |p: &Path| format!("index/{}", p.file_name().unwrap().to_str().unwrap());

    let cache = tempfile::tempdir().unwrap();
    let repo = open_with(dir.path(), cache.path());
    let expected = [
        (&objects[0], "it is a folder"),
        (&objects[1], "it is a FIFO"),
        (&objects[2], "it is a symbolic link to nothing"),
    ];
    let damaged = repo.damaged_index_objects();
    assert_eq!(damaged.len(), 3, "{damaged:?}");
    for (object, what) in expected {
        assert!(
            damaged
                .iter()
                .any(|d| d.contains(&name(object)) && d.contains(what)),
            "{what}: {damaged:?}"
        );
    }
    assert!(ids[..3].iter().flatten().all(|id| !repo.has_chunk(id)));
    assert_all_there(&repo, &ids[3], 150);
    repo.reload_index().unwrap();
    assert_eq!(repo.damaged_index_objects(), damaged);
    // fsck's check reads every index object again, and names the same.
    let report = repo.check_objects(false).unwrap();
    assert_eq!(report.problems, damaged);
}
