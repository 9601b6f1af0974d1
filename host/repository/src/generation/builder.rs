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
/// (its pack was lost, see `check.rs`), or that is damaged, leaves nothing
/// to compare with: what was below it is backed up as new, rather than
/// the backup failing. (A damaged tree made every later backup of its
/// client fail, until someone forgot that generation.)
/// Said once for each tree, with the first path it was met on (the walk
/// meets it again for each folder below it, and a prefetch besides).
fn lost_tree_is_absent<T>(found: RepoResult<Option<T>>, path: &[u8]) -> RepoResult<Option<T>> {
    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let first_time = |what: String| {
        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
        let first = !said.contains(&what);
        if first {
            said.push(what);
        }
        first
    };
    match found {
        Err(RepoError::NoSuchChunk(id, _)) => {
            if first_time(id.to_string()) {
                tracing::warn!(
                    "the previous generation's tree {id} on the way to {} is missing; \
                     backing up what is there as new",
                    String::from_utf8_lossy(path)
                );
            }
            Ok(None)
        }
        Err(e) if e.is_damaged_object() => {
            if first_time(e.to_string()) {
                tracing::warn!(
                    "the previous generation's folder on the way to {} cannot be read ({e}); \
                     backing up what is there as new ('obnam fsck' reports the damage)",
                    String::from_utf8_lossy(path)
                );
            }
            Ok(None)
        }
        other => other,
    }
}

/// Where the overlay gets the previous generation's trees: the folder the
/// walk listed last, which the puts that follow load next, or else the
/// repository (and its tree cache). A large folder's tree is too large
/// for the cache (100,000 files make tens of megabytes): handing over the
/// one the walk listed saves decoding it a second time and holding two
/// copies.
struct Trees<'a> {
    repo: &'a Repository,
    listed: Option<&'a (ChunkId, Arc<Tree>)>,
}

impl Trees<'_> {
    fn get(&self, id: &ChunkId) -> RepoResult<Arc<Tree>> {
        match self.listed {
            Some((listed, tree)) if listed == id => Ok(tree.clone()),
            _ => self.repo.get_tree(id),
        }
    }
}

/// What became, in this run, of an entry of a directory's previous tree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    /// Not put (yet): a checkpoint keeps it, finishing the directory
    /// drops it.
    Untouched,
    /// Put again, exactly as it was.
    Kept,
    /// Removed, or moved into [`Node::changed`], which then holds its
    /// name.
    Gone,
}

/// One directory of the overlay: its previous tree, shared with the tree
/// cache rather than copied, what became of each of that tree's entries,
/// and the entries that differ from it.
///
/// Most directories of a backup are unchanged. Keeping the previous tree
/// as it is (not one map entry per file) and writing nothing for a
/// directory whose entries all came back unchanged is what makes an
/// unchanged folder of 100,000 files cost a comparison per file, not a
/// copy, an encoding and a hash of the whole folder.
#[derive(Default)]
struct Node {
    /// The directory's tree in the generation this one starts from (none
    /// for a new directory), in strict name order.
    base: Option<Arc<Tree>>,
    /// The id `base` is stored under, when it may stand for this
    /// directory again (`None` for a tree rebuilt on loading).
    base_id: Option<ChunkId>,
    /// One per entry of `base`.
    fates: Vec<Fate>,
    /// Entries put in this run that differ from `base`, and `base`'s
    /// directories that a put or the walk went into (with their loaded
    /// content). No name is both here and in `base` with a fate other
    /// than [`Fate::Gone`].
    changed: BTreeMap<Vec<u8>, Slot>,
}

struct Slot {
    entry: TreeEntry,
    /// Put in this run (so kept when its directory is finished).
    touched: bool,
    /// A directory's content, when loaded into memory.
    child: Option<Box<Node>>,
}

impl Node {
    fn load(trees: &Trees, subtree: Option<&StoredChunkId>) -> RepoResult<Node> {
        let Some(id) = subtree else {
            return Ok(Node::default());
        };
        let tree = match trees.get(&id.0) {
            Ok(tree) => tree,
            // Lost with its pack, or damaged (see `lost_tree_is_absent`,
            // which warns): the directory starts empty, and the backup
            // puts back what it finds.
            Err(RepoError::NoSuchChunk(..)) => return Ok(Node::default()),
            Err(e) if e.is_damaged_object() => return Ok(Node::default()),
            Err(e) => return Err(e),
        };
        let in_order = tree.entries.windows(2).all(|w| w[0].name < w[1].name);
        let (tree, base_id) = if in_order {
            (tree, Some(id.0))
        } else {
            // Not in strict name order, so never written by obnam: sorted
            // here, the last of equal names kept, and written anew.
            let by_name: BTreeMap<Vec<u8>, TreeEntry> = tree
                .entries
                .iter()
                .map(|e| (e.name.clone(), e.clone()))
                .collect();
            let entries = by_name.into_values().collect();
            (Arc::new(Tree { entries }), None)
        };
        Ok(Node {
            fates: vec![Fate::Untouched; tree.entries.len()],
            base: Some(tree),
            base_id,
            changed: BTreeMap::new(),
        })
    }

    fn base_entries(&self) -> &[TreeEntry] {
        self.base.as_deref().map_or(&[], |t| &t.entries)
    }

    /// The index in `base` of the entry called `name`, whatever its fate.
    fn base_index(&self, name: &[u8]) -> Option<usize> {
        self.base_entries()
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
    }

    /// The index in `base` of the entry called `name`, if it is still
    /// there (not [`Fate::Gone`]; then no entry of `changed` has its name).
    fn in_base(&self, name: &[u8]) -> Option<usize> {
        self.base_index(name)
            .filter(|i| self.fates[*i] != Fate::Gone)
    }

    /// Move entry `i` of `base` into `changed`, to be changed or to hold
    /// its directory's content.
    fn take_from_base(&mut self, i: usize) -> &mut Slot {
        let entry = self.base_entries()[i].clone();
        let touched = self.fates[i] == Fate::Kept;
        self.fates[i] = Fate::Gone;
        self.changed.entry(entry.name.clone()).or_insert(Slot {
            entry,
            touched,
            child: None,
        })
    }

    /// The slot of entry `name`, taken from `base` into `changed` if it is
    /// there; `None` if the directory has no such entry.
    fn slot_mut(&mut self, name: &[u8]) -> Option<&mut Slot> {
        if self.changed.contains_key(name) {
            return self.changed.get_mut(name);
        }
        let i = self.in_base(name)?;
        Some(self.take_from_base(i))
    }

    /// Put `entry` (named `name`) in this directory.
    fn put(&mut self, name: &[u8], mut entry: TreeEntry) {
        // The common case: a file put back as it was.
        if entry.kind != EntryKind::Dir {
            if let Some(i) = self.in_base(name) {
                if self.base_entries()[i] == entry {
                    self.fates[i] = Fate::Kept;
                    return;
                }
            }
        }
        match self.slot_mut(name) {
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
                self.changed.insert(
                    name.to_vec(),
                    Slot {
                        entry,
                        touched: true,
                        child: is_dir.then(|| Box::new(Node::default())),
                    },
                );
            }
        }
    }

    /// Keep entry `name` (not a directory) as `base` has it, if it is
    /// still there; whether it was.
    fn keep(&mut self, name: &[u8]) -> bool {
        match self.in_base(name) {
            Some(i) if self.base_entries()[i].kind != EntryKind::Dir => {
                self.fates[i] = Fate::Kept;
                true
            }
            _ => false,
        }
    }

    /// Remove entry `name`, if there is one.
    fn remove(&mut self, name: &[u8]) {
        self.changed.remove(name);
        if let Some(i) = self.in_base(name) {
            self.fates[i] = Fate::Gone;
        }
    }

    /// Drop the entries not put in this run (the directory was walked).
    fn drop_untouched(&mut self) {
        self.changed.retain(|_, slot| slot.touched);
        for fate in &mut self.fates {
            if *fate == Fate::Untouched {
                *fate = Fate::Gone;
            }
        }
    }

    /// The directory at `parts` below this one, loading (and with `create`,
    /// making) directories on the way.
    /// The node at `parts` below this one (made, with `create`, where a
    /// folder is not there yet). A loop, not a recursion: a worker thread
    /// puts files 2,000 folders deep on its own small stack.
    fn descend(
        &mut self,
        trees: &Trees,
        parts: &[&[u8]],
        create: bool,
    ) -> RepoResult<Option<&mut Node>> {
        let mut node = self;
        for (depth, first) in parts.iter().enumerate() {
            let is_dir = match node.changed.get(*first) {
                // Put in this run as something else (a symlink, say): an
                // entry below it is a caller's mistake, not a folder to
                // make in its place.
                Some(slot) if create && slot.entry.kind != EntryKind::Dir => {
                    let path: Vec<u8> = parts[..=depth]
                        .iter()
                        .flat_map(|p| [&b"/"[..], p].concat())
                        .collect();
                    return Err(BadPath::NotADirectory(
                        String::from_utf8_lossy(&path).into_owned(),
                    )
                    .into());
                }
                Some(slot) => Some(slot.entry.kind == EntryKind::Dir),
                None => node
                    .in_base(first)
                    .map(|i| node.base_entries()[i].kind == EntryKind::Dir),
            };
            match is_dir {
                Some(true) => {}
                Some(false) | None if !create => return Ok(None),
                Some(false) | None => {
                    if let Some(i) = node.in_base(first) {
                        node.fates[i] = Fate::Gone;
                    }
                    node.changed
                        .insert(first.to_vec(), Slot::new_dir(TreeEntry::bare_dir(first)));
                }
            }
            let slot = node.slot_mut(first).ok_or(BadPath::Vanished)?;
            if slot.child.is_none() {
                slot.child = Some(Box::new(Node::load(trees, slot.entry.subtree.as_ref())?));
            }
            match slot.child.as_mut() {
                Some(child) => node = child,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// The directory's entries now, in name order: those of its previous
    /// tree still there, merged with the changed ones.
    fn current(
        &self,
    ) -> MergeByName<'_, impl Iterator<Item = &TreeEntry>, impl Iterator<Item = &TreeEntry>> {
        let base = self
            .base_entries()
            .iter()
            .zip(&self.fates)
            .filter(|(_, fate)| **fate != Fate::Gone)
            .map(|(e, _)| e);
        let len = self.fates.iter().filter(|f| **f != Fate::Gone).count() + self.changed.len();
        MergeByName {
            a: base.peekable(),
            b: self.changed.values().map(|s| &s.entry).peekable(),
            len,
        }
    }

    /// The directory's entries now, in name order, as a list.
    fn entries(&self) -> Vec<TreeEntry> {
        self.current().cloned().collect()
    }

    /// Encode the directory as a tree object (subdirectories already
    /// written), straight from the overlay: no list of its entries is
    /// made, so a large folder is not held twice. Returns the encoding,
    /// its number of entries, and the totals of the subtree.
    ///
    /// A folder whose tree object would be larger than `out.limit` (more
    /// than about a million entries) keeps the entries that fit, in name
    /// order, and the rest is noted in `out` as left out: the rest of the
    /// backup goes on (it stopped at such a folder, leaving no backup of
    /// anything at all).
    fn encode(&self, out: &mut Trim, path: &[u8]) -> RepoResult<EncodedTree> {
        let encode = |take: usize| {
            crate::tree::encode_entries(self.current().take(take))
                .map_err(|e| RepoError::Usage(format!("internal error encoding a tree: {e}")))
        };
        let entries = self.current().len();
        let mut kept = entries;
        let mut encoded = encode(kept)?;
        while encoded.len() > out.limit && kept > 0 {
            // Entries are much alike in size: in proportion, and a little
            // less, fits at once, or nearly.
            let fits = (kept as u128 * out.limit as u128 / encoded.len() as u128) as usize;
            kept = fits.saturating_sub(1 + fits / 1000).min(kept - 1);
            encoded = encode(kept)?;
        }
        if kept < entries {
            out.left_out.push(LeftOut {
                path: path.to_vec(),
                entries,
                kept,
                first_left_out: self
                    .current()
                    .nth(kept)
                    .map(|e| e.name.clone())
                    .unwrap_or_default(),
            });
        }
        let (files, bytes) = totals(self.current().take(kept));
        Ok(EncodedTree {
            encoded,
            entries: kept,
            files,
            bytes,
        })
    }

    /// The stored tree that this directory is again, if it is exactly its
    /// previous tree, still stored where no prune plans to delete it: then
    /// nothing needs writing. Subdirectories must have been written first
    /// (their ids are part of the comparison).
    fn unchanged(&self, repo: &Repository) -> Option<Written> {
        let id = self.base_id?;
        let base = self.base_entries();
        let mut same = self.fates.iter().filter(|f| **f != Fate::Gone).count();
        for (name, slot) in &self.changed {
            if base[self.base_index(name)?] != slot.entry {
                return None;
            }
            same += 1;
        }
        if same != base.len() || !repo.has_chunk(&id) {
            return None;
        }
        let (files, bytes) = totals(base.iter());
        Some((id, files, bytes))
    }

    /// Write this directory (and any loaded subdirectories) as tree
    /// objects, keeping them in memory (a checkpoint goes on building).
    fn write(&mut self, repo: &Repository, out: &mut Trim, path: &[u8]) -> RepoResult<Written> {
        for (name, slot) in self.changed.iter_mut() {
            if let Some(child) = slot.child.as_mut() {
                let written = child.write(repo, out, &child_path(path, name))?;
                record_subtree(&mut slot.entry, written);
            }
        }
        if let Some(written) = self.unchanged(repo) {
            return Ok(written);
        }
        self.encode(out, path)?.put(repo)
    }

    /// Write this directory (and any loaded subdirectories) as tree
    /// objects, consuming it: a finished directory is not kept, so its
    /// changed entries move into the tree rather than being copied, and
    /// the overlay's memory is freed as they go.
    fn into_tree(mut self, repo: &Repository, out: &mut Trim, path: &[u8]) -> RepoResult<Written> {
        for (name, slot) in self.changed.iter_mut() {
            if let Some(child) = slot.child.take() {
                let written = child.into_tree(repo, out, &child_path(path, name))?;
                record_subtree(&mut slot.entry, written);
            }
        }
        if let Some(written) = self.unchanged(repo) {
            return Ok(written);
        }
        let tree = self.encode(out, path)?;
        // Freed before the encoding is compressed and packed.
        drop(self);
        tree.put(repo)
    }
}

/// Two iterators of entries in name order, with no name in both, as one;
/// `len` is the sum of their lengths.
struct MergeByName<'a, A: Iterator<Item = &'a TreeEntry>, B: Iterator<Item = &'a TreeEntry>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    len: usize,
}

impl<'a, A, B> Iterator for MergeByName<'a, A, B>
where
    A: Iterator<Item = &'a TreeEntry>,
    B: Iterator<Item = &'a TreeEntry>,
{
    type Item = &'a TreeEntry;

    fn next(&mut self) -> Option<&'a TreeEntry> {
        let take_a = match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) => x.name < y.name,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let next = if take_a { self.a.next() } else { self.b.next() };
        if next.is_some() {
            self.len = self.len.saturating_sub(1);
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<'a, A, B> ExactSizeIterator for MergeByName<'a, A, B>
where
    A: Iterator<Item = &'a TreeEntry>,
    B: Iterator<Item = &'a TreeEntry>,
{
}

/// The path of the entry `name` of the folder at `path`.
fn child_path(path: &[u8], name: &[u8]) -> Vec<u8> {
    let mut child = path.to_vec();
    if !child.ends_with(b"/") {
        child.push(b'/');
    }
    child.extend_from_slice(name);
    child
}

/// How large a tree object may be, and the folders that were too large
/// for it, as trees are written.
struct Trim {
    limit: usize,
    left_out: Vec<LeftOut>,
}

/// A folder too large for one tree object: what a generation holds of it
/// is its first `kept` entries in name order, of `entries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    /// The folder's path.
    pub path: Vec<u8>,
    /// How many entries it had in the backup.
    pub entries: usize,
    /// How many of them the generation holds.
    pub kept: usize,
    /// The name of the first entry left out.
    pub first_left_out: Vec<u8>,
}

/// A directory encoded as a tree object, not yet stored.
struct EncodedTree {
    encoded: Vec<u8>,
    entries: usize,
    /// Files and bytes of file data in its subtree.
    files: u64,
    bytes: u64,
}

impl EncodedTree {
    fn put(self, repo: &Repository) -> RepoResult<Written> {
        let id = repo.put_encoded_tree(&self.encoded, self.entries)?;
        Ok((id, self.files, self.bytes))
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

/// The files and bytes of file data in a directory's subtree.
fn totals<'a>(entries: impl Iterator<Item = &'a TreeEntry>) -> (u64, u64) {
    entries
        .map(TreeEntry::totals)
        .fold((0u64, 0u64), |(files, bytes), (f, b)| {
            (files + f, bytes + b)
        })
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
    /// The previous tree of the folder the walk listed last.
    listed: Option<(ChunkId, Arc<Tree>)>,
    checkpoints: Vec<String>,
    finished: bool,
    /// The `seq` of the next generation this builder commits.
    next_seq: u64,
    /// Folders written too large for a tree object, not yet taken by
    /// [`GenerationBuilder::take_left_out`].
    left_out: Vec<LeftOut>,
}

impl BuilderState {
    /// The directory at `parts`, as [`Node::descend`] finds it.
    fn descend(
        &mut self,
        repo: &Repository,
        parts: &[&[u8]],
        create: bool,
    ) -> RepoResult<Option<&mut Node>> {
        let trees = Trees {
            repo,
            listed: self.listed.as_ref(),
        };
        self.root.descend(&trees, parts, create)
    }
}

/// How far past the highest `seq` a backup sets its own for each damaged
/// generation record of its client (see [`GenerationBuilder::new`]): more
/// commits than any run makes after a record it cannot read.
const DAMAGED_SEQ_GAP: u64 = 1 << 20;

/// Builds a client's next generation.
pub struct GenerationBuilder {
    repo: Arc<Repository>,
    client: String,
    started: i64,
    previous: Option<GenerationReader>,
    /// Reads the previous generation's trees ahead of the walk.
    prefetch: Option<TreePrefetcher>,
    /// Whether the run kept entries of the previous generation that it
    /// did not check (see [`carried_unread`](Self::carried_unread)).
    carried_unread: std::sync::atomic::AtomicBool,
    state: Mutex<BuilderState>,
}

/// Whether another machine than this one made `gen` (one that records
/// none is taken as this machine's: it was made before obnam recorded it).
fn other_machine(repo: &Repository, gen: &Generation) -> bool {
    !gen.machine.is_empty() && gen.machine != repo.machine
}

impl GenerationBuilder {
    /// Start a new generation for `client`: from its latest generation, or
    /// from nothing.
    pub fn new(repo: Arc<Repository>, client: &str, from_latest: bool) -> RepoResult<Self> {
        let mut generations = repo.generations(client)?;
        // A damaged record left out of the listing may be a sound one
        // that could not be read whole this time (read cut short again
        // and again): its `seq` is not known, and may be above every
        // other. This generation must come after it when it reads whole
        // again, so each such record counts for a great many commits.
        let damaged = repo.damaged_generations(client)?.len() as u64;
        let next_seq = generations
            .iter()
            .map(|g| g.seq)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
            .saturating_add(damaged.saturating_mul(DAMAGED_SEQ_GAP));
        let mut latest = if from_latest { generations.pop() } else { None };
        // Another machine's latest generation is not this one's previous:
        // what it recorded of a file says nothing of this machine's file
        // at the same path (see `crate::machine`).
        if let Some(gen) = latest.as_ref().filter(|g| other_machine(&repo, g)) {
            let host = match gen.host.as_str() {
                "" => String::new(),
                host => format!(" (host '{}')", crate::error::shown(host)),
            };
            tracing::warn!(
                "the latest backup of client '{}' (generation {}) was made on another \
                 machine{host}: two machines that back up as one client share one history, \
                 and 'forget' keeps the latest backups whichever made them, so that it may delete all of one's; give each machine its own \
                 --client-name (it defaults to the host name). Every file is read again",
                crate::error::shown(client),
                gen.id
            );
            latest = None;
        }
        // Another user's, on this machine: the same files, but one history
        // shared by two people, each of whose 'forget' keeps the latest
        // backups of either. Nor is it this run's previous: the other user
        // saw other things of the same files (a user sees no `trusted.*`
        // attribute, and root's backup after a user's kept none of them
        // for every unchanged file, exit 0; a user's after root's recorded
        // files it could not read as backed up).
        let me = rustix::process::geteuid().as_raw();
        if let Some((gen, uid)) = latest
            .as_ref()
            .and_then(|g| Some((g, g.uid?)))
            .filter(|(_, uid)| *uid != me)
        {
            tracing::warn!(
                "the latest backup of client '{}' (generation {}) was made by another user of \
                 this machine (uid {uid}; this is uid {me}): users who back up as one client \
                 share one history, and 'forget' keeps the latest backups whichever made them, so that it may delete all of one's; give each \
                 user their own --client-name (it defaults to the host name). Every file is \
                 read again",
                crate::error::shown(client),
                gen.id
            );
            latest = None;
        }
        let root = match &latest {
            Some(gen) => Node::load(
                &Trees {
                    repo: &repo,
                    listed: None,
                },
                Some(&gen.root),
            )?,
            None => Node::default(),
        };
        let previous = latest.map(|g| GenerationReader::new(repo.clone(), g));
        let prefetch = previous
            .as_ref()
            .and_then(|_| TreePrefetcher::start(repo.clone()));
        let started = repo.clock.now_ns();
        // A backup may store millions of new chunks: all but the last
        // few are kept on local disk, not in memory, until its end.
        repo.limit_new_chunks_in_memory();
        Ok(GenerationBuilder {
            repo,
            client: client.to_string(),
            started,
            previous,
            prefetch,
            carried_unread: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(BuilderState {
                root,
                listed: None,
                checkpoints: Vec::new(),
                finished: false,
                next_seq,
                left_out: Vec::new(),
            }),
        })
    }

    /// The generation this one starts from.
    pub fn previous_generation(&self) -> Option<&Generation> {
        self.previous.as_ref().map(|r| r.generation())
    }

    /// Note that the run keeps entries of the previous generation that it
    /// did not check (a folder it could not list, kept as it was): the
    /// generation then records the previous generation's
    /// [`racy_from`](Generation::racy_from) as its own, so that the next
    /// run judges those entries as this one would have. A checkpoint
    /// records it anyway (it holds the previous generation's entries for
    /// all that its run had not reached).
    pub fn carried_unread(&self) {
        self.carried_unread
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What this generation records as its `racy_from`: the previous
    /// generation's, where it holds entries of that one unchecked and
    /// that is earlier than this run's start.
    fn racy_from(&self, checkpoint: bool) -> Option<i64> {
        let carried = checkpoint
            || self
                .carried_unread
                .load(std::sync::atomic::Ordering::Relaxed);
        let previous = self.previous_generation()?.racy_from();
        (carried && previous < self.started).then_some(previous)
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
        let Some(tree) = lost_tree_is_absent(reader.dir(path), path)? else {
            return Ok(None);
        };
        // Cheap: the reader just found this directory.
        if let Ok(Some(id)) = reader.subtree_id(path) {
            if let Some(prefetch) = &self.prefetch {
                prefetch.listed(id, &tree.entries);
            }
            if let Some(id) = id {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.listed = Some((id, tree.clone()));
            }
        }
        Ok(Some(tree.entries.clone()))
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
        state
            .descend(&self.repo, parent, true)?
            .ok_or(BadPath::NoParent)?
            .put(name, entry);
        Ok(())
    }

    /// Keep entries of the directory `dir` (files, not directories), given
    /// by name, exactly as the generation this one starts from has them:
    /// what a backup does with unchanged files, without an entry to
    /// compare for each. A name is kept only if the directory still holds
    /// it as it was (not put, removed or replaced in this run); returns
    /// the positions of the names not kept, for the caller to put.
    pub fn keep<'n>(
        &self,
        dir: &[u8],
        names: impl IntoIterator<Item = &'n [u8]>,
    ) -> RepoResult<Vec<u32>> {
        let parts = components(dir)?;
        // As `put`: a run of unchanged files keeps the lock fresh.
        self.repo.refresh_locks()?;
        let mut state = self.state()?;
        let mut node = state.descend(&self.repo, &parts, false)?;
        let mut refused = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            let kept = match node.as_deref_mut() {
                Some(node) => node.keep(name),
                None => false,
            };
            if !kept {
                refused.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        Ok(refused)
    }

    /// Remove the entry at `path` (and its subtree); no error if absent.
    pub fn remove(&self, path: &[u8]) -> RepoResult<()> {
        let parts = components(path)?;
        let Some((name, parent)) = parts.split_last() else {
            return Err(BadPath::RemoveRoot.into());
        };
        let mut state = self.state()?;
        if let Some(node) = state.descend(&self.repo, parent, false)? {
            node.remove(name);
        }
        Ok(())
    }

    /// The entries the new generation has at a directory now.
    pub fn list(&self, path: &[u8]) -> RepoResult<Option<Vec<TreeEntry>>> {
        let parts = components(path)?;
        let mut state = self.state()?;
        Ok(state
            .descend(&self.repo, &parts, false)?
            .map(|node| node.entries()))
    }

    /// The directory at `path` has been walked: drop its entries that were
    /// not put in this run, write it, and free its memory.
    pub fn finish_dir(&self, path: &[u8]) -> RepoResult<()> {
        let parts = components(path)?;
        let mut state = self.state()?;
        let Some(node) = state.descend(&self.repo, &parts, false)? else {
            return Err(BadPath::NotADirectory(String::from_utf8_lossy(path).into()).into());
        };
        node.drop_untouched();
        let Some((name, parent)) = parts.split_last() else {
            return Ok(());
        };
        let parent = state
            .descend(&self.repo, parent, false)?
            .ok_or(BadPath::ParentVanished)?;
        let mut out = self.trim();
        if let Some(slot) = parent.changed.get_mut(*name) {
            if let Some(child) = slot.child.take() {
                record_subtree(
                    &mut slot.entry,
                    child.into_tree(&self.repo, &mut out, path)?,
                );
            }
        }
        state.left_out.append(&mut out.left_out);
        Ok(())
    }

    /// How trees are to be trimmed, with nothing left out yet.
    fn trim(&self) -> Trim {
        Trim {
            limit: self.repo.max_tree_len,
            left_out: Vec::new(),
        }
    }

    /// The folders that were too large to hold whole, since the last
    /// call: in [`finish_dir`](Self::finish_dir) and in the final
    /// [`commit`](Self::commit) (a checkpoint's are not reported: the
    /// folder is not finished, and the final commit reports it).
    pub fn take_left_out(&self) -> Vec<LeftOut> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.left_out)
    }

    /// Commit what has been built: as a checkpoint (and carry on), or as
    /// the final generation.
    pub fn commit(&self, checkpoint: bool) -> RepoResult<Generation> {
        let mut state = self.state()?;
        let mut out = self.trim();
        let (root, files, bytes) = state.root.write(&self.repo, &mut out, b"/")?;
        if !checkpoint {
            state.left_out.append(&mut out.left_out);
        }
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
            machine: self.repo.machine.clone(),
            host: crate::lock::host_name(),
            uid: Some(rustix::process::geteuid().as_raw()),
            racy_from: self.racy_from(checkpoint),
        };
        // A run whose lock was broken meanwhile commits nothing: a prune
        // that took it for gone may have deleted what it refers to.
        self.repo.check_locks_held()?;
        self.repo.write_generation(&gen)?;
        state.next_seq += 1;
        if checkpoint {
            // The run goes on, and needs its locks.
            self.repo.refresh_locks()?;
            state.checkpoints.push(gen.id.clone());
        } else {
            state.finished = true;
            crate::done::note(format!(
                "the backup was committed as generation {}, which is complete; what the run \
                 had left to tidy (its checkpoints, say) stays until 'obnam forget' removes it",
                gen.id
            ));
            // The generation is committed: what follows only tidies, and
            // a store that fails now must not make a committed backup
            // look failed (it exited 1 with no generation named).
            let tidied = self
                .repo
                .refresh_locks()
                .and_then(|()| self.repo.consolidate_index());
            if let Err(e) = tidied {
                tracing::warn!(
                    "generation {} is committed, but merging this run's index objects failed \
                     ({e}); they stay as they are, and a later backup or prune merges them",
                    gen.id
                );
            }
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
