//! The walker of a restore: reads the generation's directories in order,
//! makes each directory in the target, and hands every other entry to the
//! workers in batches.
//!
//! One thread walks, so the generation's trees are read in order (the
//! repository caches the trees on the current path) and every directory
//! exists before anything is put in it. A name is checked before anything
//! is made with it ([`check_name`]), and every object is made relative to
//! its parent directory's open descriptor, never through a path (see
//! [`crate::fsops`]).
//!
//! Work goes to the workers through a bounded queue of batches, so memory
//! and open descriptors stay bounded whatever the tree's size: a batch
//! holds the entries of one directory (and so one descriptor), at most
//! [`BATCH_ENTRIES`] of them or about [`BATCH_BYTES`] of file data. The
//! walk is depth first with an explicit stack, so a deep tree cannot
//! overflow the thread's stack; a directory on the stack is made but not
//! opened until it is walked, so a wide tree does not hold a descriptor per
//! directory either.
//!
//! What the walker leaves for later: the hard links to make once every
//! file is restored, and the directories to give their metadata at the
//! very end.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use plugin_api::{Entry, EntryKind, GenerationReader};

use crate::fsops;
use crate::names::{self, check_name, escape};
use crate::problems::Problems;

/// Entries in one batch of work, at most.
pub const BATCH_ENTRIES: usize = 32;

/// Bytes of file data in one batch of work, roughly at most (a larger file
/// is a batch of its own).
pub const BATCH_BYTES: u64 = 4 << 20;

/// Batches waiting for a worker, at most.
pub const QUEUE: usize = 64;

/// A path below the generation's root, as components (none for `/`).
pub type Parts = Vec<Vec<u8>>;

/// A path to restore, with the generation's entries for it and for each
/// directory on the way to it.
pub struct Root {
    pub parts: Parts,
    /// Entries of `parts[..1]`, `parts[..2]`, ...; the last is the root's own.
    /// Shared with the other roots that have the same folders on their way
    /// (50,000 matches of a pattern held a copy of each folder's entry
    /// each).
    pub entries: Vec<Arc<Entry>>,
}

/// Work for a worker: one entry that is not a directory.
pub struct Job {
    /// The directory it goes in.
    pub parent: Arc<OwnedFd>,
    /// Its absolute path in the generation (and below the target).
    pub path: Vec<u8>,
    pub entry: Entry,
    /// The (device, inode) of a hard-linked object restored first of its
    /// links.
    pub leader: Option<(u64, u64, u64)>,
}

impl Job {
    /// The name to make in `parent`.
    pub fn name(&self) -> &[u8] {
        &self.entry.name
    }
}

/// A hard link to make after the workers are done.
pub struct Link {
    pub parts: Parts,
    pub leader: Parts,
    pub key: (u64, u64, u64),
    /// The size of a regular file, which the generation's data size counts
    /// for every name (for the progress); 0 for other objects.
    pub size: u64,
}

/// A directory whose metadata is set at the end. It names its parent by
/// its place in [`Walked::dirs`] rather than holding its whole path, so
/// that the records of a deep tree take memory in proportion to its depth,
/// not to the square of it.
pub struct DirRecord {
    /// The record of the directory it is in (`None`: the target itself).
    pub parent: Option<usize>,
    /// Its generation entry; `entry.name` is its name in its parent.
    pub entry: Entry,
}

/// The path, as components, of the directory recorded at `dirs[index]`.
pub fn dir_parts(dirs: &[DirRecord], index: usize) -> Parts {
    let mut parts = Vec::new();
    let mut at = Some(index);
    while let Some(i) = at {
        parts.push(dirs[i].entry.name.clone());
        at = dirs[i].parent;
    }
    parts.reverse();
    parts
}

/// What the walk leaves for later.
#[derive(Default)]
pub struct Walked {
    /// Directories made, each after its parent.
    pub dirs: Vec<DirRecord>,
    pub links: Vec<Link>,
}

/// The first file met for a (device, inode) pair.
struct Leader {
    parts: Parts,
    /// What the entry holds (see [`Entry::same_object`]).
    entry: Entry,
}

/// A directory to walk: made, not yet opened; `dir` is its record.
struct Pending {
    parent: Arc<OwnedFd>,
    dir: usize,
}

fn child_parts(parts: &[Vec<u8>], name: &[u8]) -> Parts {
    let mut child = parts.to_vec();
    child.push(name.to_vec());
    child
}

/// The walker's state.
pub struct Walker<'a> {
    reader: &'a GenerationReader,
    root: Arc<OwnedFd>,
    problems: &'a Problems,
    /// Whether the generation is gone from the repository, the restore
    /// then stopping (see `Restorer::stop_if_gone`): asked when a folder
    /// cannot be read.
    gone: &'a (dyn Fn() -> bool + Sync),
    tx: SyncSender<Vec<Job>>,
    walked: Walked,
    leaders: HashMap<(u64, u64, u64), Leader>,
    /// Directories on the way to requested paths made so far, and their
    /// records.
    made: HashMap<Parts, usize>,
    /// The folders on the way to the last requested path, each with its
    /// name and record, and the deepest of them open (see
    /// [`Walker::make_parents`]).
    way: Vec<(Vec<u8>, usize)>,
    way_end: Option<Arc<OwnedFd>>,
    stack: Vec<Pending>,
    batch: Vec<Job>,
    batch_bytes: u64,
    /// The workers are gone: stop.
    stopped: bool,
}

impl<'a> Walker<'a> {
    /// A walker restoring into the directory `root`, sending work to `tx`.
    pub fn new(
        reader: &'a GenerationReader,
        root: Arc<OwnedFd>,
        problems: &'a Problems,
        gone: &'a (dyn Fn() -> bool + Sync),
        tx: SyncSender<Vec<Job>>,
    ) -> Self {
        Walker {
            reader,
            root,
            problems,
            gone,
            tx,
            walked: Walked::default(),
            leaders: HashMap::new(),
            made: HashMap::new(),
            way: Vec::new(),
            way_end: None,
            stack: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            stopped: false,
        }
    }

    /// Walk every root; closes the queue when done.
    pub fn run(mut self, roots: &[Root]) -> Walked {
        for root in roots {
            if self.must_stop() {
                break;
            }
            if root.parts.is_empty() {
                // The generation's root: its entries go in the target itself.
                let dir = Arc::clone(&self.root);
                self.walk_dir(dir, &[], None);
            } else if let Some((parent, record)) = self.make_parents(root) {
                let entry = root
                    .entries
                    .last()
                    .map(|e| Entry::clone(e))
                    .unwrap_or_default();
                self.place(parent, root.parts.clone(), record, entry);
                self.flush();
            }
            while let Some(pending) = self.stack.pop() {
                if self.must_stop() {
                    break;
                }
                let parts = dir_parts(&self.walked.dirs, pending.dir);
                let name = parts.last().map(Vec::as_slice).unwrap_or_default();
                match fsops::open_dir_at(pending.parent.as_fd(), name) {
                    Ok(fd) => self.walk_dir(Arc::new(fd), &parts, Some(pending.dir)),
                    Err(e) => self.problems.report(
                        &names::from_parts(&parts),
                        format!("cannot open restored folder: {e}"),
                    ),
                }
            }
        }
        self.flush();
        self.walked
    }

    /// Make the directories on the way to `root` that are not made yet, and
    /// return the one it goes in, with its record.
    ///
    /// The way to the last root is kept (its folders' names and records,
    /// and the deepest one open): the roots come sorted, so the next one
    /// shares a first part of its way, and only the rest is made or
    /// opened. (Each root made or opened its whole way from the target,
    /// and looked each folder up by its whole path: 5,000 matches of a
    /// pattern 1,500 folders deep took 8 minutes.) Only the deepest folder
    /// is kept open: a way may be as deep as paths go.
    fn make_parents(&mut self, root: &Root) -> Option<(Arc<OwnedFd>, Option<usize>)> {
        let last = root.parts.len().saturating_sub(1);
        let shared = self
            .way
            .iter()
            .zip(&root.parts[..last])
            .take_while(|((name, _), part)| name == *part)
            .count();
        let mut dir = match (&self.way_end, shared) {
            (_, 0) => Arc::clone(&self.root),
            (Some(end), n) if n == self.way.len() => Arc::clone(end),
            (_, n) => match fsops::open_dir_path(self.root.as_fd(), &root.parts[..n]) {
                Ok(fd) => Arc::new(fd),
                Err(e) => {
                    self.problems.report(
                        &names::from_parts(&root.parts[..n]),
                        format!("cannot open restored folder: {e}"),
                    );
                    return None;
                }
            },
        };
        self.way.truncate(shared);
        self.way_end = None;
        for i in shared..last {
            let record = self.way.last().map(|(_, record)| *record);
            let name = &root.parts[i];
            // A folder made for an earlier root, whose way went elsewhere
            // since, is opened, not made again.
            let made = self.made.get(&root.parts[..=i]).copied();
            let opened = match made {
                Some(_) => fsops::open_dir_at(dir.as_fd(), name),
                None => fsops::make_dir(dir.as_fd(), name),
            };
            dir = match opened {
                Ok(fd) => Arc::new(fd),
                Err(e) => {
                    self.problems.report(
                        &names::from_parts(&root.parts[..=i]),
                        format!("cannot make folder: {e}"),
                    );
                    return None;
                }
            };
            let index = match made {
                Some(index) => index,
                None => {
                    let mut entry = Entry::clone(&root.entries[i]);
                    entry.name = name.clone();
                    self.walked.dirs.push(DirRecord {
                        parent: record,
                        entry,
                    });
                    let index = self.walked.dirs.len() - 1;
                    self.made.insert(root.parts[..=i].to_vec(), index);
                    index
                }
            };
            self.way.push((name.clone(), index));
        }
        self.way_end = Some(Arc::clone(&dir));
        Some((dir, self.way.last().map(|(_, record)| *record)))
    }

    /// Restore the entries of the generation directory `parts`, made and
    /// opened as `dir`: other entries first (queued), then subdirectories
    /// (made, and pushed to be walked).
    ///
    /// Both go largest first: files by size, subdirectories by the bytes of
    /// file data below them, which the generation records. A restore takes
    /// at least as long as its largest file, which one worker writes (its
    /// checksum must be computed in order); starting the large files early
    /// lets the many small ones fill the time instead of waiting for a
    /// large one found last.
    fn walk_dir(&mut self, dir: Arc<OwnedFd>, parts: &[Vec<u8>], record: Option<usize>) {
        let path = names::from_parts(parts);
        let entries = match self.reader.list_dir(names::as_path(&path)) {
            Ok(Some(entries)) => entries,
            Ok(None) => {
                self.problems
                    .report(&path, "the generation has no such folder");
                return;
            }
            Err(e) if crate::fetch::is_store_failure(e.message()) => {
                self.problems.stop(e);
                return;
            }
            Err(_) if (self.gone)() => return,
            Err(e) => {
                self.problems.report(
                    &path,
                    format!("cannot read the folder from the repository: {e}"),
                );
                return;
            }
        };
        let (mut subdirs, mut others): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.kind == EntryKind::Dir);
        // Largest first (see `largest_first`); the sorts are stable, so
        // entries of equal size stay in name order.
        others.sort_by_key(|e| std::cmp::Reverse(e.size));
        subdirs.sort_by_key(|e| std::cmp::Reverse(e.subtree_bytes));
        for entry in others {
            let child = child_parts(parts, &entry.name);
            self.place(Arc::clone(&dir), child, record, entry);
        }
        self.flush();
        // Pushed in reverse, so that the largest is walked first.
        for entry in subdirs.into_iter().rev() {
            let child = child_parts(parts, &entry.name);
            self.place(Arc::clone(&dir), child, record, entry);
        }
    }

    /// Restore one entry in `parent` (recorded as `record`): make a
    /// directory and remember to walk it, note a hard link for later, or
    /// queue the entry for a worker.
    fn place(&mut self, parent: Arc<OwnedFd>, parts: Parts, record: Option<usize>, entry: Entry) {
        let name = parts.last().map(Vec::as_slice).unwrap_or_default();
        let named_right = check_name(&entry.name).and_then(|()| {
            if entry.name == name {
                Ok(())
            } else {
                Err("the entry's name does not match its place in the generation")
            }
        });
        if let Err(why) = named_right {
            let parent_path = names::from_parts(&parts[..parts.len().saturating_sub(1)]);
            self.problems.report(
                &parent_path,
                format!(
                    "refused to restore the entry named '{}': {why}",
                    escape(&entry.name)
                ),
            );
            return;
        }
        if entry.kind == EntryKind::Dir {
            match rustix::fs::mkdirat(parent.as_fd(), name, rustix::fs::Mode::from_raw_mode(0o700))
            {
                Ok(()) => {
                    self.walked.dirs.push(DirRecord {
                        parent: record,
                        entry,
                    });
                    let dir = self.walked.dirs.len() - 1;
                    self.stack.push(Pending { parent, dir });
                }
                Err(e) => self.problems.report(
                    &names::from_parts(&parts),
                    format!("cannot make folder: {}", io::Error::from(e)),
                ),
            }
            return;
        }
        let size = if entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        let mut leader = None;
        // Any object but a folder can have several names: a FIFO, a device
        // node or a symlink (`ln -P`) as well as a regular file. All are
        // restored as links to the first name, so the link count and the
        // shared inode come back.
        if entry.nlink > 1 {
            // Names recorded alike are one object (see `Entry::object_key`).
            let key = entry.object_key();
            match self.leaders.get(&key) {
                Some(first) if Entry::same_object(&first.entry, &entry) => {
                    self.walked.links.push(Link {
                        parts,
                        leader: first.parts.clone(),
                        key,
                        size,
                    });
                    return;
                }
                // The same inode with other content: the generation is
                // inconsistent; restore this one as an object of its own.
                Some(_) => {}
                None => {
                    self.leaders.insert(
                        key,
                        Leader {
                            parts: parts.clone(),
                            entry: Entry {
                                chunks: Vec::new(),
                                xattrs: Vec::new(),
                                ..entry.clone()
                            },
                        },
                    );
                    leader = Some(key);
                }
            }
        }
        if !self.batch.is_empty()
            && (self.batch.len() >= BATCH_ENTRIES || self.batch_bytes + size > BATCH_BYTES)
        {
            self.flush();
        }
        self.batch_bytes += size;
        self.batch.push(Job {
            parent,
            path: names::from_parts(&parts),
            entry,
            leader,
        });
    }

    /// Whether to walk no further: the workers are gone, or the restore
    /// stops (see [`Problems::stop`]).
    fn must_stop(&self) -> bool {
        self.stopped || self.problems.stopped().is_some()
    }

    /// Hand the batch being filled to the workers.
    fn flush(&mut self) {
        if self.batch.is_empty() || self.must_stop() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if self.tx.send(batch).is_err() {
            self.problems
                .report(b"/", "the restore workers stopped unexpectedly");
            self.stopped = true;
        }
    }
}
