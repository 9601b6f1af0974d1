//! `obnam fsck`: check that every generation of every client can be read.
//!
//! Without options it checks structure without reading file data: the
//! repository's objects as objects (index objects that cannot be read,
//! packs the index lists that are gone), then every tree of every
//! generation (each verified against its id as it is read, so a damaged
//! tree, a folder that contains itself, or a path deeper than the format
//! allows is found), every name in them (with the check every walker
//! shares, so an entry named `/` or `` is reported, not walked), and that
//! every chunk a file refers to is in the index. With `--verify-data` it
//! also reads every chunk of every file (through the data filters) and
//! checks each file's whole-file checksum, then reads every pack whole
//! (its own list of blobs against the index, every blob against its id).
//! Each problem is reported once, on one line naming the object and the
//! client, generation and path that reach it, and the run ends non-zero.
//!
//! Checking is the slow part, so it is done once per distinct thing: a
//! folder's files once per distinct folder (folders are named by their
//! content: the same id in another generation is the same files), a file
//! of several chunks once per distinct (size, checksum, chunk list) in
//! whichever folders it is, and a chunk decoded and
//! checked against its id once: as the walk reads it (the repository
//! checks it as it reads it, so the walk does not hash it again, and
//! remembers where it read it: `Repository::remember_chunk_reads`), and
//! the check of the packs then decodes only what the walk did not read
//! (trees, blobs no file uses). The files of a generation are verified by
//! several threads at once.

#![forbid(unsafe_code)]

mod repair_records;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use plugin_api::checksum::ContentCheck;
use plugin_api::names::{check_entry_name, escape, escape_path};
use plugin_api::{
    App, ChunkId, Context, Entry, EntryKind, GenerationReader, Plugin, Repository, Result, Setting,
    TreeId,
};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Fsck;

impl Plugin for Fsck {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::boolean("verify-data")
                .subcommands(&["fsck"])
                .help("with fsck: read every chunk and check every file's checksum")
                .group("Checking"),
        );
        app.add_subcommand(
            "fsck",
            "",
            "check that every generation of every client reads back (and, with --verify-data, its data)",
            fsck,
        );
        app.add_subcommand(
            "repair-index",
            "",
            "index the packs no index object lists (an index object lost), from their own lists",
            repair_index,
        );
        app.add_subcommand(
            "repair-records",
            "",
            "write again the records whose filter header one damaged byte made unreadable, with that byte undone",
            repair_records::repair_records,
        );
        app.add_subcommand(
            "repair-packs",
            "PACK...",
            "take damaged or lost packs out of the repository, copying the blobs that check into new packs",
            repair_packs,
        );
        Ok(())
    }
}

/// `obnam repair-index`: index the packs no index object lists, from the
/// list of blobs at each pack's end (see the repository's `reindex`),
/// under the exclusive lock; with `--pretend`, only read and check them.
fn repair_index(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!(
            "repair-index takes no arguments (got '{}')",
            escape(arg.as_bytes())
        );
    }
    let pretend = ctx.boolean("pretend")?;
    let repo = ctx.repository(false)?;
    repo.lock_exclusive()?;
    let done = repo.index_unlisted_packs(pretend);
    let unlocked = repo.unlock_exclusive();
    let done = done?;
    unlocked?;
    for problem in &done.problems {
        plugin_api::tracing::error!("{problem}");
    }
    for removed in &done.damaged_removed {
        plugin_api::tracing::warn!(
            "removed the damaged index object {removed}: every pack is indexed whole without it"
        );
    }
    let packs = plugin_api::human::count(done.packs_indexed, "pack", "packs");
    let blobs = plugin_api::human::count(done.blobs_indexed, "blob", "blobs");
    let unlisted = plugin_api::human::count(done.unlisted_packs, "pack", "packs");
    let line = match (pretend, done.unlisted_packs) {
        (_, 0) if done.damaged_removed.is_empty() => {
            "no pack needs indexing: every pack is listed by an index object (or is one a \
             prune's plan is to delete)"
                .to_string()
        }
        (_, 0) => "no pack needs indexing".to_string(),
        (false, _) => format!(
            "{unlisted} no index object listed; indexed {packs} ({blobs}) from their own lists"
        ),
        (true, _) => format!(
            "{unlisted} no index object lists; {packs} ({blobs}) would be indexed from their \
             own lists (--pretend: nothing written)"
        ),
    };
    if ctx.output_format()?.is_json() {
        let json = serde_json::json!({
            "pretend": pretend,
            "unlisted_packs": done.unlisted_packs,
            "packs_indexed": done.packs_indexed,
            "blobs_indexed": done.blobs_indexed,
            "problems": done.problems,
            "damaged_removed": done.damaged_removed,
        });
        ctx.outln(&json.to_string())?;
    } else {
        ctx.outln(&line)?;
    }
    if !done.problems.is_empty() {
        ctx.set_exit_code(1)?;
    }
    Ok(())
}

/// `obnam repair-packs PACK...`: take the named packs (as `fsck` names
/// them) out of the repository, losing only their damaged blobs (see the
/// repository's `salvage`), under the exclusive lock; with `--pretend`,
/// only read and check them.
fn repair_packs(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let mut names = Vec::with_capacity(args.len());
    for arg in &args {
        match arg.to_str() {
            Some(name) => names.push(name.to_string()),
            None => plugin_api::bail!("'{}' names no pack", escape(arg.as_bytes())),
        }
    }
    if names.is_empty() {
        plugin_api::bail!(
            "repair-packs needs the packs to repair: give them as 'obnam fsck --verify-data' \
             names them (packs/XX/ID)"
        );
    }
    let pretend = ctx.boolean("pretend")?;
    let repo = ctx.repository(false)?;
    if pretend {
        // Reads only: no lock, as fsck takes none (it worked where the
        // user may only read, and beside running backups).
        let done = repo.repair_packs(&names, true)?;
        return say_repaired(ctx, &done, true);
    }
    repo.lock_exclusive()?;
    // Said before the lock is released: a release that fails must not
    // take away the report of what was dropped.
    let said = repo
        .repair_packs(&names, false)
        .and_then(|done| say_repaired(ctx, &done, false));
    let unlocked = repo.unlock_exclusive();
    said?;
    unlocked
}

/// What `repair-packs` found and did, as text or JSON.
fn say_repaired(ctx: &Context<'_>, done: &plugin_api::RepairedPacks, pretend: bool) -> Result<()> {
    if ctx.output_format()?.is_json() {
        let packs: Vec<serde_json::Value> = done
            .packs
            .iter()
            .map(|p| {
                serde_json::json!({
                    "pack": p.key,
                    "gone": p.gone,
                    "problem": (!p.problem.is_empty()).then_some(&p.problem),
                    "blobs_kept": p.kept,
                    "bytes_kept": p.kept_bytes,
                    "dropped": p.dropped,
                    "replaced": p.replaced,
                })
            })
            .collect();
        let json = serde_json::json!({
            "pretend": pretend,
            "packs": packs,
            "index_objects_replaced": done.index_objects_replaced,
        });
        return ctx.outln(&json.to_string());
    }
    let (was, were) = if pretend {
        ("would be", "would be")
    } else {
        ("was", "were")
    };
    for p in &done.packs {
        let n = p.dropped.len() as u64;
        let dropped = plugin_api::human::count(n, "blob", "blobs");
        let kept = plugin_api::human::count(p.kept, "blob", "blobs");
        let copied = format!(
            "{kept} ({}) {} copied into new packs",
            plugin_api::human::bytes(p.kept_bytes),
            if p.kept == 1 { was } else { were }
        );
        let line = if p.gone {
            format!(
                "{}: cannot be read ({}); its {dropped} {} dropped from the index",
                p.key,
                p.problem,
                if n == 1 { was } else { were }
            )
        } else if p.replaced && p.dropped.is_empty() {
            format!("{}: {}; {copied}; the pack {was} deleted", p.key, p.problem)
        } else if p.replaced {
            let problem = if p.problem.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.problem)
            };
            format!(
                "{}: {dropped} damaged, {} dropped{problem}; {copied}; the pack {was} deleted",
                p.key,
                if n == 1 { was } else { were }
            )
        } else {
            format!("{}: every blob checks ({kept}): left as it is", p.key)
        };
        ctx.outln(&line)?;
        let dropped = if pretend {
            "would be dropped"
        } else {
            "dropped"
        };
        for d in &p.dropped {
            ctx.outln(&format!("  {dropped}: {d}"))?;
        }
    }
    if done.packs.iter().any(|p| !p.dropped.is_empty()) {
        if pretend {
            ctx.outln("--pretend: nothing was written or deleted")?;
        } else {
            ctx.outln(
                "The next backup of each client stores again what it still has of the dropped \
                 data ('obnam fsck' names the files of older generations that used it: each \
                 restores again once a backup has stored the same data)",
            )?;
        }
    } else if pretend && done.packs.iter().any(|p| p.replaced) {
        ctx.outln("--pretend: nothing was written or deleted")?;
    }
    Ok(())
}

/// What one check found.
#[derive(Default)]
struct Report {
    generations: AtomicU64,
    files: AtomicU64,
    chunks_checked: AtomicU64,
    problems: AtomicU64,
    /// Files with content whose entry records no whole-file checksum
    /// (a generation a plugin wrote without one): their chunks were
    /// checked, their whole content could not be.
    without_checksum: AtomicU64,
    /// The problems reported, for `--output-format json`.
    lines: Mutex<Vec<String>>,
}

/// Files the walk of a generation finds before they are checked, at most
/// (about 500 bytes each).
const FILE_QUEUE: usize = 4096;

/// Threads that verify files at once: the chunks are read and decoded
/// (decrypted, decompressed) and hashed, which keeps every processor busy.
fn verify_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

struct Checker {
    repo: Repository,
    verify_data: bool,
    /// Folders whose files were all checked and found good, by id: a
    /// folder of the same id (in another generation) holds the same files,
    /// which are not checked again, and one with no subfolder is not even
    /// listed. One entry a folder, where one a file took 100 bytes (100 MB
    /// for a million files).
    clean_dirs: Mutex<HashMap<TreeId, CleanFolder>>,
    /// Files of more than one chunk whose content was checked (with
    /// --verify-data), by a digest of their size, checksum and chunk list:
    /// such a file in a folder that changed is not read again. A file of
    /// one chunk is: reading it costs about what remembering it saves.
    verified_files: Mutex<HashSet<u128>>,
    /// What was reported already (the damaged object's own description):
    /// a tree or chunk that many generations share is reported once.
    reported: Mutex<HashSet<String>>,
    /// Files and folders not checked because of a problem reported once.
    affected: AtomicU64,
    /// Whether the generation being checked met a problem, its own or
    /// one reported already (an object many generations share is named
    /// once, with the first path that reaches it): such generations are
    /// listed at the end, so that the user knows every generation a
    /// damaged or missing object takes data from.
    reached_problem: AtomicBool,
    /// The problems of the generation being checked, held until it is
    /// known to be still there (a forget, and a prune after it, may remove
    /// a generation, and the data only it used, while it is checked).
    /// Each with the object's description if it is one `reported` holds.
    held: Mutex<Vec<(Option<String>, String)>>,
    report: Report,
}

impl Checker {
    fn problem(&self, what: &str) {
        self.hold(None, what.to_string());
    }

    fn hold(&self, object: Option<String>, line: String) {
        self.reached_problem.store(true, Ordering::Relaxed);
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((object, line));
    }

    /// Report the problems held, unless they are of a generation removed
    /// since the check began (`removed`).
    fn report_held(&self, removed: bool) {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()));
        if removed {
            plugin_api::tracing::info!(
                "a generation was removed while it was checked: its {} are not reported",
                plugin_api::human::count(held.len() as u64, "problem", "problems")
            );
            // Objects it found damaged are reported again if another
            // generation reaches them.
            let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
            for object in held.into_iter().filter_map(|(object, _)| object) {
                reported.remove(&object);
            }
            return;
        }
        for (_, what) in held {
            self.report.problems.fetch_add(1, Ordering::Relaxed);
            plugin_api::tracing::error!("{what}");
            self.report
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(what);
        }
    }

    /// Report a problem with an object, reached at `place`, unless the
    /// same object's problem was reported already.
    fn object_problem(&self, place: &str, what: &str) {
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(what.to_string());
        if first {
            self.hold(Some(what.to_string()), format!("{place}: {what}"));
        } else {
            self.reached_problem.store(true, Ordering::Relaxed);
            self.affected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Walk a generation's folders, and have [`verify_threads`] threads
    /// check its files as the walk finds them, through a queue of at most
    /// [`FILE_QUEUE`] files: memory follows the largest folder, not the
    /// generation (gathering every file first held about 500 bytes a
    /// file: 660 MB for a million), and no thread waits for another but
    /// at the generation's end (checking in batches, the walk waiting for
    /// each, left a processor idle at each batch's tail). The files of a
    /// folder found clean before (`clean_dirs`) are not checked again.
    /// `client` is the client's name as messages show it (escaped).
    fn check_generation(&self, ctx: &Context<'_>, client: &str, reader: &GenerationReader) {
        let gen = reader.info().id;
        let (queue, jobs) = std::sync::mpsc::sync_channel::<FileJob>(FILE_QUEUE);
        let jobs = Mutex::new(jobs);
        std::thread::scope(|scope| {
            let mut started = 0;
            let mut refused = None;
            for _ in 0..verify_threads() {
                let spawned = std::thread::Builder::new().spawn_scoped(scope, || loop {
                    let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((path, entry, folder)) = job else {
                        break;
                    };
                    let good = self.check_file(client, &gen, &path, &entry);
                    self.done_with_file(&folder, good);
                });
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            // Out of memory or processes, the system may refuse threads:
            // with none, nothing would take the files the walk queues.
            if started == 0 {
                let e = refused.map(|e| e.to_string()).unwrap_or_default();
                self.problem(&format!(
                    "client {client}, generation {gen}: not checked: cannot start a thread: {e} \
                     (out of memory, or over the limit of processes?)"
                ));
                return;
            }
            self.walk_generation(ctx, client, &gen, reader, &queue);
            // The threads end once the queue is empty and closed.
            drop(queue);
        });
    }

    /// The walk of [`check_generation`](Self::check_generation): each
    /// file to check goes to `queue`.
    fn walk_generation(
        &self,
        ctx: &Context<'_>,
        client: &str,
        gen: &str,
        reader: &GenerationReader,
        queue: &std::sync::mpsc::SyncSender<FileJob>,
    ) {
        let mut queued = 0u64;
        let mut stack = vec![PathBuf::from("/")];
        while let Some(dir) = stack.pop() {
            // An error here is one list_dir meets, and reports, too.
            let id = reader.subtree_id(&dir).ok().flatten();
            let known = id.and_then(|id| {
                self.clean_dirs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&id)
                    .copied()
            });
            if let Some(CleanFolder { files, leaf: true }) = known {
                self.report.files.fetch_add(files, Ordering::Relaxed);
                continue;
            }
            let known_clean = known.is_some();
            let entries = match reader.list_dir(&dir) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    let place = format!("client {client}, generation {gen}: {}", escape_path(&dir));
                    self.object_problem(&place, &e.to_string());
                    continue;
                }
            };
            let mut seen = CleanFolder {
                files: 0,
                leaf: true,
            };
            for entry in &entries {
                match entry.kind {
                    EntryKind::Dir => seen.leaf = false,
                    EntryKind::File => seen.files += 1,
                    _ => {}
                }
            }
            // One more pending than its files, taken back when its
            // listing is done: the folder is not found clean before.
            let folder = Arc::new(Folder {
                id: id.filter(|_| !known_clean),
                seen,
                pending: AtomicU64::new(1),
                good: AtomicBool::new(true),
            });
            for entry in entries {
                // A name that is not a file name would make a path that
                // is not below `dir` (`/` joined to anything is `/`).
                if let Err(why) = check_entry_name(&entry.name) {
                    self.problem(&format!(
                        "client {client}, generation {gen}: {}: an entry named \"{}\" cannot be restored: {why}",
                        escape_path(&dir),
                        escape(&entry.name)
                    ));
                    folder.good.store(false, Ordering::Relaxed);
                    continue;
                }
                let path = dir.join(OsStr::from_bytes(&entry.name));
                match entry.kind {
                    EntryKind::Dir => stack.push(path),
                    EntryKind::File if known_clean => {
                        self.report.files.fetch_add(1, Ordering::Relaxed);
                    }
                    EntryKind::File => {
                        folder.pending.fetch_add(1, Ordering::Relaxed);
                        if let Err(std::sync::mpsc::SendError((path, entry, folder))) =
                            queue.send((path, entry, folder.clone()))
                        {
                            // No thread left to check it: check it here.
                            let good = self.check_file(client, gen, &path, &entry);
                            self.done_with_file(&folder, good);
                        }
                        queued += 1;
                        if queued.is_multiple_of(64) {
                            ctx.status(&format!(
                                "{} checked",
                                plugin_api::human::count(
                                    self.report.files.load(Ordering::Relaxed),
                                    "file",
                                    "files"
                                )
                            ));
                        }
                    }
                    _ => {}
                }
            }
            self.done_with_file(&folder, true);
        }
    }

    /// One of a folder's pending checks is done (`good` or not); the last
    /// makes a good folder known clean.
    fn done_with_file(&self, folder: &Folder, good: bool) {
        if !good {
            folder.good.store(false, Ordering::Relaxed);
        }
        if folder.pending.fetch_sub(1, Ordering::AcqRel) == 1 && folder.good.load(Ordering::Acquire)
        {
            if let Some(id) = folder.id {
                self.clean_dirs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, folder.seen);
            }
        }
    }

    /// Check one file; whether it is good.
    fn check_file(&self, client: &str, gen: &str, path: &Path, entry: &Entry) -> bool {
        self.report.files.fetch_add(1, Ordering::Relaxed);
        let place = format!("client {client}, generation {gen}: {}", escape_path(path));
        for id in &entry.chunks {
            if !self.repo.has_chunk(*id) {
                self.object_problem(
                    &place,
                    &format!("chunk {} is not in the repository", hex(id)),
                );
                return false;
            }
        }
        if !self.verify_data {
            return true;
        }
        let key = (entry.chunks.len() > 1).then(|| file_key(entry));
        if key.is_some_and(|key| {
            self.verified_files
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
        }) {
            return true;
        }
        let mut check = ContentCheck::new(&entry.checksum);
        let mut size = 0u64;
        // A run of one chunk (a sparse file's holes are one zero chunk
        // repeated) is read and checked once.
        let mut previous: Option<(ChunkId, plugin_api::types::RVec<u8>, bool)> = None;
        for id in &entry.chunks {
            if let Some((last, data, zero)) = &previous {
                if last == id {
                    size += data.len() as u64;
                    match zero {
                        true => check.update_zeros(data.len() as u64),
                        false => check.update(data),
                    }
                    continue;
                }
            }
            let data = match self.repo.get_chunk_data(*id) {
                Ok(d) => d,
                Err(e) => {
                    self.object_problem(&place, &e.to_string());
                    return false;
                }
            };
            // The repository checked the chunk against its id as it read
            // it (a mismatch is an error above), and remembers where.
            size += data.len() as u64;
            let zero = data.iter().all(|&b| b == 0);
            match zero {
                true => check.update_zeros(data.len() as u64),
                false => check.update(&data),
            }
            previous = Some((*id, data, zero));
        }
        if size != entry.size {
            self.problem(&format!(
                "{place}: its chunks hold {size} bytes, not {}",
                entry.size
            ));
            return false;
        }
        // obnam's backups record a checksum of every file; a plugin may
        // write generations without one, which a restore takes as nothing
        // to check: no damage, but said once at the end.
        if entry.checksum.is_empty() {
            self.report.without_checksum.fetch_add(1, Ordering::Relaxed);
        } else if check.finish().is_err() {
            self.problem(&format!("{place}: its content does not match its checksum"));
            return false;
        }
        if let Some(key) = key {
            self.verified_files
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key);
        }
        true
    }
}

/// The generations in `reaching`, each client's together, in the order
/// they came.
fn group_by_client(reaching: &[(String, String)]) -> Vec<(&str, Vec<&str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (client, id) in reaching {
        match groups.iter_mut().find(|(c, _)| c == client) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((client, vec![id])),
        }
    }
    groups
}

/// A file to check, with its folder.
type FileJob = (PathBuf, Entry, Arc<Folder>);

/// A folder whose files are being checked.
struct Folder {
    /// Its id, if it is to be remembered when found clean.
    id: Option<TreeId>,
    seen: CleanFolder,
    /// Its files not checked yet, and one for its listing.
    pending: AtomicU64,
    /// Whether all its entries were good so far.
    good: AtomicBool,
}

/// What a folder found good holds.
#[derive(Clone, Copy)]
struct CleanFolder {
    /// Files (regular files) in it.
    files: u64,
    /// Whether it has no subfolder.
    leaf: bool,
}

/// What makes two file entries the same content: size, checksum, chunks
/// (128 bits of their SHA-256).
fn file_key(entry: &Entry) -> u128 {
    let mut h = Sha256::new();
    h.update(entry.size.to_le_bytes());
    h.update((entry.checksum.len() as u64).to_le_bytes());
    h.update(&entry.checksum);
    for id in &entry.chunks {
        h.update(id.token.0);
        h.update(id.variant.to_le_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

fn hex(id: &ChunkId) -> String {
    id.token.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn fsck(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!("fsck takes no arguments, got '{}'", arg.to_string_lossy());
    }
    let repo = ctx.repository(false)?;
    // What the repository holds, not what this machine cached of it.
    repo.read_records_from_store();
    let verify_data = ctx.boolean("verify-data")?;
    if verify_data {
        // The check of the packs at the end decodes only what the walk
        // did not read.
        repo.remember_chunk_reads();
    }
    let checker = Checker {
        repo: repo.clone(),
        verify_data,
        clean_dirs: Mutex::new(HashMap::new()),
        verified_files: Mutex::new(HashSet::new()),
        reported: Mutex::new(HashSet::new()),
        affected: AtomicU64::new(0),
        reached_problem: AtomicBool::new(false),
        held: Mutex::new(Vec::new()),
        report: Report::default(),
    };
    // Every client's generations are listed before the index is loaded:
    // its one listing then covers them all. Listed after it, each
    // client's would need a listing of the index of its own (a
    // generation committed since must be complete in the index).
    // Only their ids are kept (the records are read again as each is
    // opened), so that what this holds is small beside the checks.
    let mut generations = Vec::new();
    for client in repo.clients()? {
        let ids: Vec<String> = repo
            .generations(&client)?
            .into_iter()
            .map(|g| g.id)
            .collect();
        generations.push((client, ids));
    }
    // First the objects as objects, without reading the packs: index
    // objects that cannot be read, packs that are gone.
    let (problems, mut packs, mut blobs) = repo.check_objects(false)?;
    for problem in &problems {
        checker.problem(problem);
    }
    checker.report_held(false);
    // What was in packs that are gone, or past the end of packs cut
    // short, counts as missing in the walk below (and no more: the walk
    // names the files that lost data; the packs are named above).
    repo.forget_lost_blobs()?;
    // The generations that met a problem: (client, id).
    let mut reaching: Vec<(String, String)> = Vec::new();
    for (client, ids) in generations {
        // The name as every message shows it: it is the repository's, and
        // may hold a newline or an escape sequence.
        let shown = escape(client.as_bytes());
        for id in ids {
            checker.report.generations.fetch_add(1, Ordering::Relaxed);
            checker.reached_problem.store(false, Ordering::Relaxed);
            match repo.open_generation(&client, &id) {
                Ok(reader) => checker.check_generation(ctx, &shown, &reader),
                Err(e) => checker.problem(&format!("client {shown}, generation {id}: {e}")),
            }
            // Only a generation with problems of its own is looked for
            // (a listing each); one that only reaches objects reported
            // already is judged with the others at the end.
            let held = !checker
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            let removed = held && !repo.generations(&client)?.iter().any(|g| g.id == id);
            checker.report_held(removed);
            if checker.reached_problem.load(Ordering::Relaxed) && !removed {
                reaching.push((client.clone(), id));
            }
        }
    }
    if verify_data {
        // Then every pack read whole: its list of blobs against the
        // index, and every blob against its id, but for the chunks the
        // walk read and checked already (each is decoded once).
        ctx.status("checking every pack");
        checker
            .report
            .chunks_checked
            .store(repo.chunks_read(), Ordering::Relaxed);
        let (more, p, b) = repo.check_objects(true)?;
        (packs, blobs) = (p, b);
        // What the first check found (damaged index objects) is reported
        // once.
        for problem in more.iter().filter(|m| !problems.contains(m)) {
            checker.problem(problem);
        }
        checker.report_held(false);
    }
    // A generation forgotten since it was checked is named no more.
    if !reaching.is_empty() {
        let mut still = HashSet::new();
        for client in reaching
            .iter()
            .map(|(c, _)| c.clone())
            .collect::<HashSet<_>>()
        {
            for g in repo.generations(&client)? {
                still.insert((client.clone(), g.id));
            }
        }
        reaching.retain(|pair| still.contains(pair));
    }
    let r = &checker.report;
    let problems = r.problems.load(Ordering::Relaxed);
    // What is "not in the repository" may be in packs no index object
    // lists (an index object lost): said, with the way to index them.
    // With --verify-data, the packs no index object lists are read too
    // (what they hold that cannot be read is no generation's, or the
    // walk would have missed it: said, not counted as a problem; `obnam
    // repair-index` would fail on them). A hint only: what keeps it from
    // looking (a damaged prune plan, reported above) does not take the
    // report's end away.
    if problems > 0 || verify_data {
        match repo.index_unlisted_packs(true) {
            Ok(unlisted) => {
                if problems > 0 && unlisted.packs_indexed > 0 {
                    plugin_api::tracing::warn!(
                        "{} no index object lists hold {} that match their ids: if an \
                         index object was lost, 'obnam repair-index' indexes them from their \
                         own lists (a run stopped between writing a pack and its index object \
                         leaves such a pack too, which a prune deletes once nothing uses it)",
                        plugin_api::human::count(unlisted.packs_indexed, "pack", "packs"),
                        plugin_api::human::count(unlisted.blobs_indexed, "blob", "blobs")
                    );
                }
                if verify_data {
                    for problem in &unlisted.problems {
                        plugin_api::tracing::warn!(
                            "{problem} (no index object lists this pack: 'obnam prune' deletes \
                             what no generation uses)"
                        );
                    }
                }
            }
            Err(e) => {
                plugin_api::tracing::warn!("packs no index object lists were not looked into: {e}")
            }
        }
    }
    if ctx.output_format()?.is_json() {
        let lines = std::mem::take(&mut *r.lines.lock().unwrap_or_else(|e| e.into_inner()));
        ctx.outln(&serde_json::to_string_pretty(&serde_json::json!({
            "generations": r.generations.load(Ordering::Relaxed),
            "files": r.files.load(Ordering::Relaxed),
            "chunks_read": r.chunks_checked.load(Ordering::Relaxed),
            "verify_data": verify_data,
            "packs_checked": packs,
            "blobs_checked": blobs,
            "affected": checker.affected.load(Ordering::Relaxed),
            "problems": lines,
            "generations_with_problems": reaching
                .iter()
                .map(|(client, id)| serde_json::json!({"client": client, "id": id}))
                .collect::<Vec<_>>(),
        }))?)?;
    } else if !ctx.boolean("quiet")? {
        let affected = checker.affected.load(Ordering::Relaxed);
        if affected > 0 {
            ctx.outln(&format!(
                "{} objects reported above",
                plugin_api::human::count(
                    affected,
                    "more file or folder reaches",
                    "more files and folders reach"
                )
            ))?;
        }
        // Every generation a problem touches, a client's on one line: an
        // object many generations share is reported once, with the first
        // path that reaches it, and forgetting only the generation named
        // there leaves the others (prune still refuses, restores of them
        // still fail).
        for (client, ids) in group_by_client(&reaching) {
            ctx.outln(&format!(
                "Problems reach {} of client {}: {}",
                plugin_api::human::count(ids.len() as u64, "generation", "generations"),
                escape(client.as_bytes()),
                ids.join(" ")
            ))?;
        }
        if verify_data {
            ctx.outln(&format!("Checked {packs} packs, {blobs} blobs in them"))?;
        }
        let count = plugin_api::human::count;
        ctx.outln(&format!(
            "Checked {}, {}, {} read; {}",
            count(
                r.generations.load(Ordering::Relaxed),
                "generation",
                "generations"
            ),
            count(r.files.load(Ordering::Relaxed), "file", "files"),
            count(r.chunks_checked.load(Ordering::Relaxed), "chunk", "chunks"),
            count(problems, "problem", "problems")
        ))?;
    }
    let without_checksum = r.without_checksum.load(Ordering::Relaxed);
    if without_checksum > 0 {
        plugin_api::tracing::warn!(
            "{} no whole-file checksum (a generation written by a plugin that records none): \
             their chunks were checked, their content as a whole could not be",
            plugin_api::human::count(without_checksum, "file records", "files record")
        );
    }
    if problems > 0 {
        plugin_api::bail!("The repository has problems");
    }
    Ok(())
}

plugin_api::export_plugin!("fsck", Fsck);
