//! Generations: a client's committed snapshots, how they are read, and how
//! a new one is built.
//!
//! A generation object (`generations/CLIENTID/GENID`, JSON through the data
//! filters) records start and end time, file count, data size, whether it
//! is a checkpoint, and the id of its root tree. Generations are immutable.
//!
//! [`GenerationReader`] looks up entries by absolute path, loading only the
//! trees on the way (with a small cache, so a walk in order reads each tree
//! once). [`GenerationBuilder`] makes the next generation: it starts from
//! the client's latest generation and keeps an in-memory overlay of the
//! directories being changed. A backup puts the entries it finds and calls
//! [`GenerationBuilder::finish_dir`] when it has walked a directory: then
//! entries of that directory not put in this run are dropped and the
//! directory is written as a tree object and dropped from memory, so
//! memory holds only the directories on the current path of the walk.
//! A checkpoint writes the overlay as it is (unvisited directories keep
//! their old content) and carries on.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::error::{RepoError, RepoResult};
use super::ids::{ChunkId, GenerationId};
use super::storage::StorageError;
use super::tree::{EntryKind, StoredChunkId, Tree, TreeEntry};
use super::{now_ns, Repository};

/// A committed generation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Generation {
    pub id: String,
    pub client: String,
    /// Start and end of the run that made it, in ns since the epoch.
    pub started: i64,
    pub ended: i64,
    pub file_count: u64,
    pub data_size: u64,
    pub is_checkpoint: bool,
    pub root: StoredChunkId,
    /// The generation's place in its client's order: one more than the
    /// highest of the client's generations when it was committed (under
    /// the client's lock, so no two commits of a client interleave). 0 in
    /// generations written before obnam recorded it; they come first, in
    /// the order of their start times.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Repository {
    fn generation_key(&self, client: &str, id: &str) -> String {
        format!("generations/{}/{id}", self.client_id(client))
    }

    /// A client's generations, oldest first: in the order they were
    /// committed (`seq`), whatever the clocks of the machines that made
    /// them said.
    pub fn generations(&self, client: &str) -> RepoResult<Vec<Generation>> {
        let folder = format!("generations/{}/", self.client_id(client));
        let mut gens = Vec::new();
        for name in self.storage().list(&folder)? {
            let key = format!("{folder}{name}");
            let data = match self.read_object(&key) {
                Ok(d) => d,
                // Removed (a checkpoint, say) since the listing.
                Err(RepoError::Storage(StorageError::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            };
            let gen: Generation =
                serde_json::from_slice(&data).map_err(|e| RepoError::corrupt(&key, e))?;
            gens.push(gen);
        }
        gens.sort_by(|a, b| (a.seq, a.started, &a.id).cmp(&(b.seq, b.started, &b.id)));
        self.load_index_for_generations()?;
        Ok(gens)
    }

    /// One generation by id.
    pub fn generation(&self, client: &str, id: &str) -> RepoResult<Generation> {
        let gen_id = GenerationId::parse(id)
            .map_err(|_| RepoError::NoSuchGeneration(client.into(), id.into()))?;
        let key = self.generation_key(client, gen_id.as_str());
        let data = match self.read_object(&key) {
            Ok(d) => d,
            Err(RepoError::Storage(StorageError::NotFound { .. })) => {
                return Err(RepoError::NoSuchGeneration(client.into(), id.into()))
            }
            Err(e) => return Err(e),
        };
        let gen = serde_json::from_slice(&data).map_err(|e| RepoError::corrupt(&key, e))?;
        self.load_index_for_generations()?;
        Ok(gen)
    }

    /// Load the index objects written since the index was loaded, after
    /// reading generations: a generation is committed only after the
    /// index objects of everything it refers to, so once these are loaded
    /// every generation just read is complete in the index, even one that
    /// a concurrent backup committed after this process opened the
    /// repository (an `fsck` or `restore` running beside a backup).
    fn load_index_for_generations(&self) -> RepoResult<()> {
        self.load_index()
    }

    /// Remove a generation (its data stays until unreferenced data is pruned).
    pub fn remove_generation(&self, client: &str, id: &str) -> RepoResult<()> {
        let gen = self.generation(client, id)?;
        self.storage()
            .delete(&self.generation_key(client, &gen.id))?;
        Ok(())
    }

    fn write_generation(&self, gen: &Generation) -> RepoResult<()> {
        let key = self.generation_key(&gen.client, &gen.id);
        let data = serde_json::to_vec(gen).map_err(|e| RepoError::corrupt(&key, e))?;
        self.write_object(&key, data)
    }
}

/// Split an absolute path into its components, refusing `.`, `..`,
/// relative paths, and paths longer or deeper than the format allows
/// (so that a walk of a damaged generation ends, and its memory stays
/// bounded).
pub fn components(path: &[u8]) -> RepoResult<Vec<&[u8]>> {
    use crate::limits::{MAX_PATH_LEN, MAX_TREE_DEPTH};
    if path.first() != Some(&b'/') {
        return Err(RepoError::BadPath(format!(
            "'{}' is not an absolute path",
            String::from_utf8_lossy(path)
        )));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(RepoError::BadPath(format!(
            "a path of {} bytes is longer than the format allows ({MAX_PATH_LEN})",
            path.len()
        )));
    }
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    if parts.iter().any(|c| *c == b"." || *c == b"..") {
        return Err(RepoError::BadPath(format!(
            "'{}' contains '.' or '..'",
            String::from_utf8_lossy(path)
        )));
    }
    if parts.len() > MAX_TREE_DEPTH {
        return Err(RepoError::BadPath(format!(
            "a path {} folders deep is deeper than the format allows ({MAX_TREE_DEPTH})",
            parts.len()
        )));
    }
    Ok(parts)
}

const READER_CACHE: usize = 64;

/// The ids of the trees on the way from the root to a directory, the
/// directory's own last: shared between a directory and its children, so
/// that it costs one link per directory, however deep.
struct Ancestry {
    id: ChunkId,
    parent: Option<Arc<Ancestry>>,
}

impl Ancestry {
    fn child(self: &Arc<Self>, id: ChunkId) -> Arc<Self> {
        Arc::new(Ancestry {
            id,
            parent: Some(self.clone()),
        })
    }

    fn contains(&self, id: &ChunkId) -> bool {
        let mut link = Some(self);
        while let Some(l) = link {
            if l.id == *id {
                return true;
            }
            link = l.parent.as_deref();
        }
        false
    }
}

/// A directory's tree as the reader found it: the tree, and the ids of
/// the trees above it (`None` for an empty directory stored without a
/// tree, which has nothing below it).
#[derive(Clone)]
struct Found {
    tree: Arc<Tree>,
    ancestry: Option<Arc<Ancestry>>,
}

/// Reads a generation's entries by path.
///
/// A generation is read from the root down, one tree per folder on the
/// way. Since a tree is named by its content, a tree cannot contain
/// itself; a damaged or hostile repository could still try, so the
/// reader refuses a folder whose tree is one of its own ancestors, and
/// paths deeper than the format allows ([`components`]).
pub struct GenerationReader {
    repo: Arc<Repository>,
    generation: Generation,
    cache: Mutex<VecDeque<(Vec<u8>, Found)>>,
}

impl GenerationReader {
    /// A reader of `generation`.
    pub fn new(repo: Arc<Repository>, generation: Generation) -> Self {
        GenerationReader {
            repo,
            generation,
            cache: Mutex::new(VecDeque::new()),
        }
    }

    /// The generation read.
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    fn cached(&self, key: &[u8]) -> Option<Found> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.iter().find(|(k, _)| k == key).map(|(_, f)| f.clone())
    }

    fn remember(&self, key: Vec<u8>, found: Found) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= READER_CACHE {
            cache.pop_front();
        }
        cache.push_back((key, found));
    }

    /// The tree of the directory at `parts` (the root for none), or `None`
    /// if there is no directory there. Starts from the cached parent when
    /// there is one (a walk lists a folder's children after it), else
    /// from the root.
    fn tree(&self, parts: &[&[u8]]) -> RepoResult<Option<Arc<Tree>>> {
        let key = parts.join(&b'/');
        if let Some(found) = self.cached(&key) {
            return Ok(Some(found.tree));
        }
        let from_parent = parts
            .split_last()
            .and_then(|(_, parent)| self.cached(&parent.join(&b'/')));
        let (mut found, start) = match from_parent {
            Some(found) => (found, parts.len() - 1),
            None => {
                let root = self.generation.root.0;
                let found = Found {
                    tree: self.repo.get_tree(&root)?,
                    ancestry: Some(Arc::new(Ancestry {
                        id: root,
                        parent: None,
                    })),
                };
                (found, 0)
            }
        };
        for (depth, name) in parts.iter().enumerate().skip(start) {
            let subtree = match found.tree.get(name) {
                Some(TreeEntry {
                    kind: EntryKind::Dir,
                    subtree,
                    ..
                }) => subtree.map(|id| id.0),
                _ => return Ok(None),
            };
            found = match (subtree, &found.ancestry) {
                (Some(id), Some(ancestry)) => {
                    if ancestry.contains(&id) {
                        let path = parts[..=depth].join(&b'/');
                        return Err(RepoError::corrupt(
                            format!("tree/{id}"),
                            format!(
                                "the folder /{} contains itself (its tree is one of its \
                                 own parents' trees)",
                                String::from_utf8_lossy(&path)
                            ),
                        ));
                    }
                    Found {
                        tree: self.repo.get_tree(&id)?,
                        ancestry: Some(ancestry.child(id)),
                    }
                }
                // An empty folder, stored without a tree of its own.
                (None, _) | (_, None) => Found {
                    tree: Arc::new(Tree::default()),
                    ancestry: None,
                },
            };
        }
        self.remember(key, found.clone());
        Ok(Some(found.tree))
    }

    /// The entry at an absolute path, if there is one. The root itself has
    /// no entry.
    pub fn lookup(&self, path: &[u8]) -> RepoResult<Option<TreeEntry>> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Ok(None);
        };
        Ok(self.tree(parent)?.and_then(|t| t.get(name).cloned()))
    }

    /// The entries of the directory at an absolute path, or `None` if it is
    /// not a directory in this generation.
    pub fn list_dir(&self, path: &[u8]) -> RepoResult<Option<Vec<TreeEntry>>> {
        let parts = components(path)?;
        Ok(self.tree(&parts)?.map(|t| t.entries.clone()))
    }
}

/// A tree of the previous generation that is no longer in the repository
/// (its pack was lost, see `check.rs`) leaves nothing to compare with: what
/// was below it is backed up as new, rather than the backup failing.
fn lost_tree_is_absent<T>(found: RepoResult<Option<T>>, path: &[u8]) -> RepoResult<Option<T>> {
    match found {
        Err(RepoError::NoSuchChunk(id)) => {
            tracing::warn!(
                "the previous generation's tree {id} on the way to {} is missing; \
                 backing up what is there as new",
                String::from_utf8_lossy(path)
            );
            Ok(None)
        }
        other => other,
    }
}

/// One directory of the overlay.
#[derive(Default)]
struct Node {
    entries: BTreeMap<Vec<u8>, Slot>,
}

struct Slot {
    entry: TreeEntry,
    /// Put in this run (so kept when its directory is finished).
    touched: bool,
    /// A directory's content, when loaded into memory.
    child: Option<Box<Node>>,
}

impl Node {
    fn load(repo: &Repository, subtree: Option<&StoredChunkId>) -> RepoResult<Node> {
        let mut node = Node::default();
        if let Some(id) = subtree {
            let tree = match repo.get_tree(&id.0) {
                Ok(tree) => tree,
                // Lost with its pack: the directory starts empty, and the
                // backup puts back what it finds.
                Err(RepoError::NoSuchChunk(_)) => Arc::new(Tree::default()),
                Err(e) => return Err(e),
            };
            for entry in tree.entries.iter().cloned() {
                node.entries.insert(
                    entry.name.clone(),
                    Slot {
                        entry,
                        touched: false,
                        child: None,
                    },
                );
            }
        }
        Ok(node)
    }

    /// The directory at `parts` below this one, loading (and with `create`,
    /// making) directories on the way.
    fn descend(
        &mut self,
        repo: &Repository,
        parts: &[&[u8]],
        create: bool,
    ) -> RepoResult<Option<&mut Node>> {
        let Some((first, rest)) = parts.split_first() else {
            return Ok(Some(self));
        };
        if !self.entries.contains_key(*first) {
            if !create {
                return Ok(None);
            }
            self.entries
                .insert(first.to_vec(), Slot::new_dir(TreeEntry::bare_dir(first)));
        }
        let slot = self
            .entries
            .get_mut(*first)
            .ok_or_else(|| RepoError::BadPath("vanished".into()))?;
        if slot.entry.kind != EntryKind::Dir {
            if !create {
                return Ok(None);
            }
            *slot = Slot::new_dir(TreeEntry::bare_dir(first));
        }
        if slot.child.is_none() {
            slot.child = Some(Box::new(Node::load(repo, slot.entry.subtree.as_ref())?));
        }
        match slot.child.as_mut() {
            Some(child) => child.descend(repo, rest, create),
            None => Ok(None),
        }
    }

    /// Write this directory (and any loaded subdirectories) as tree objects.
    /// With `collapse`, loaded subdirectories are dropped from memory.
    fn write(&mut self, repo: &Repository, collapse: bool) -> RepoResult<(ChunkId, u64, u64)> {
        let mut tree = Tree::default();
        let (mut files, mut bytes) = (0u64, 0u64);
        for slot in self.entries.values_mut() {
            if let Some(child) = slot.child.as_mut() {
                let (id, f, b) = child.write(repo, collapse)?;
                slot.entry.subtree = Some(StoredChunkId(id));
                slot.entry.subtree_files = f;
                slot.entry.subtree_bytes = b;
                if collapse {
                    slot.child = None;
                }
            }
            let (f, b) = slot.entry.totals();
            files += f;
            bytes += b;
            tree.entries.push(slot.entry.clone());
        }
        Ok((repo.put_tree(&tree)?, files, bytes))
    }
}

impl Slot {
    fn new_dir(entry: TreeEntry) -> Self {
        Slot {
            entry,
            touched: false,
            child: Some(Box::new(Node::default())),
        }
    }
}

struct BuilderState {
    root: Node,
    checkpoints: Vec<String>,
    finished: bool,
    /// The `seq` of the next generation this builder commits.
    next_seq: u64,
}

/// Builds a client's next generation.
pub struct GenerationBuilder {
    repo: Arc<Repository>,
    client: String,
    started: i64,
    previous: Option<GenerationReader>,
    state: Mutex<BuilderState>,
}

impl GenerationBuilder {
    /// Start a new generation for `client`: from its latest generation, or
    /// from nothing.
    pub fn new(repo: Arc<Repository>, client: &str, from_latest: bool) -> RepoResult<Self> {
        let mut generations = repo.generations(client)?;
        let next_seq = generations.iter().map(|g| g.seq).max().unwrap_or(0) + 1;
        let latest = if from_latest { generations.pop() } else { None };
        let root = match &latest {
            Some(gen) => Node::load(&repo, Some(&gen.root))?,
            None => Node::default(),
        };
        let previous = latest.map(|g| GenerationReader::new(repo.clone(), g));
        Ok(GenerationBuilder {
            repo,
            client: client.to_string(),
            started: now_ns(),
            previous,
            state: Mutex::new(BuilderState {
                root,
                checkpoints: Vec::new(),
                finished: false,
                next_seq,
            }),
        })
    }

    /// The generation this one starts from.
    pub fn previous_generation(&self) -> Option<&Generation> {
        self.previous.as_ref().map(|r| r.generation())
    }

    /// The entry at `path` in the previous generation.
    pub fn previous(&self, path: &[u8]) -> RepoResult<Option<TreeEntry>> {
        match &self.previous {
            Some(r) => lost_tree_is_absent(r.lookup(path), path),
            None => Ok(None),
        }
    }

    /// The entries of a directory in the previous generation.
    pub fn previous_dir(&self, path: &[u8]) -> RepoResult<Option<Vec<TreeEntry>>> {
        match &self.previous {
            Some(r) => lost_tree_is_absent(r.list_dir(path), path),
            None => Ok(None),
        }
    }

    fn state(&self) -> RepoResult<std::sync::MutexGuard<'_, BuilderState>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.finished {
            return Err(RepoError::Usage(
                "the generation was already committed".into(),
            ));
        }
        Ok(state)
    }

    /// Add or replace the entry at `path` (its name is taken from the path).
    /// Parent directories that do not exist yet are made, bare.
    pub fn put(&self, path: &[u8], mut entry: TreeEntry) -> RepoResult<()> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Err(RepoError::BadPath(
                "the root directory has no entry to put".into(),
            ));
        };
        entry.name = name.to_vec();
        let mut state = self.state()?;
        let node = state
            .root
            .descend(&self.repo, parent, true)?
            .ok_or_else(|| RepoError::BadPath("cannot make parent directory".into()))?;
        match node.entries.get_mut(*name) {
            Some(slot) if slot.entry.kind == EntryKind::Dir && entry.kind == EntryKind::Dir => {
                entry.subtree = slot.entry.subtree;
                entry.subtree_files = slot.entry.subtree_files;
                entry.subtree_bytes = slot.entry.subtree_bytes;
                slot.entry = entry;
                slot.touched = true;
            }
            _ => {
                let is_dir = entry.kind == EntryKind::Dir;
                if is_dir {
                    entry.subtree = None;
                }
                node.entries.insert(
                    name.to_vec(),
                    Slot {
                        entry,
                        touched: true,
                        child: is_dir.then(|| Box::new(Node::default())),
                    },
                );
            }
        }
        Ok(())
    }

    /// Remove the entry at `path` (and its subtree); no error if absent.
    pub fn remove(&self, path: &[u8]) -> RepoResult<()> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Err(RepoError::BadPath(
                "cannot remove the root directory".into(),
            ));
        };
        let mut state = self.state()?;
        if let Some(node) = state.root.descend(&self.repo, parent, false)? {
            node.entries.remove(*name);
        }
        Ok(())
    }

    /// The entries the new generation has at a directory now.
    pub fn list(&self, path: &[u8]) -> RepoResult<Option<Vec<TreeEntry>>> {
        let parts = components(path)?;
        let mut state = self.state()?;
        Ok(state
            .root
            .descend(&self.repo, &parts, false)?
            .map(|node| node.entries.values().map(|s| s.entry.clone()).collect()))
    }

    /// The directory at `path` has been walked: drop its entries that were
    /// not put in this run, write it, and free its memory.
    pub fn finish_dir(&self, path: &[u8]) -> RepoResult<()> {
        let parts = components(path)?;
        let mut state = self.state()?;
        let Some(node) = state.root.descend(&self.repo, &parts, false)? else {
            return Err(RepoError::BadPath(format!(
                "'{}' is not a directory of the new generation",
                String::from_utf8_lossy(path)
            )));
        };
        node.entries.retain(|_, slot| slot.touched);
        let Some((name, parent)) = parts.split_last() else {
            return Ok(());
        };
        let parent = state
            .root
            .descend(&self.repo, parent, false)?
            .ok_or_else(|| RepoError::BadPath("parent vanished".into()))?;
        if let Some(slot) = parent.entries.get_mut(*name) {
            if let Some(mut child) = slot.child.take() {
                let (id, files, bytes) = child.write(&self.repo, true)?;
                slot.entry.subtree = Some(StoredChunkId(id));
                slot.entry.subtree_files = files;
                slot.entry.subtree_bytes = bytes;
            }
        }
        Ok(())
    }

    /// Commit what has been built: as a checkpoint (and carry on), or as
    /// the final generation.
    pub fn commit(&self, checkpoint: bool) -> RepoResult<Generation> {
        let mut state = self.state()?;
        let (root, files, bytes) = state.root.write(&self.repo, false)?;
        self.repo.flush()?;
        let gen = Generation {
            id: GenerationId::random().to_string(),
            client: self.client.clone(),
            started: self.started,
            ended: now_ns(),
            file_count: files,
            data_size: bytes,
            is_checkpoint: checkpoint,
            root: StoredChunkId(root),
            seq: state.next_seq,
        };
        self.repo.write_generation(&gen)?;
        state.next_seq += 1;
        self.repo.refresh_locks()?;
        if checkpoint {
            state.checkpoints.push(gen.id.clone());
        } else {
            state.finished = true;
            self.repo.consolidate_index()?;
        }
        Ok(gen)
    }

    /// Remove the checkpoints committed by this builder.
    pub fn remove_checkpoints(&self) -> RepoResult<usize> {
        let ids = std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .checkpoints,
        );
        for id in &ids {
            self.repo.remove_generation(&self.client, id)?;
        }
        Ok(ids.len())
    }
}
