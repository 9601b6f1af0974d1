//! Building a client's next generation: an in-memory overlay of the
//! directories being changed, on top of the client's latest generation,
//! written as trees when a directory is finished, at a checkpoint, and at
//! the commit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::prefetch::TreePrefetcher;
use super::{components, Generation, GenerationReader};
use crate::error::{BadPath, RepoError, RepoResult};
use crate::ids::{ChunkId, GenerationId};
use crate::tree::{EntryKind, StoredChunkId, Tree, TreeEntry};
use crate::Repository;

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
        let slot = self.entries.get_mut(*first).ok_or(BadPath::Vanished)?;
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

    /// Write this directory (and any loaded subdirectories) as tree
    /// objects, keeping them in memory (a checkpoint goes on building).
    fn write(&mut self, repo: &Repository) -> RepoResult<Written> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for slot in self.entries.values_mut() {
            if let Some(child) = slot.child.as_mut() {
                record_subtree(&mut slot.entry, child.write(repo)?);
            }
            entries.push(slot.entry.clone());
        }
        put_entries(repo, entries)
    }

    /// Write this directory (and any loaded subdirectories) as tree
    /// objects, consuming it: a finished directory is not kept, so its
    /// entries move into the tree rather than being copied, and the
    /// overlay's memory is freed as they go. Of a folder of 100,000 files
    /// this halves what is held at once (the overlay, its copy and the
    /// encoded tree were).
    fn into_tree(self, repo: &Repository) -> RepoResult<Written> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for (_, mut slot) in self.entries {
            if let Some(child) = slot.child.take() {
                record_subtree(&mut slot.entry, child.into_tree(repo)?);
            }
            entries.push(slot.entry);
        }
        put_entries(repo, entries)
    }
}

/// A directory written as tree objects: its tree's id, and the files and
/// bytes of file data in its subtree.
type Written = (ChunkId, u64, u64);

/// Record a written subdirectory in the entry that names it.
fn record_subtree(entry: &mut TreeEntry, (id, files, bytes): Written) {
    entry.subtree = Some(StoredChunkId(id));
    entry.subtree_files = files;
    entry.subtree_bytes = bytes;
}

/// Store a directory's entries (subdirectories already written) as a
/// tree object, with the totals of its subtree.
fn put_entries(repo: &Repository, entries: Vec<TreeEntry>) -> RepoResult<Written> {
    let (files, bytes) = entries
        .iter()
        .map(TreeEntry::totals)
        .fold((0u64, 0u64), |(files, bytes), (f, b)| {
            (files + f, bytes + b)
        });
    Ok((repo.put_tree(&Tree { entries })?, files, bytes))
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
    /// Reads the previous generation's trees ahead of the walk.
    prefetch: Option<TreePrefetcher>,
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
        let prefetch = previous
            .as_ref()
            .and_then(|_| TreePrefetcher::start(repo.clone()));
        let started = repo.clock.now_ns();
        Ok(GenerationBuilder {
            repo,
            client: client.to_string(),
            started,
            previous,
            prefetch,
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

    /// The entries of a directory in the previous generation. The trees
    /// of its subdirectories are read ahead (see `prefetch.rs`): a
    /// backup asks for a directory just before it walks it.
    pub fn previous_dir(&self, path: &[u8]) -> RepoResult<Option<Vec<TreeEntry>>> {
        let Some(reader) = &self.previous else {
            return Ok(None);
        };
        let entries = lost_tree_is_absent(reader.list_dir(path), path)?;
        if let (Some(entries), Some(prefetch)) = (&entries, &self.prefetch) {
            // Cheap: the reader just found this directory.
            if let Ok(Some(id)) = reader.subtree_id(path) {
                prefetch.listed(id, entries);
            }
        }
        Ok(entries)
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
            return Err(BadPath::PutRoot.into());
        };
        entry.name = name.to_vec();
        // A backup that stores nothing for a long while (unchanged files)
        // must still keep its lock fresh: prunes and other hosts take a
        // lock not refreshed for half an hour for a dead run's.
        self.repo.refresh_locks()?;
        let mut state = self.state()?;
        let node = state
            .root
            .descend(&self.repo, parent, true)?
            .ok_or(BadPath::NoParent)?;
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
            return Err(BadPath::RemoveRoot.into());
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
            return Err(BadPath::NotADirectory(String::from_utf8_lossy(path).into()).into());
        };
        node.entries.retain(|_, slot| slot.touched);
        let Some((name, parent)) = parts.split_last() else {
            return Ok(());
        };
        let parent = state
            .root
            .descend(&self.repo, parent, false)?
            .ok_or(BadPath::ParentVanished)?;
        if let Some(slot) = parent.entries.get_mut(*name) {
            if let Some(child) = slot.child.take() {
                record_subtree(&mut slot.entry, child.into_tree(&self.repo)?);
            }
        }
        Ok(())
    }

    /// Commit what has been built: as a checkpoint (and carry on), or as
    /// the final generation.
    pub fn commit(&self, checkpoint: bool) -> RepoResult<Generation> {
        let mut state = self.state()?;
        let (root, files, bytes) = state.root.write(&self.repo)?;
        self.repo.flush()?;
        let gen = Generation {
            id: GenerationId::random().to_string(),
            client: self.client.clone(),
            started: self.started,
            ended: self.repo.clock.now_ns(),
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
