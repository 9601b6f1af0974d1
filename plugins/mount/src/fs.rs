//! The file system the kernel sees: [`ObnamFs`] answers FUSE requests
//! from a client's generations.
//!
//! Everything is read-only, and nothing changes while the mount lasts
//! (the generations are those there were when it began), so the kernel
//! may cache attributes, names and file data for long ([`TTL`], and
//! `FOPEN_KEEP_CACHE`).
//!
//! Several FUSE threads serve requests at once ([`crate::mount::THREADS`]),
//! so that listing a directory does not wait for a large file's chunks.
//! The inode table is behind a read-write lock that is never held while
//! the repository is read: a directory is listed from the repository
//! first, then its children are entered in the table.
//!
//! A repository error becomes `EIO` for the program that asked, with the
//! reason in obnam's log; the mount goes on.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use plugin_api::names::escape;
use plugin_api::tracing;
use plugin_api::{ChunkId, Entry, EntryKind, GenerationInfo, GenerationReader, Repository};

use crate::attr;
use crate::cache::ChunkCache;
use crate::inodes::{child_path, Child, Children, Ino, NodeKind, Table, ROOT};
use crate::layout::{Layout, Position};
use crate::naming;

/// How long the kernel may keep attributes and names: nothing changes.
const TTL: Duration = Duration::from_secs(3600);

/// Chunks read at once to learn where a file's later chunks start.
const LEARN_AT_ONCE: usize = 4;

/// How far the kernel reads ahead of a sequential reader.
const MAX_READAHEAD: u32 = 1 << 20;

/// A generation of the mount: its description, its directory name, and
/// its reader once opened.
struct Gen {
    info: GenerationInfo,
    name: String,
    reader: Mutex<Option<Arc<GenerationReader>>>,
}

/// What a file's layout is known to be, and the lock that one reader at
/// a time holds to learn more of it.
#[derive(Default)]
struct FileLayout {
    known: Mutex<Layout>,
    learning: Mutex<()>,
}

/// What a directory's listing comes from.
enum Listing {
    Top,
    Dir { gen: usize, path: Vec<u8> },
}

/// A client's generations as a FUSE file system.
pub struct ObnamFs {
    repo: Repository,
    client: String,
    gens: Vec<Gen>,
    table: RwLock<Table>,
    cache: ChunkCache<ChunkId>,
    layouts: Mutex<HashMap<Ino, Arc<FileLayout>>>,
    /// The files a read of failed, each warned about once (a program's
    /// one read is many reads of the kernel's).
    failed_reads: Mutex<HashSet<Ino>>,
    /// Owner of the directories the mount makes: whoever mounted.
    owner: (u32, u32),
    /// The directories being listed from the repository now.
    listing: ListingGate,
}

/// One listing of a directory at a time: readers that ask for a
/// directory another thread is listing wait for that listing, rather
/// than load and decode their own copy (six `ls` at once of a folder of a
/// million entries held 3.5 GB and took 22 s, where one took 1.4 GB and
/// 4.7 s; the copies but the first were thrown away).
#[derive(Default)]
struct ListingGate {
    busy: Mutex<HashSet<Ino>>,
    done: std::sync::Condvar,
}

/// This thread's turn to list a directory: over when dropped, however the
/// listing ended.
struct ListingTurn<'a> {
    gate: &'a ListingGate,
    ino: Ino,
}

impl ListingGate {
    /// Wait until no other thread is listing `ino`, then take the turn.
    fn take(&self, ino: Ino) -> ListingTurn<'_> {
        let mut busy = lock(&self.busy);
        while busy.contains(&ino) {
            busy = self.done.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        busy.insert(ino);
        ListingTurn { gate: self, ino }
    }
}

impl Drop for ListingTurn<'_> {
    fn drop(&mut self) {
        lock(&self.gate.busy).remove(&self.ino);
        self.gate.done.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a stored name can be shown as a directory entry: not empty,
/// not `.` or `..`, no `/` and no NUL. A damaged or hostile generation
/// might hold others; they are left out (and logged).
fn showable(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

impl ObnamFs {
    /// The file system of `gens` (oldest first), with a chunk cache of
    /// `cache_bytes`.
    pub fn new(
        repo: Repository,
        client: String,
        gens: Vec<GenerationInfo>,
        cache_bytes: u64,
        owner: (u32, u32),
    ) -> Self {
        let gens: Vec<Gen> = gens
            .into_iter()
            .map(|info| Gen {
                name: naming::generation_dir(&info),
                info,
                reader: Mutex::new(None),
            })
            .collect();
        ObnamFs {
            repo,
            client,
            table: RwLock::new(Table::new(gens.len())),
            gens,
            cache: ChunkCache::new(cache_bytes),
            layouts: Mutex::new(HashMap::new()),
            failed_reads: Mutex::new(HashSet::new()),
            owner,
            listing: ListingGate::default(),
        }
    }

    fn table(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A generation's reader, opened on first use.
    fn reader(&self, gen: usize) -> Result<Arc<GenerationReader>, Errno> {
        let slot = self.gens.get(gen).ok_or(Errno::ENOENT)?;
        let mut reader = lock(&slot.reader);
        if let Some(r) = reader.as_ref() {
            return Ok(r.clone());
        }
        let opened = self
            .repo
            .open_generation(&self.client, &slot.info.id)
            .map_err(|e| {
                tracing::warn!("mount: cannot open generation {}: {e}", slot.info.id);
                Errno::EIO
            })?;
        let opened = Arc::new(opened);
        *reader = Some(opened.clone());
        Ok(opened)
    }

    /// The newest generation's start, for the times of the mount's top.
    fn newest_start(&self) -> SystemTime {
        self.gens
            .last()
            .map(|g| attr::time_ns(g.info.started_ns))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The attributes of an inode.
    fn attr(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let table = self.table();
        let node = table.get(ino).ok_or(Errno::ENOENT)?;
        Ok(match &node.kind {
            NodeKind::Root => {
                let nlink = u32::try_from(self.gens.len() + 2).unwrap_or(u32::MAX);
                attr::made_dir_attr(ino, self.newest_start(), self.owner, nlink)
            }
            NodeKind::Generation(gen) => {
                let start = attr::time_ns(self.gens[*gen].info.started_ns);
                // 1: the number of folders inside is not known until listed.
                attr::made_dir_attr(ino, start, self.owner, 1)
            }
            NodeKind::Latest => {
                let target = self.gens.last().map(|g| g.name.len()).unwrap_or(0);
                attr::latest_attr(ino, target, self.newest_start(), self.owner)
            }
            NodeKind::Entry { entry, .. } => attr::entry_attr(ino, entry),
        })
    }

    /// The entry of an inode inside a generation.
    fn entry(&self, ino: Ino) -> Result<Arc<Entry>, Errno> {
        let table = self.table();
        match &table.get(ino).ok_or(Errno::ENOENT)?.kind {
            NodeKind::Entry { entry, .. } => Ok(entry.clone()),
            _ => Err(Errno::ENOENT),
        }
    }

    /// A directory's children: listed once, then remembered.
    fn children(&self, ino: Ino) -> Result<Arc<Children>, Errno> {
        let listing = {
            let table = self.table();
            let node = table.get(ino).ok_or(Errno::ENOENT)?;
            if let Some(children) = &node.children {
                return Ok(children.clone());
            }
            match &node.kind {
                NodeKind::Root => Listing::Top,
                NodeKind::Generation(gen) => Listing::Dir {
                    gen: *gen,
                    path: b"/".to_vec(),
                },
                NodeKind::Entry { gen, path, entry } if entry.kind == EntryKind::Dir => {
                    Listing::Dir {
                        gen: *gen,
                        path: path.clone(),
                    }
                }
                _ => return Err(Errno::ENOTDIR),
            }
        };
        match listing {
            Listing::Top => {
                // The top's children are made here: entries of a name and
                // a kind only, for the listing.
                let made = |name: &str, kind| {
                    Arc::new(Entry {
                        name: name.as_bytes().to_vec(),
                        kind,
                        ..Entry::default()
                    })
                };
                let mut children: Vec<Child> = self
                    .gens
                    .iter()
                    .enumerate()
                    .map(|(i, g)| Child {
                        ino: Table::generation(i),
                        entry: made(&g.name, EntryKind::Dir),
                    })
                    .collect();
                let mut table = self.table_mut();
                if let Some(latest) = table.latest() {
                    children.push(Child {
                        ino: latest,
                        entry: made(naming::LATEST, EntryKind::Symlink),
                    });
                }
                table.set_children(ino, children).ok_or(Errno::ENOENT)
            }
            Listing::Dir { gen, path } => {
                let _turn = self.listing.take(ino);
                // Listed by the thread this one waited for.
                if let Some(children) = self.table().get(ino).and_then(|n| n.children.clone()) {
                    return Ok(children);
                }
                let reader = self.reader(gen)?;
                let entries = reader
                    .list_dir(Path::new(OsStr::from_bytes(&path)))
                    .map_err(|e| {
                        tracing::warn!(
                            "mount: cannot list {} in generation {}: {e}",
                            escape(&path),
                            self.gens[gen].info.id
                        );
                        Errno::EIO
                    })?
                    // Listed as a directory but without a tree: empty.
                    .unwrap_or_default();
                let mut table = self.table_mut();
                let mut children = Vec::with_capacity(entries.len());
                let mut given = HashSet::with_capacity(entries.len());
                for entry in entries {
                    if !showable(&entry.name) {
                        tracing::warn!(
                            "mount: left out an entry with an impossible name \"{}\" in {}",
                            escape(&entry.name),
                            escape(&path)
                        );
                        continue;
                    }
                    let entry = Arc::new(entry);
                    let at = child_path(&path, &entry.name);
                    let number = table.number(gen, &at, &entry, &mut given);
                    children.push(Child { ino: number, entry });
                }
                table.set_children(ino, children).ok_or(Errno::ENOENT)
            }
        }
    }

    /// A chunk of the file `ino`'s data, from the cache or the
    /// repository. A failure is warned about once per file, naming it.
    fn chunk(&self, ino: Ino, id: &ChunkId) -> Result<Arc<Vec<u8>>, Errno> {
        self.cache
            .get_or_fetch(id, || {
                let mut data = self
                    .repo
                    .get_chunk(*id)
                    .map_err(|e| format!("cannot read a chunk: {e}"))?;
                // The repository may hand over a buffer with room to
                // spare (decompression): the cache holds what it counts.
                data.shrink_to_fit();
                Ok(data)
            })
            .map_err(|e| {
                if lock(&self.failed_reads).insert(ino) {
                    let file = match self.table().get(ino).map(|n| &n.kind) {
                        Some(NodeKind::Entry { gen, path, .. }) => {
                            format!("{} in generation {}", escape(path), self.gens[*gen].info.id)
                        }
                        _ => format!("inode {ino}"),
                    };
                    tracing::warn!("mount: {file}: {e}");
                }
                Errno::EIO
            })
    }

    /// The kernel was told of `child`, found in the directory `parent`
    /// (which it holds).
    fn remember(&self, parent: Ino, child: &Child) -> Result<(), Errno> {
        let mut table = self.table_mut();
        let (gen, path) = match &table.get(parent).ok_or(Errno::ENOENT)?.kind {
            NodeKind::Root => return Ok(()),
            NodeKind::Generation(gen) => (*gen, child_path(b"/", child.name())),
            NodeKind::Entry { gen, path, .. } => (*gen, child_path(path, child.name())),
            NodeKind::Latest => return Err(Errno::ENOTDIR),
        };
        table.remember(gen, parent, path, child);
        Ok(())
    }

    /// The kernel forgot lookups of these inodes: those it holds no more
    /// leave the table, with what was kept for reading them.
    fn forget_lookups(&self, nodes: &[(Ino, u64)]) {
        let gone: Vec<Ino> = {
            let mut table = self.table_mut();
            nodes
                .iter()
                .filter(|&&(ino, lookups)| table.forget(ino, lookups))
                .map(|&(ino, _)| ino)
                .collect()
        };
        if gone.is_empty() {
            return;
        }
        let mut layouts = lock(&self.layouts);
        let mut failed = lock(&self.failed_reads);
        for ino in gone {
            layouts.remove(&ino);
            failed.remove(&ino);
        }
    }

    fn layout(&self, ino: Ino) -> Arc<FileLayout> {
        lock(&self.layouts).entry(ino).or_default().clone()
    }

    /// Where file offset `pos` is among `chunks`, learning the layout as
    /// far as needed; `None` past the last chunk.
    fn locate(
        &self,
        ino: Ino,
        layout: &FileLayout,
        chunks: &[ChunkId],
        pos: u64,
    ) -> Result<Option<Position>, Errno> {
        if let Some(p) = lock(&layout.known).locate(pos) {
            return Ok(Some(p));
        }
        // One reader learns at a time; the others wait, then find what
        // it learnt.
        let _learning = lock(&layout.learning);
        loop {
            let (plan, known) = {
                let known = lock(&layout.known);
                if let Some(p) = known.locate(pos) {
                    return Ok(Some(p));
                }
                (known.plan(chunks, LEARN_AT_ONCE), known.known())
            };
            if plan.is_empty() {
                return Ok(None);
            }
            let fetched = self.fetch_lengths(ino, chunks, &plan)?;
            let mut learnt = lock(&layout.known);
            learnt.learn(chunks, &fetched);
            if learnt.known() == known {
                // Cannot happen: the first chunk planned is the first
                // unknown one. Refuse rather than loop.
                tracing::warn!("mount: a file's layout did not grow");
                return Err(Errno::EIO);
            }
        }
    }

    /// Read the planned chunks (at once, each into the cache) and give
    /// their lengths.
    fn fetch_lengths(
        &self,
        ino: Ino,
        chunks: &[ChunkId],
        plan: &[usize],
    ) -> Result<Vec<(usize, u64)>, Errno> {
        if let [only] = plan {
            return Ok(vec![(*only, self.chunk(ino, &chunks[*only])?.len() as u64)]);
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .iter()
                .map(|&i| s.spawn(move || self.chunk(ino, &chunks[i]).map(|d| (i, d.len() as u64))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(Errno::EIO)))
                .collect()
        })
    }

    /// Up to `size` bytes of a file from `offset`.
    fn read_file(&self, ino: Ino, entry: &Entry, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let end = entry.size.min(offset.saturating_add(u64::from(size)));
        if offset >= end {
            return Ok(Vec::new());
        }
        let layout = self.layout(ino);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let Some(at) = self.locate(ino, &layout, &entry.chunks, pos)? else {
                // The chunks hold less than the recorded size (the file
                // shrank while it was backed up): what there is.
                break;
            };
            let data = self.chunk(ino, &entry.chunks[at.index])?;
            let Some(rest) = data.get(at.within..) else {
                break;
            };
            let take = rest.len().min((end - pos) as usize);
            if take == 0 {
                break;
            }
            out.extend_from_slice(&rest[..take]);
            pos += take as u64;
        }
        Ok(out)
    }
}

/// Answer a request for an extended attribute's value or the list of
/// names: its size when asked with size 0, the data when it fits.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(u32::try_from(data.len()).unwrap_or(u32::MAX));
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for ObnamFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The kernel's largest read-ahead it allows, up to 1 MiB: larger
        // reads mean fewer round trips for a sequential reader.
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.children(parent.0).and_then(|children| {
            let child = children.find(name.as_bytes()).ok_or(Errno::ENOENT)?;
            self.remember(parent.0, child)?;
            // The kernel counts the lookup only if it is answered.
            self.attr(child.ino).inspect_err(|_| {
                self.forget_lookups(&[(child.ino, 1)]);
            })
        });
        match found {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    // A batch of forgets comes here one by one (fuser's default
    // `batch_forget`; its item type is not public).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.forget_lookups(&[(ino.0, nlookup)]);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = {
            let table = self.table();
            match table.get(ino.0).map(|n| &n.kind) {
                Some(NodeKind::Latest) => self.gens.last().map(|g| g.name.as_bytes().to_vec()),
                Some(NodeKind::Entry { entry, .. }) if entry.kind == EntryKind::Symlink => {
                    Some(entry.target.clone())
                }
                _ => None,
            }
        };
        match target {
            Some(target) => reply.data(&target),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.entry(ino.0) {
            Ok(entry) if entry.kind == EntryKind::File => {
                // The content never changes: the kernel may keep what it
                // read from one open to the next.
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = self.entry(ino.0).and_then(|entry| {
            if entry.kind != EntryKind::File {
                return Err(Errno::EINVAL);
            }
            self.read_file(ino.0, &entry, offset, size)
        });
        match data {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.children(ino.0) {
            // Listings never change either.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino.0) {
            Ok(children) => children,
            Err(e) => return reply.error(e),
        };
        let parent = self.table().get(ino.0).map(|n| n.parent).unwrap_or(ROOT);
        let dots = [
            (ino.0, &b"."[..], FileType::Directory),
            (parent, &b".."[..], FileType::Directory),
        ];
        let all = dots.into_iter().chain(
            children
                .list()
                .iter()
                .map(|c| (c.ino, c.name(), attr::file_type(c.entry.kind))),
        );
        // An entry's offset is where the next listing call resumes.
        for (i, (child, name, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.table().len() as u64;
        reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = match self.entry(ino.0) {
            Ok(entry) => entry
                .xattrs
                .iter()
                .find(|(n, _)| n.as_slice() == name.as_bytes())
                .map(|(_, v)| v.clone()),
            // The directories the mount makes have no attributes.
            Err(_) if self.table().get(ino.0).is_some() => None,
            Err(e) => return reply.error(e),
        };
        match value {
            Some(value) => reply_xattr(reply, size, &value),
            None => reply.error(Errno::NO_XATTR),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut names = Vec::new();
        match self.entry(ino.0) {
            Ok(entry) => {
                for (name, _) in &entry.xattrs {
                    names.extend_from_slice(name);
                    names.push(0);
                }
            }
            Err(_) if self.table().get(ino.0).is_some() => {}
            Err(e) => return reply.error(e),
        }
        reply_xattr(reply, size, &names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_names_are_not_shown() {
        assert!(showable(b"a"));
        assert!(showable(b"\xff\xfe"));
        assert!(showable(b"new\nline"));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(!showable(bad), "{bad:?}");
        }
    }
}
