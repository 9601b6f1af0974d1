//! The `restore` subcommand: recreate a generation, or some paths of it,
//! below a target folder.
//!
//! How a restore runs:
//!
//! 1. Everything that can be checked before writing is checked: the paths
//!    asked for exist in the generation, and the target folder is new or
//!    empty.
//! 2. A **walker** thread reads the generation's directories in order. It
//!    makes each directory (mode 0700, see [`crate::fsops`]) and hands
//!    every other entry to the **workers** in batches through a bounded
//!    queue, so memory stays bounded whatever the tree's size (see
//!    [`crate::walk`]).
//! 3. **Workers** restore entries in parallel: a regular file's chunks are
//!    read from the repository (ahead of time for large files, see
//!    [`crate::fetch`]), written with holes kept (see [`crate::sparse`])
//!    and checked against the recorded checksum as they are written; then
//!    its metadata is set (see [`crate::metadata`]).
//! 4. **Hard links**: the first object (not a folder) of a (device, inode)
//!    pair met in the walk is restored; the others are linked to it once
//!    all workers are done. That holds for FIFOs, device nodes and
//!    symlinks with several names as well as for regular files.
//! 5. **Directories** get their owner, attributes, mode and modification
//!    time last, deepest first, after everything inside them exists.
//!
//! Errors with one entry (a missing chunk, a checksum mismatch, a name
//! that is unsafe, an attribute the file system refuses) are reported with
//! the path and the restore goes on; at the end the command fails with
//! "There were errors during the restore". A regular file whose content
//! cannot be restored exactly (a chunk is missing, the checksum or the size
//! does not match) is removed rather than left behind looking restored.
//! Metadata that cannot be set (an extended attribute the target file
//! system refuses, an owner, a device node when not root) is an error too,
//! since the restore is then not exact, but the object itself is kept. Under
//! `--quiet`, which hides the per-entry errors, the final message lists the
//! first few of them.
//!
//! A store that failed after its retries is not a problem with one entry:
//! every other read would fail the same way, each after retries of its
//! own. The restore then stops (see [`Problems::stop`]): the walker walks
//! no further, the workers drain the queue without restoring, and the
//! command fails with that one error. Whether it stops early so or is
//! interrupted, no regular file is left half-written (see
//! [`crate::partial`]).
//!
//! Progress is reported by a thread of its own (see the `progress`
//! crate): the bytes written so far against the size the generation
//! records for what is restored, on a terminal or in a json-lines stream.
//!
//! Paths below the target are the generation's absolute paths: restoring
//! `/home/x` into `DIR` makes `DIR/home/x`, and the directories on the way
//! (`DIR/home`) get the metadata the generation records for them.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use plugin_api::checksum::ContentCheck;

use plugin_api::{
    Context, Entry, EntryKind, Error, GenerationInfo, GenerationReader, Repository, Result,
};
use progress::{Amount, Current, Events, OutputFormat, Reporter, Show, Snapshot};

use crate::dir_cursor::DirCursor;
use crate::fetch::{self, ReadError};
use crate::format;
use crate::fsops;
use crate::metadata::{self, Policy};
use crate::names::{self, escape};
use crate::partial;
use crate::path_args;
use crate::problems::Problems;
use crate::select;
use crate::sparse::SparseWriter;
use crate::walk::{self, DirRecord, Job, Link, Parts, Root, Walked, Walker};

/// Errors listed again in the final message when `--quiet` hid them.
const ERRORS_REPEATED: usize = 10;

/// The target as JSON gives it: absolute (a relative `--to` is taken from
/// the folder the run started in, which a program reading the report
/// later cannot know), as every other path in JSON is.
fn shown_target(to: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(to).unwrap_or_else(|_| to.to_path_buf())
}

/// The `restore` subcommand.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let Some(to) = ctx.path("to")?.filter(|p| !p.as_os_str().is_empty()) else {
        plugin_api::bail!("restore needs --to DIR: the folder to restore into");
    };
    let requested = path_args::parse("restore", &args)?;
    let repo = ctx.repository(false)?;
    let client = select::client(ctx)?;
    select::hold_for_reading(&repo, &client, "restore");
    let gen = select::generation(ctx, &repo, &client)?;
    if gen.is_checkpoint {
        // What it restores is whole file by file, but as a tree it may
        // never have existed at one moment.
        plugin_api::tracing::warn!(
            "generation {} is a checkpoint of a backup that did not finish: files that backup \
             had not reached are as the generation before it had them",
            gen.id
        );
    }
    let reader = repo.open_generation(&client, &gen.id)?;
    let roots = requested_roots(path_args::expand(&reader, requested, &gen.id)?);
    let roots = resolve_roots(&reader, roots, &gen.id)?;
    let quiet = ctx.boolean("quiet")?;

    if ctx.boolean("pretend")? {
        return pretend(ctx, &reader, &roots, &to, (&client, &gen.id));
    }

    let started = Instant::now();
    let target = prepare_target(&to)?;
    let show = Show::of(ctx)?;
    let restorer = Restorer {
        repo,
        reader: &reader,
        root: Arc::new(target),
        policy: Policy::current(),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        progress_bytes: AtomicU64::new(0),
        entries_done: AtomicU64::new(0),
        dirs_finished: AtomicU64::new(0),
        dirs_to_finish: AtomicU64::new(0),
        current: Current::default(),
        problems: Problems::new(Events::new(show)),
        leaders_ok: Mutex::new(HashSet::new()),
        partly: AtomicU64::new(0),
        metadata_problems: AtomicU64::new(0),
        client: client.clone(),
        generation: gen.id.clone(),
        generation_seen: Mutex::new(None),
    };
    let workers = workers(ctx)?;
    let reporter = Reporter::new(ctx, show, started);
    let total = totals(&gen, &roots);
    let restored = reporter.run(
        |r| restorer.report(r, total),
        || restorer.restore(&roots, workers),
    );
    if let Err(e) = restored {
        let _ = reporter.flush(restorer.problems.events());
        return Err(e);
    }

    let files = restorer.files.load(Ordering::Relaxed);
    let bytes = restorer.bytes.load(Ordering::Relaxed);
    let partly = restorer.partly.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let others = metadata::others_objects();
    if others > 0 {
        plugin_api::tracing::warn!(
            "{} restored belonged to other users in the backup: restored not as root, they \
             belong to the user who ran the restore (without set-user-ID and set-group-ID \
             bits); only a restore as root gives objects their owners",
            format::count(others, "object", "objects")
        );
    }
    let (errors, events) = restorer.problems.into_parts();
    let format = ctx.output_format()?;
    let said = (|| -> Result<()> {
        if format.is_json() {
            // One object, even with --quiet: a program asked for it.
            let mut summary = serde_json::json!({
                "generation": gen.id,
                "client": client,
                "files": files,
                "bytes": bytes,
                "seconds": secs,
                "errors": errors.len(),
                "restored_without_all_metadata": partly,
                "problems": errors,
            });
            if let Some(obj) = summary.as_object_mut() {
                // The target need not be UTF-8: given as listings give names.
                crate::listing::bytes_fields(obj, "to", shown_target(&to).as_os_str().as_bytes());
            }
            if format == OutputFormat::JsonLines {
                reporter.summary(&events, &summary)?;
            } else {
                ctx.outln(&serde_json::to_string_pretty(&summary)?)?;
            }
        } else if !quiet && errors.is_empty() {
            // Only on success, as the user guide says: after problems, the
            // error below is the outcome, and a count of files "restored"
            // beside it would read as a success.
            ctx.outln(&format!(
                "Restored {}, {} in {} ({})",
                format::count(files, "file", "files"),
                format::bytes(bytes),
                format::seconds(secs),
                format::speed(bytes, secs)
            ))?;
        }
        Ok(())
    })();
    // What is restored stays restored: a summary that cannot be written
    // (its reader gone, a full disk) says so, not 141 without a word,
    // the code of a restore stopped half-way.
    if let Err(e) = said {
        plugin_api::bail!(
            "the restore is done ({} restored), but its summary could not be written: {e}",
            format::count(files, "file", "files")
        );
    }
    if !errors.is_empty() {
        // Whether the data is there is what a user in trouble asks first:
        // objects there but without all their metadata are told apart
        // from those not restored.
        let mut message = format!(
            "There were errors during the restore: {}",
            format::count(errors.len() as u64, "problem", "problems")
        );
        if partly > 0 {
            // Counted by problem, not by object: one file may miss many
            // attributes, and the rest are told by what is left.
            let metadata = restorer.metadata_problems.load(Ordering::Relaxed);
            let others = (errors.len() as u64).saturating_sub(metadata);
            let restored = format!(
                "{} restored without all {} metadata",
                format::count(partly, "object was", "objects were"),
                if partly == 1 { "its" } else { "their" }
            );
            message.push_str(&match others {
                0 => format!(" ({restored}: every problem is of that)"),
                n => format!(
                    " ({restored}; {} of what was not restored)",
                    format::count(n, "problem is", "problems are")
                ),
            });
        }
        if quiet {
            for e in errors.iter().take(ERRORS_REPEATED) {
                message.push_str("\n  ");
                message.push_str(e);
            }
            if errors.len() > ERRORS_REPEATED {
                message.push_str(&format!(
                    "\n  ... and {} more",
                    errors.len() - ERRORS_REPEATED
                ));
            }
        }
        return Err(Error::msg(message));
    }
    Ok(())
}

/// The number of worker threads: `--restore-workers`, or four per
/// processor (from 4 to 32; at most 4 from a remote repository). Workers
/// spend much of their time waiting for
/// the repository's storage and for the file system, so more of them than
/// processors keeps the processors busy.
fn workers(ctx: &Context<'_>) -> Result<usize> {
    let n = ctx.integer("restore-workers")?;
    if n < 0 {
        // The host's range refuses it first; kept for a host that did not.
        return Err(ctx.setting_error(
            "restore-workers",
            &format!("'{n}' is out of range: give 0 (automatic) or more"),
        ));
    }
    if n > 0 {
        return Ok(n.min(256) as usize);
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let local = (cpus * 4).clamp(4, 32);
    // From a remote store, more workers than this only wait for each
    // other's downloads (and hold their memory): measured over SFTP and S3.
    let remote = ctx.path("repository")?.is_some_and(|url| {
        let url = url.as_os_str().as_bytes();
        url.starts_with(b"sftp://") || url.starts_with(b"s3://")
    });
    Ok(if remote {
        local.min(REMOTE_WORKERS)
    } else {
        local
    })
}

/// The automatic number of workers for a remote repository.
const REMOTE_WORKERS: usize = 4;

/// What the restore of `roots` of `gen` has to do, as the generation
/// records it: the whole generation's file count and data size, or the
/// totals of the folders (and the files) asked for. `None` if the
/// generation records nothing (such as one written before it kept totals).
fn totals(gen: &GenerationInfo, roots: &[Root]) -> Option<Amount> {
    let mut total = Amount::default();
    for root in roots {
        let (files, bytes) = match root.entries.last() {
            None => (gen.file_count, gen.data_size),
            Some(e) if e.kind == EntryKind::Dir => (e.subtree_files, e.subtree_bytes),
            Some(e) if e.kind == EntryKind::File => (1, e.size),
            Some(_) => (1, 0),
        };
        total.files += files;
        total.bytes += bytes;
    }
    (total != Amount::default()).then_some(total)
}

/// The paths asked for (given, or selected by patterns), as components:
/// all of `/` if none; repeated paths, and paths inside another one, are
/// dropped.
fn requested_roots(mut roots: Vec<Parts>) -> Vec<Parts> {
    if roots.is_empty() {
        roots.push(Vec::new());
    }
    path_args::outermost(roots)
}

/// Look up every requested path in the generation: each must exist, and
/// every directory on the way must be a directory.
///
/// The folders a root shares with the one before it (the roots come
/// sorted) are not looked up again, and their entries are shared: each
/// match of a pattern looked up, and kept a copy of, every folder on its
/// way.
fn resolve_roots(reader: &GenerationReader, roots: Vec<Parts>, gen: &str) -> Result<Vec<Root>> {
    let mut resolved: Vec<Root> = Vec::new();
    for parts in roots {
        let mut entries: Vec<Arc<Entry>> = Vec::with_capacity(parts.len());
        if let Some(before) = resolved.last() {
            // Folders only: a root inside another is not among them.
            let shared = before
                .parts
                .iter()
                .zip(&parts)
                .take_while(|(a, b)| a == b)
                .count()
                .min(before.parts.len().saturating_sub(1))
                .min(parts.len().saturating_sub(1));
            entries.extend(before.entries[..shared].iter().cloned());
        }
        // The path so far, built a name at a time ("/" alone is no prefix).
        let mut path = match entries.len() {
            0 => Vec::new(),
            n => names::from_parts(&parts[..n]),
        };
        for i in entries.len()..parts.len() {
            path.push(b'/');
            path.extend_from_slice(&parts[i]);
            let Some(entry) = reader.lookup(names::as_path(&path))? else {
                plugin_api::bail!(
                    "{} is not in generation {gen}",
                    escape(&names::from_parts(&parts))
                );
            };
            if i + 1 < parts.len() && entry.kind != EntryKind::Dir {
                plugin_api::bail!(
                    "{} is not in generation {gen} ({} is not a folder there)",
                    escape(&names::from_parts(&parts)),
                    escape(&path)
                );
            }
            entries.push(Arc::new(entry));
        }
        resolved.push(Root { parts, entries });
    }
    Ok(resolved)
}

/// Make sure the target folder is new or empty, make it if it is new, and
/// open it.
fn prepare_target(path: &Path) -> Result<OwnedFd> {
    let shown = names::escape_path(path);
    match fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            plugin_api::bail!("cannot restore into {shown}: it exists and is not a folder")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Ok(target) = fs::read_link(path) {
                plugin_api::bail!(
                    "cannot restore into {shown}: it is a symbolic link to {}, which does not exist",
                    names::escape_path(&target)
                );
            }
        }
        Ok(_) => {}
        Err(e) => plugin_api::bail!("cannot use {shown} as the restore target: {e}"),
    }
    let fd = if rustix::process::geteuid().is_root() {
        open_private_target(path)?
    } else {
        fs::create_dir_all(path)
            .map_err(|e| Error::msg(format!("cannot create folder {shown}: {e}")))?;
        rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::msg(format!("cannot open folder {shown}: {e}")))?
    };
    let empty = fsops::dir_is_empty(fd.as_fd())
        .map_err(|e| Error::msg(format!("cannot read folder {shown}: {e}")))?;
    if !empty {
        // Named, with the way on: a new disk's `lost+found` makes its
        // mount point "not empty", and a folder in it will do.
        let first = fs::read_dir(path)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| format!(": it holds {}", names::escape(e.file_name().as_bytes())))
            .unwrap_or_default();
        plugin_api::bail!(
            "cannot restore into {shown}: the folder is not empty{first} (restore only into an \
             empty or new folder: a new folder in it, such as {}, will do)",
            names::escape_path(&path.join("restored"))
        );
    }
    // Said once, of the folder, rather than as a failure to make the
    // first folder of the generation in it.
    rustix::fs::access(
        path,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .map_err(|e| {
        Error::msg(format!(
            "cannot restore into {shown}: {}",
            io::Error::from(e)
        ))
    })?;
    Ok(fd)
}

/// Open (making what does not exist of it) the target of a restore as
/// root, which must be a folder no other user can change, on a way no
/// other user can change.
///
/// A restore as root makes its folders 0700 and gives them their owner
/// and mode at the end, so that no one else can enter them meanwhile; but
/// whoever can write in the folder they are made in can rename one away
/// and put a folder of their own in its place, into which root then
/// restores (a root-only file read, a file planted inside a folder that
/// looks restored), and a symbolic link of theirs on the way leads the
/// restore wherever they like. So the way is resolved link by link,
/// through root's links only, and checked folder by folder
/// ([`private_paths::resolve_private`]); what does not exist is made
/// and opened relative to the folder opened before it, never by a path
/// that a link put in meanwhile could lead elsewhere; and the target must
/// be root's and writable by no one else (mode or ACL).
fn open_private_target(path: &Path) -> Result<OwnedFd> {
    use plugin_api::private_paths;
    use rustix::fs::{Mode, OFlags};
    let refused = |why: &str| refusal(path, why);
    let resolved = private_paths::resolve_private(path).map_err(|why| refused(&why))?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let shown = names::escape_path(path);
    let mut fd = rustix::fs::open(&resolved.existing, flags, Mode::empty()).map_err(|e| {
        Error::msg(format!(
            "cannot open folder {shown}: {}",
            io::Error::from(e)
        ))
    })?;
    let mut at = resolved.existing.clone();
    for name in &resolved.missing {
        at.push(name);
        // Made anew: a name that appeared since the way was resolved
        // (a link someone put there) is not taken for it.
        rustix::fs::mkdirat(&fd, name.as_os_str(), Mode::from_raw_mode(0o700)).map_err(|e| {
            Error::msg(format!(
                "cannot create folder {}: {}",
                names::escape_path(&at),
                io::Error::from(e)
            ))
        })?;
        fd = rustix::fs::openat(&fd, name.as_os_str(), flags, Mode::empty()).map_err(|e| {
            Error::msg(format!(
                "cannot open folder {}: {}",
                names::escape_path(&at),
                io::Error::from(e)
            ))
        })?;
    }
    let st = rustix::fs::fstat(&fd)?;
    if st.st_uid != 0 {
        return Err(refused(&format!(
            "it belongs to {}",
            private_paths::user_name(st.st_uid)
        )));
    }
    let meta = fs::symlink_metadata(&at)?;
    if private_paths::others_may_write(&at, &meta) {
        // With an ACL of named entries, the mode's group bits are the
        // ACL's mask: "mode 770" of a folder made 0700 read as nonsense.
        let why = if std::os::unix::fs::MetadataExt::mode(&meta) & 0o002 == 0
            && private_paths::has_acl(&at)
        {
            format!(
                "an ACL lets others write in it (its mode shows {:o}: the group's bits are the \
                 ACL's mask; see getfacl)",
                std::os::unix::fs::MetadataExt::mode(&meta) & 0o7777
            )
        } else {
            format!(
                "others may write in it ({})",
                private_paths::write_access(&meta)
            )
        };
        return Err(refused(&why));
    }
    Ok(fd)
}

/// The error of a restore as root into a target others may change.
fn refusal(path: &Path, why: &str) -> Error {
    Error::msg(format!(
        "cannot restore into {} as root: {why}, so another user could put their own folders in \
         the place of those the restore makes there and read or change what goes into them; \
         restore into a folder only root can change (then move what you need)",
        names::escape_path(path)
    ))
}

/// `--pretend`: say what would be restored, and write nothing.
fn pretend(
    ctx: &Context<'_>,
    reader: &GenerationReader,
    roots: &[Root],
    to: &Path,
    (client, gen): (&str, &str),
) -> Result<()> {
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    for root in roots {
        match root.entries.last() {
            None => stack.push(b"/".to_vec()),
            Some(e) if e.kind == EntryKind::Dir => {
                dirs += 1;
                stack.push(names::from_parts(&root.parts));
            }
            Some(e) => {
                files += 1;
                bytes += e.size;
            }
        }
    }
    while let Some(dir) = stack.pop() {
        for e in reader.list_dir(names::as_path(&dir))?.unwrap_or_default() {
            // Refused by the restore itself (and `/` would walk `dir` again).
            if names::check_name(&e.name).is_err() {
                continue;
            }
            if e.kind == EntryKind::Dir {
                dirs += 1;
                stack.push(names::join(&dir, &e.name));
            } else {
                files += 1;
                if e.kind == EntryKind::File {
                    bytes += e.size;
                }
            }
        }
    }
    let format = ctx.output_format()?;
    if format.is_json() {
        let mut summary = serde_json::Map::new();
        summary.insert("pretend".into(), serde_json::json!(true));
        summary.insert("generation".into(), serde_json::json!(gen));
        summary.insert("client".into(), serde_json::json!(client));
        crate::listing::bytes_fields(
            &mut summary,
            "to",
            std::os::unix::ffi::OsStrExt::as_bytes(shown_target(to).as_os_str()),
        );
        summary.insert("files".into(), serde_json::json!(files));
        summary.insert("folders".into(), serde_json::json!(dirs));
        summary.insert("bytes".into(), serde_json::json!(bytes));
        let summary = serde_json::Value::Object(summary);
        // A stream of one object, or one document.
        return ctx.outln(&if format == OutputFormat::JsonLines {
            serde_json::to_string(&summary)?
        } else {
            serde_json::to_string_pretty(&summary)?
        });
    }
    ctx.outln(&format!(
        "Would restore {} and {}, {} from generation {gen} into {} (nothing was written)",
        format::count(files, "file", "files"),
        format::count(dirs, "folder", "folders"),
        format::bytes(bytes),
        names::escape_path(to)
    ))
}

struct Restorer<'a> {
    repo: Repository,
    reader: &'a GenerationReader,
    root: Arc<OwnedFd>,
    policy: Policy,
    /// Objects other than directories restored.
    files: AtomicU64,
    /// Bytes of regular files restored.
    bytes: AtomicU64,
    /// Bytes written so far, for the progress.
    progress_bytes: AtomicU64,
    /// Entries other than directories dealt with (restored or not), for
    /// the progress.
    entries_done: AtomicU64,
    /// Directories whose metadata is set, of those to set, at the end.
    dirs_finished: AtomicU64,
    dirs_to_finish: AtomicU64,
    /// The file being restored, for the progress.
    current: Current,
    problems: Problems,
    /// Hard-link leaders that were restored.
    leaders_ok: Mutex<HashSet<(u64, u64, u64)>>,
    /// Objects restored, but without all their metadata (an attribute,
    /// a time or an owner that could not be set): the other problems are
    /// objects not restored at all, which the outcome tells apart.
    partly: AtomicU64,
    /// The problems of those objects (one an attribute not set, say).
    metadata_problems: AtomicU64,
    /// The client and generation restored.
    client: String,
    generation: String,
    /// When it was last seen that the generation is still there (see
    /// [`Restorer::generation_gone`]).
    generation_seen: Mutex<Option<Instant>>,
}

impl Restorer<'_> {
    /// Whether the generation restored is gone from the repository: a
    /// restore takes no lock, and a `forget` and `prune` (a nightly job)
    /// may remove it and delete its data while it runs. Every file after
    /// that failed alone, each with a "chunk is not in the repository"
    /// that read as damage; asked when a file cannot be read, at most
    /// every few seconds, so that the restore stops instead, saying why.
    fn generation_gone(&self) -> bool {
        let mut seen = self
            .generation_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(5)) {
            return false;
        }
        match self.repo.generations(&self.client) {
            Ok(gens) if gens.iter().any(|g| g.id == self.generation) => {
                *seen = Some(Instant::now());
                false
            }
            Ok(_) => true,
            // Not known: the file's own error stands.
            Err(_) => false,
        }
    }

    /// Stop the restore if its generation is gone (see
    /// [`generation_gone`](Self::generation_gone)); whether it is.
    fn stop_if_gone(&self) -> bool {
        let gone = self.generation_gone();
        if gone {
            self.problems.stop(format!(
                "generation {} of client '{}' was removed while it was being restored \
                 (forgotten, and its data deleted by a prune): what was restored before is \
                 exact; restore another generation",
                self.generation,
                names::escape(self.client.as_bytes())
            ));
        }
        gone
    }

    /// Report a problem with `path` and count it.
    fn error(&self, path: &[u8], message: impl std::fmt::Display) {
        self.problems.report(path, message);
    }

    /// Restore `roots`: walk and restore in parallel, then make hard links,
    /// then finish directories.
    fn restore(&self, roots: &[Root], workers: usize) -> Result<()> {
        let (tx, rx) = sync_channel::<Vec<Job>>(walk::QUEUE);
        let rx = Mutex::new(rx);
        let gone = || self.stop_if_gone();
        let walker = Walker::new(
            self.reader,
            Arc::clone(&self.root),
            &self.problems,
            &gone,
            tx,
        );
        let walked = std::thread::scope(|s| -> Result<Walked> {
            let walker = s.spawn(move || walker.run(roots));
            let pool: Vec<_> = (0..workers).map(|_| s.spawn(|| self.work(&rx))).collect();
            let mut panicked = false;
            for w in pool {
                panicked |= w.join().is_err();
            }
            let walked = walker.join();
            if panicked {
                plugin_api::bail!("internal error: a restore worker thread panicked");
            }
            walked.map_err(|_| Error::msg("internal error: the restore walker thread panicked"))
        })?;
        // Each worker removed the file it was writing when it stopped.
        if let Some(why) = self.problems.stopped() {
            plugin_api::bail!("{why}; the restore stopped (the files it was writing were removed)");
        }
        self.make_links(&walked.links);
        self.finish_dirs(&walked.dirs);
        Ok(())
    }

    /// Report the progress, against `total` if known.
    fn report(&self, reporter: &Reporter<'_, '_>, total: Option<Amount>) {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let snapshot = Snapshot {
            elapsed: reporter.elapsed(),
            done: Amount::new(get(&self.entries_done), get(&self.progress_bytes)),
            total,
            current: self.current.get(),
        };
        let errors = self.problems.count() as u64;
        let extra = || {
            let mut fields = serde_json::Map::new();
            fields.insert("files".into(), get(&self.files).into());
            fields.insert("bytes".into(), get(&self.bytes).into());
            fields.insert("errors".into(), errors.into());
            fields
        };
        let line = || {
            let to_finish = get(&self.dirs_to_finish);
            if to_finish > 0 {
                return format!(
                    "Restoring: setting folder metadata, {}/{to_finish}",
                    get(&self.dirs_finished)
                );
            }
            snapshot.line("Restoring: ", errors).unwrap_or_else(|| {
                let mut line = format!(
                    "Restoring: {}, {}",
                    format::count(get(&self.files), "file", "files"),
                    format::bytes(get(&self.progress_bytes))
                );
                if errors > 0 {
                    line.push_str(&format!(", {}", format::count(errors, "error", "errors")));
                }
                line
            })
        };
        reporter.status(self.problems.events(), &snapshot, extra, line);
    }

    /// A worker: restore queued entries until the queue is closed.
    fn work(&self, rx: &Mutex<Receiver<Vec<Job>>>) {
        loop {
            let batch = {
                let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                rx.recv()
            };
            let Ok(batch) = batch else {
                return;
            };
            for job in batch {
                // Stopping: the rest of the queue is drained, not
                // restored, so that the walker is never left waiting.
                if self.problems.stopped().is_some() {
                    continue;
                }
                self.current.set(&job.path);
                // A bug with one entry must not stop this worker: the walker
                // could then wait for it forever.
                let restored = plugin_api::guard::catch_panic(|| self.restore_entry(&job))
                    .unwrap_or_else(|what| {
                        let why = plugin_api::guard::panic_cause(&what);
                        self.error(&job.path, format!("{why} restoring it: {what}"));
                        false
                    });
                self.entries_done.fetch_add(1, Ordering::Relaxed);
                if restored {
                    self.files.fetch_add(1, Ordering::Relaxed);
                    if let Some(key) = job.leader {
                        self.leaders_ok
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(key);
                    }
                }
            }
        }
    }

    /// Restore one entry that is not a directory. Returns whether it now
    /// exists (perhaps with some metadata problems reported).
    fn restore_entry(&self, job: &Job) -> bool {
        let parent = job.parent.as_fd();
        let entry = &job.entry;
        let problems = match entry.kind {
            EntryKind::File => match self.restore_file(job) {
                Some(problems) => problems,
                None => return false,
            },
            EntryKind::Symlink => {
                if let Err(e) = fsops::make_symlink(parent, job.name(), &entry.target) {
                    self.error(&job.path, format!("cannot make symlink: {e}"));
                    return false;
                }
                metadata::apply_symlink(parent, job.name(), entry, &self.policy)
            }
            EntryKind::CharDevice | EntryKind::BlockDevice if !self.policy.is_root => {
                self.error(
                    &job.path,
                    "device node not restored: only root can make device nodes",
                );
                return false;
            }
            kind if metadata::is_node(kind) => {
                if let Err(e) = fsops::make_node(parent, job.name(), kind, entry.rdev) {
                    self.error(&job.path, format!("cannot make {}: {e}", kind_name(kind)));
                    return false;
                }
                metadata::apply_node(parent, job.name(), entry, &self.policy)
            }
            _ => {
                self.error(&job.path, "internal error: unexpected kind of entry");
                return false;
            }
        };
        if !problems.is_empty() {
            self.partly.fetch_add(1, Ordering::Relaxed);
            self.metadata_problems
                .fetch_add(problems.len() as u64, Ordering::Relaxed);
        }
        for p in problems {
            self.error(&job.path, p);
        }
        true
    }

    /// Restore a regular file: content, checked, then metadata. Returns the
    /// metadata problems, or `None` (with the error reported and the file
    /// removed) if the content could not be restored exactly.
    ///
    /// The file is registered as being written (see [`crate::partial`])
    /// until its metadata is set, so that a restore ending early in any way
    /// leaves it removed rather than half-written.
    fn restore_file(&self, job: &Job) -> Option<Vec<String>> {
        let (file, partial) = match partial::create(&job.parent, job.name()) {
            Ok(created) => created,
            Err(e) => {
                self.error(&job.path, format!("cannot create file: {e}"));
                return None;
            }
        };
        match self.write_content(&file, &job.entry) {
            Ok(()) => {}
            Err(ReadError::Store(why)) => {
                drop(file);
                if let Err(e) = partial.remove() {
                    self.error(
                        &job.path,
                        format!("the unfinished file could not be removed: {e}"),
                    );
                }
                self.problems.stop(why);
                return None;
            }
            Err(ReadError::File(why)) => {
                drop(file);
                let removed = match partial.remove() {
                    Ok(()) => "the file was removed".to_string(),
                    Err(e) => format!("the damaged file could not be removed: {e}"),
                };
                if self.stop_if_gone() {
                    return None;
                }
                self.error(&job.path, format!("not restored: {why}; {removed}"));
                return None;
            }
        }
        self.bytes.fetch_add(job.entry.size, Ordering::Relaxed);
        let problems = metadata::apply_fd(file.as_fd(), &job.entry, &self.policy);
        partial.keep();
        Some(problems)
    }

    /// Write a file's chunks, keeping holes, and check size and checksum.
    fn write_content(&self, file: &fs::File, entry: &Entry) -> std::result::Result<(), ReadError> {
        let mut writer = SparseWriter::new(file);
        let mut check = ContentCheck::new(&entry.checksum);
        fetch::for_each_chunk(&self.repo, &entry.chunks, |chunk| {
            if chunk.zero {
                check.update_zeros(chunk.data.len() as u64);
                writer.skip_zeros(chunk.data.len() as u64);
            } else {
                check.update(&chunk.data);
                writer
                    .write(&chunk.data)
                    .map_err(|e| format!("cannot write: {e}"))?;
            }
            self.progress_bytes
                .fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
            Ok(())
        })?;
        if writer.len() != entry.size {
            return Err(ReadError::File(format!(
                "its chunks hold {} bytes, but the file had {}",
                writer.len(),
                entry.size
            )));
        }
        writer
            .finish()
            .map_err(|e| format!("cannot set the file's length: {e}"))?;
        check.finish().map_err(|e| ReadError::File(e.to_string()))
    }

    /// Make the hard links noted by the walker.
    fn make_links(&self, links: &[Link]) {
        let ok = self
            .leaders_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut folders = FolderCache::default();
        for link in links {
            // Done, as the generation's totals count it: a name, and the
            // file's size again.
            self.entries_done.fetch_add(1, Ordering::Relaxed);
            self.progress_bytes.fetch_add(link.size, Ordering::Relaxed);
            let path = names::from_parts(&link.parts);
            let leader = names::from_parts(&link.leader);
            if !ok.contains(&link.key) {
                self.error(
                    &path,
                    format!(
                        "not restored: it is a hard link of {}, which could not be restored",
                        escape(&leader)
                    ),
                );
                continue;
            }
            if let Err(e) = self.link(link, &mut folders) {
                self.error(
                    &path,
                    format!("cannot make hard link to {}: {e}", escape(&leader)),
                );
                continue;
            }
            self.files.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn link(&self, link: &Link, folders: &mut FolderCache) -> io::Result<()> {
        let (Some((old_name, old_dir)), Some((new_name, new_dir))) =
            (link.leader.split_last(), link.parts.split_last())
        else {
            return Err(io::Error::other("empty path"));
        };
        let old = folders.open(self.root.as_fd(), old_dir)?;
        let new = folders.open(self.root.as_fd(), new_dir)?;
        fsops::hard_link(old.as_fd(), old_name, new.as_fd(), new_name)
    }

    /// Give every directory made its metadata, deepest first: each was made
    /// after its parent, so the reverse order finishes children first, and
    /// nothing is created in a directory after its mode and time are set.
    fn finish_dirs(&self, dirs: &[DirRecord]) {
        let mut cursor = DirCursor::new(self.root.as_fd(), dirs);
        self.dirs_to_finish
            .store(dirs.len() as u64, Ordering::Relaxed);
        for (done, (index, dir)) in dirs.iter().enumerate().rev().enumerate() {
            self.dirs_finished.store(done as u64, Ordering::Relaxed);
            // The path is built only for a message: building it for every
            // folder would cost the square of a deep tree's depth.
            let path = || names::from_parts(&walk::dir_parts(dirs, index));
            match cursor.open(index) {
                Ok(fd) => {
                    let problems = metadata::apply_fd(fd, &dir.entry, &self.policy);
                    if !problems.is_empty() {
                        self.partly.fetch_add(1, Ordering::Relaxed);
                        self.metadata_problems
                            .fetch_add(problems.len() as u64, Ordering::Relaxed);
                    }
                    for p in problems {
                        self.error(&path(), p);
                    }
                }
                Err(e) => self.error(&path(), format!("cannot open restored folder: {e}")),
            }
        }
    }
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "folder",
        EntryKind::Symlink => "symlink",
        EntryKind::Fifo => "FIFO",
        EntryKind::Socket => "socket",
        EntryKind::CharDevice => "character device",
        EntryKind::BlockDevice => "block device",
    }
}

/// The folders the hard links were last made in, open: each link opened
/// both its folders name by name from the target (two times the depth in
/// `openat` calls a link: 5,000 names of one file 1,500 folders deep took
/// 36 s), where the names of one file are most often in one or two
/// folders. A few are kept, the oldest going first.
#[derive(Default)]
struct FolderCache {
    open: std::collections::VecDeque<(Vec<Vec<u8>>, std::rc::Rc<OwnedFd>)>,
}

impl FolderCache {
    /// How many folders are kept open.
    const KEEP: usize = 8;

    /// The folder at `parts` below `root`, opened if it is not open.
    fn open(
        &mut self,
        root: std::os::fd::BorrowedFd<'_>,
        parts: &[Vec<u8>],
    ) -> io::Result<std::rc::Rc<OwnedFd>> {
        if let Some((_, fd)) = self.open.iter().find(|(p, _)| p.as_slice() == parts) {
            return Ok(fd.clone());
        }
        let fd = std::rc::Rc::new(fsops::open_dir_path(root, parts)?);
        if self.open.len() == Self::KEEP {
            self.open.pop_front();
        }
        self.open.push_back((parts.to_vec(), fd.clone()));
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str) -> Parts {
        names::parse_absolute(std::ffi::OsStr::new(path)).unwrap()
    }

    #[test]
    fn nested_roots_are_dropped() {
        let roots = path_args::outermost(vec![
            parts("/home/x/y"),
            parts("/home/x"),
            parts("/home/xy"),
            parts("/home/x"),
            parts("/etc"),
        ]);
        assert_eq!(
            roots,
            vec![parts("/etc"), parts("/home/x"), parts("/home/xy")]
        );
        assert_eq!(
            path_args::outermost(vec![parts("/a"), parts("/")]),
            vec![parts("/")]
        );
    }

    #[test]
    fn no_paths_means_everything() {
        assert_eq!(requested_roots(Vec::new()), vec![Vec::<Vec<u8>>::new()]);
        assert!(path_args::parse("restore", &[OsString::from("relative")]).is_err());
    }

    #[test]
    fn target_must_be_empty_or_new() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("a/b");
        assert!(prepare_target(&new).is_ok());
        assert!(prepare_target(&new).is_ok(), "empty is fine");
        std::fs::write(new.join("f"), b"x").unwrap();
        let err = prepare_target(&new).unwrap_err();
        assert!(err.message().contains("not empty"), "{err}");
        let err = prepare_target(&new.join("f")).unwrap_err();
        assert!(err.message().contains("not a folder"), "{err}");
    }
}
