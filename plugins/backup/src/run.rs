//! One backup run: the walk, the workers that read changed files, the
//! order in which directories are finished, checkpoints, dropping roots no
//! longer backed up, the commit, and the `backup-finished` hook.
//!
//! The walk runs on the calling thread, depth first, children in name
//! order. Unchanged files and everything that is not a regular file are
//! recorded at once; changed files go to a pool of workers through a
//! bounded queue (which bounds memory), in batches ([`Batch`]). A
//! directory is finished (its entries not seen in this run dropped, its
//! tree written) once the walk has left it and its files are all done;
//! directories are finished in the order the walk leaves them, so children
//! always come before parents.
//!
//! Nothing polls. Each directory holds a [`Ticket`]: a count of what still
//! has to report before it is complete (its files out with the workers,
//! and the walk itself until it leaves the directory). Whoever brings the
//! count to zero completes the directory; a worker that does so (or that
//! fails, which stops the run) wakes the walker through the completions
//! channel, on which the walker waits when it has nothing else to do.
//!
//! Progress is reported by a thread of its own (see the `progress`
//! crate), from the counters in [`Stats`]; while someone sees it (a
//! terminal, or a json-lines stream), the [`Scan`] counts on another
//! thread what there is to back up, for a percentage and the time left.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use plugin_api::names::escape_path;
use plugin_api::payloads::{
    FileStat, SplitRequest, StoreChunkRequest, BACKUP_CHUNK_BOUNDARIES, BACKUP_FINISHED,
    BACKUP_STARTING, BACKUP_STORE_CHUNK,
};
use plugin_api::{Context, Entry, EntryKind, GenerationBuilder, GenerationReader, Hook, Result};
use progress::{Events, OutputFormat, Reporter, Show};

use crate::content::{io_reason, ContentError, ContentWriter, Walked};
use crate::links::{Found, ReadLinks};
use crate::metadata::{self, Names};
use crate::scan::Scan;
use crate::settings::BackupSettings;
use crate::stats::{add, Stats};
use crate::walk::{self, Excluder};

/// The `backup` subcommand, on a thread with a stack for the deepest
/// tree (see [`WALK_STACK`]).
pub fn backup(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    on_deep_stack(|| backup_here(ctx, args))
}

fn backup_here(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let settings = BackupSettings::read(ctx, &args)?;
    if settings.roots.is_empty() {
        plugin_api::bail!("No backup roots specified");
    }
    for root in &settings.roots {
        match walk::lstat(root) {
            Ok(_) => {}
            // Obnam's wording, for a root that is not there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => plugin_api::bail!(
                "Backup root does not exist or is not a directory: {}",
                escape_path(root)
            ),
            // Anything else (no permission to look, a folder on the way
            // that is a file) is said as it is.
            Err(e) => plugin_api::bail!("backup root {}: {e}", escape_path(root)),
        }
    }
    // Each root as every path in JSON (`roots_bytes` too if one is not
    // UTF-8).
    let mut roots_json = serde_json::Map::new();
    let roots: Vec<&[u8]> = settings
        .roots
        .iter()
        .map(|r| r.as_os_str().as_bytes())
        .collect();
    progress::bytes_list_fields(&mut roots_json, "roots", &roots);
    let mut starting = serde_json::Value::Object(roots_json.clone());
    starting["client"] = settings.client.clone().into();
    starting["pretend"] = settings.pretend.into();
    ctx.call_json(BACKUP_STARTING, &mut starting)?;
    // Opened before the progress line starts: opening may ask for a
    // passphrase on the terminal, and the progress line would be drawn
    // over the question. (The host keeps the repository it opened, so the
    // run below gets the same one.) With --pretend there may be none yet:
    // then everything would be new; any other failure to open it (a
    // wrong passphrase, a server that does not answer) fails as the real
    // run would, not as a backup of everything.
    let opened = if settings.pretend {
        ctx.repository_if_any()?
    } else {
        Some(ctx.repository(true)?)
    };
    let show = Show::of(ctx)?;
    let stats = Stats::new(Events::new(show));
    let reporter = Reporter::new(ctx, show, stats.started);
    // Totals are counted only for someone to see them.
    let scan = (show != Show::Nothing).then(|| Arc::new(Scan::default()));
    // The scan keeps to the roots' file systems as the walk does.
    let one_file_system = ctx.boolean("one-file-system").unwrap_or(false);
    if let Some(scan) = &scan {
        let (scan, roots) = (scan.clone(), settings.roots.clone());
        // Not waited for: a folder the walk leaves out (an excluded
        // mount of a server that does not answer) can hold the scan in
        // a `stat` for minutes or for ever, and the backup, done, waited
        // for it. Told to stop, it ends at its next step; the plugin's
        // code stays loaded (libraries are never unloaded). Without the
        // thread there are no totals, and no more harm.
        let _ = std::thread::Builder::new()
            .name("backup-scan".into())
            .spawn(move || scan.run(&roots, one_file_system));
    }
    let result = {
        let scan = scan.as_deref();
        // The scan stops when the backup does, however it ends.
        let _stop = StopScan(scan);
        let progress = Progress {
            reporter: &reporter,
            scan,
        };
        reporter.run(
            |r| {
                let snapshot = stats.snapshot(scan);
                r.status(
                    &stats.events,
                    &snapshot,
                    || stats.status_json(scan),
                    || stats.progress(&snapshot, scan),
                )
            },
            || {
                if settings.pretend {
                    pretend(ctx, opened.as_ref(), &settings, &stats, progress).map(|()| None)
                } else {
                    real(ctx, &settings, &stats, progress).map(Some)
                }
            },
        )
    };
    let generation = match result {
        Ok(generation) => generation,
        Err(e) => {
            // The errors met so far are part of the stream; the error that
            // stopped the run is on standard error.
            let _ = reporter.flush(&stats.events);
            return Err(e);
        }
    };
    let mut finished = stats.to_json();
    for (key, value) in roots_json {
        finished[key.as_str()] = value;
    }
    finished["generation"] = generation
        .clone()
        .map(serde_json::Value::from)
        .unwrap_or_default();
    finished["client"] = settings.client.clone().into();
    finished["pretend"] = settings.pretend.into();
    let said = (|| -> Result<()> {
        match settings.output {
            // What the backup-finished hook gets, as one object: a program
            // that asked for JSON gets it even with --quiet.
            OutputFormat::Json => ctx.outln(&serde_json::to_string_pretty(&finished)?)?,
            OutputFormat::JsonLines => reporter.summary(&stats.events, &finished)?,
            OutputFormat::Text if !settings.quiet => {
                ctx.outln(&stats.summary(settings.pretend))?;
                if let Some(id) = &generation {
                    ctx.outln(&format!("Generation {id}"))?;
                }
            }
            OutputFormat::Text => {}
        }
        Ok(())
    })();
    // The generation is committed: a summary that cannot be written (a
    // full disk, a reader gone) does not undo it, and the hooks hear of
    // it all the same. The run fails, but says what it did: it exited 1,
    // or 141 without a word, as if nothing had been committed.
    if let (Err(e), Some(id)) = (&said, &generation) {
        ctx.call_json(BACKUP_FINISHED, &mut finished)?;
        plugin_api::bail!(
            "the backup was committed as generation {id}, but its summary could not be \
             written: {e}"
        );
    }
    said?;
    ctx.call_json(BACKUP_FINISHED, &mut finished)?;
    if stats.had_errors() {
        plugin_api::bail!("There were errors during the backup");
    }
    Ok(())
}

/// How a run reports its progress: the reporter (whose stream may fail),
/// and the scan, if one runs, which the walk tells what it leaves out.
#[derive(Clone, Copy)]
struct Progress<'a, 'c> {
    reporter: &'a Reporter<'a, 'c>,
    scan: Option<&'a Scan>,
}

/// Stops the scan when dropped.
struct StopScan<'a>(Option<&'a Scan>);

impl Drop for StopScan<'_> {
    fn drop(&mut self) {
        if let Some(scan) = self.0 {
            scan.stop();
        }
    }
}

/// `--pretend`: walk and report, reading the repository only.
fn pretend<'c>(
    ctx: &Context<'c>,
    repo: Option<&plugin_api::Repository>,
    settings: &BackupSettings,
    stats: &Stats,
    progress: Progress<'_, 'c>,
) -> Result<()> {
    let previous = match repo {
        Some(repo) => match repo.generations(&settings.client)?.last() {
            Some(gen) => Some(repo.open_generation(&settings.client, &gen.id)?),
            None => None,
        },
        // No repository yet: everything would be new.
        None => None,
    };
    let mut walker = Walker::new(
        ctx,
        settings,
        stats,
        progress,
        Sink::Pretend(previous.as_ref()),
    )?;
    walker.roots(&settings.roots, || false)?;
    walker.drain()
}

/// The stack of the thread that backs up: the walk, and the writing of
/// the new generation's folders at its commit, recurse once per folder
/// level, and a tree may be as deep as the longest path the system takes
/// (2,048 levels of one-letter names in 4,096 bytes). The main thread's
/// 8 MiB overflowed at 1,500 levels in a debug build (a release build's
/// frames are smaller). Only what is used is ever committed.
const WALK_STACK: usize = 256 << 20;

/// Run `walk` on a thread with a stack of [`WALK_STACK`], or on this one
/// if no such thread can be had (an address-space limit, say).
fn on_deep_stack<T: Send>(walk: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let walk = std::sync::Mutex::new(Some(walk));
    let take = || {
        walk.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(|f| f())
    };
    let ran = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("obnam-walk".to_string())
            .stack_size(WALK_STACK)
            .spawn_scoped(scope, take);
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        }
    });
    match ran {
        Some(result) => result,
        // Not run there: run here.
        None => take().unwrap_or_else(|| Err(plugin_api::Error::msg("the walk did not run"))),
    }
}

/// A real backup: returns the new generation's id.
fn real<'c>(
    ctx: &Context<'c>,
    settings: &BackupSettings,
    stats: &Stats,
    progress: Progress<'_, 'c>,
) -> Result<String> {
    let repo = ctx.repository(true)?;
    // The client's record is made under its lock: a `remove-client` that
    // held the lock while this run waited would otherwise remove a record
    // made before, and this run commit a generation of a client that no
    // longer is (left out of `clients`, `fsck`, `stats`).
    repo.lock_client(&settings.client)?;
    repo.add_client(&settings.client)?;
    // A pack lost or cut short since the last run (a disk error, a
    // careless `rm`, an interrupted copy) must not poison this one: its
    // chunks count as absent, so that unchanged files that used them are
    // read again and the new generation restores.
    let (lost_packs, lost_blobs) = repo.forget_missing_packs()?;
    if lost_packs > 0 {
        let count = plugin_api::human::count;
        plugin_api::tracing::warn!(
            "{} that the repository's index lists {} missing or cut short; nothing is built \
             on the {} they held: files that used them are read and stored again ('obnam \
             fsck' names the packs and what older generations lost; 'obnam repair-packs' with \
             those names takes them out of the index: run it before the backup next time, \
             and the older generations heal too)",
            count(lost_packs, "pack", "packs"),
            if lost_packs == 1 { "is" } else { "are" },
            count(lost_blobs, "chunk or tree", "chunks and trees"),
        );
    }
    let builder = repo.begin_generation(&settings.client, true)?;
    let split_hook = ctx.hook::<SplitRequest>(BACKUP_CHUNK_BOUNDARIES)?;
    let store_hook = ctx.hook::<StoreChunkRequest>(BACKUP_STORE_CHUNK)?;
    let shared = Shared {
        repo: repo.clone(),
        healed: AtomicU64::new(0),
        builder: &builder,
        stats,
        abort: AtomicBool::new(false),
        fatal: Mutex::new(None),
        checkpoint_every: settings.checkpoint,
        stored: AtomicU64::new(0),
        next_checkpoint: AtomicU64::new(settings.checkpoint),
        checkpointing: Mutex::new(()),
        names: Names::default(),
        panic_matching: &settings.panic_matching,
        ignore_ctime: settings.change_rule.ignore_ctime,
        links: ReadLinks::default(),
    };
    walk_with_workers(ctx, settings, &shared, progress, split_hook, store_hook)?;
    if let Some(e) = shared
        .fatal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(e);
    }
    drop_old_roots(&builder, Path::new("/"), &settings.roots)?;
    // What failed now and was kept as the previous generation had it was
    // not checked: the next run judges it as this one would have (a file
    // changed unseen just after the run that read it looked unchanged
    // for good, judged against this run's later start).
    if stats.kept.load(Ordering::Relaxed) > 0 {
        builder.carried_unread();
    }
    let gen = builder.commit(false)?;
    report_left_out(&builder, stats)?;
    let healed = shared.healed.load(Ordering::Relaxed);
    if healed > 0 {
        let files = if healed == 1 {
            "1 unchanged file was".to_string()
        } else {
            format!("{healed} unchanged files were")
        };
        plugin_api::tracing::warn!(
            "{files} read again because chunks they used were missing from the \
             repository (lost, or in packs a prune running beside this backup is deleting); \
             they are stored again"
        );
    }
    // The generation is committed: what follows only tidies, and a signal
    // or a store that fails now must not make a committed backup look
    // failed (it exited 143, "interrupted", with no generation named).
    if !settings.leave_checkpoints && !stats.had_errors() {
        if let Err(e) = builder.remove_checkpoints() {
            plugin_api::tracing::warn!(
                "generation {} is committed, but this run's checkpoints could not be removed \
                 ({e}): they stay, marked as checkpoints, until 'obnam forget' removes them",
                gen.id
            );
        }
    }
    if let Err(e) = repo.unlock_client(&settings.client) {
        plugin_api::tracing::warn!(
            "generation {} is committed, but the client's lock could not be released ({e}): \
             the next run passes it over once it is stale ('obnam force-lock' removes it)",
            gen.id
        );
    }
    Ok(gen.id)
}

/// The walk on this thread, changed files read by `settings.threads`
/// workers; returns when all are done.
fn walk_with_workers<'c>(
    ctx: &Context<'c>,
    settings: &BackupSettings,
    shared: &Shared<'_>,
    progress: Progress<'_, 'c>,
    split_hook: Hook<SplitRequest>,
    store_hook: Hook<StoreChunkRequest>,
) -> Result<()> {
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Vec<Job>>(settings.threads * 4);
    // Unbounded, but a message is sent only when a directory completes or
    // the run stops, and the walker takes them as it goes.
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<()>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..settings.threads {
            let rx = jobs_rx.clone();
            let done = done_tx.clone();
            let repo = shared.repo.clone();
            scope.spawn(move || {
                let mut writer = ContentWriter::new(ctx, repo, split_hook, store_hook);
                for batch in rx {
                    for job in batch {
                        shared.back_up_file(&mut writer, job, &done);
                    }
                }
            });
        }
        drop(jobs_rx);
        // Only the workers hold senders: if they are all gone, a wait for
        // completions ends instead of hanging.
        drop(done_tx);
        let result = (|| {
            let mut walker = Walker::new(
                ctx,
                settings,
                shared.stats,
                progress,
                Sink::Build {
                    shared,
                    jobs: jobs_tx.clone(),
                    batch: Batch::default(),
                    done: done_rx,
                },
            )?;
            walker.roots(&settings.roots, || shared.abort.load(Ordering::Relaxed))?;
            walker.drain()
        })();
        if result.is_err() {
            // Workers drop what is queued and commit no more checkpoints.
            shared.abort.store(true, Ordering::Relaxed);
        }
        drop(jobs_tx);
        result
    })
}

/// Remove from the new generation everything at the top that is neither a
/// root nor a parent of one: roots dropped since the last backup.
fn drop_old_roots(builder: &GenerationBuilder, dir: &Path, roots: &[PathBuf]) -> Result<()> {
    if roots.iter().any(|r| r == dir) {
        return Ok(());
    }
    for entry in builder.list(dir)?.unwrap_or_default() {
        let path = dir.join(std::ffi::OsStr::from_bytes(&entry.name));
        if roots.contains(&path) {
            continue;
        }
        if entry.kind == EntryKind::Dir && roots.iter().any(|r| r.starts_with(&path)) {
            drop_old_roots(builder, &path, roots)?;
        } else {
            builder.remove(&path)?;
        }
    }
    Ok(())
}

/// Changed files for the workers, gathered by the walk and sent together:
/// a message per small file (a wake-up of a worker, often a context switch
/// each way) cost more than reading the file. A batch goes when it holds
/// [`BATCH_FILES`] files or [`BATCH_BYTES`] bytes (so a large file goes
/// at once), and when the walk leaves a folder or waits for the workers.
#[derive(Default)]
struct Batch {
    jobs: Vec<Job>,
    bytes: u64,
}

/// The most files in a [`Batch`].
const BATCH_FILES: usize = 32;

/// The most bytes (by the sizes the walk saw) in a [`Batch`].
const BATCH_BYTES: u64 = 1 << 20;

impl Batch {
    /// Add a job; returns whether the batch should go now.
    fn add(&mut self, job: Job) -> bool {
        self.bytes += job.entry.size;
        self.jobs.push(job);
        self.jobs.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES
    }

    /// Send the jobs gathered, if any. If no worker takes them any more
    /// (they all stopped), their folders' tickets are released: nothing
    /// else will.
    fn send(&mut self, jobs: &Sender<Vec<Job>>) {
        if self.jobs.is_empty() {
            return;
        }
        self.bytes = 0;
        if let Err(unsent) = jobs.send(std::mem::take(&mut self.jobs)) {
            for job in unsent.0 {
                // The walk still holds the ticket: this is not the last.
                job.ticket.release();
            }
        }
    }
}

/// A changed file for a worker.
struct Job {
    path: PathBuf,
    entry: Entry,
    previous: Option<Entry>,
    ticket: Arc<Ticket>,
}

/// What a directory waits for before it can be finished: its files out
/// with the workers, plus one for the walk until it leaves the directory.
struct Ticket {
    pending: AtomicUsize,
}

impl Ticket {
    /// A ticket held by the walk, which is in the directory.
    fn new() -> Arc<Self> {
        Arc::new(Ticket {
            pending: AtomicUsize::new(1),
        })
    }

    /// One more file of the directory goes to a worker.
    fn hold(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// A file is done, or the walk left the directory: returns whether
    /// that was the last thing the directory waited for.
    fn release(&self) -> bool {
        self.pending.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Whether the directory waits for nothing more.
    fn complete(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// What the walker and the workers share during a real backup.
struct Shared<'a> {
    repo: plugin_api::Repository,
    /// Unchanged files read again because chunks they used are gone.
    healed: AtomicU64,
    builder: &'a GenerationBuilder,
    stats: &'a Stats,
    abort: AtomicBool,
    fatal: Mutex<Option<plugin_api::Error>>,
    checkpoint_every: u64,
    /// Bytes of new chunks stored so far in this run.
    stored: AtomicU64,
    /// The value of `stored` at which the next checkpoint is due.
    next_checkpoint: AtomicU64,
    checkpointing: Mutex<()>,
    names: Names,
    /// `--testing-panic-matching`.
    panic_matching: &'a [regex::Regex],
    /// `--ignore-ctime`: a change time that moved while a file was read
    /// is no change then.
    ignore_ctime: bool,
    /// Hard-linked files read so far, for their other names.
    links: ReadLinks,
}

impl Shared<'_> {
    fn fail(&self, e: plugin_api::Error) {
        self.abort.store(true, Ordering::Relaxed);
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        fatal.get_or_insert(e);
    }

    /// Back up a file for a worker; tell the walker (through `done`) if
    /// that completed its directory or stopped the run.
    fn back_up_file(&self, writer: &mut ContentWriter<'_, '_>, job: Job, done: &Sender<()>) {
        let mut wake = false;
        // Bytes read so far, for the progress.
        let read = AtomicU64::new(0);
        if !self.abort.load(Ordering::Relaxed) {
            self.stats.current.set(job.path.as_os_str().as_bytes());
            // A panic here is a bug; caught, it stops the run with an
            // error, where uncaught it would end this worker and leave
            // the walk waiting for ever for the files it held. The writer
            // may be left half-way, but it is not used again: the run is
            // aborted, and later jobs are only counted off.
            let stored = plugin_api::guard::catch_panic(|| self.store_file(writer, &job, &read))
                .unwrap_or_else(|what| {
                    Err(plugin_api::Error::msg(format!(
                        "{} backing up {}: {what}",
                        plugin_api::guard::panic_cause(&what),
                        escape_path(&job.path)
                    )))
                });
            if let Err(e) = stored {
                self.fail(e);
                wake = true;
            }
        }
        // What the chunks did not count of the size the walk saw (all of
        // it, for a file that failed or was never read).
        self.stats
            .done(job.entry.size.saturating_sub(read.load(Ordering::Relaxed)));
        if job.ticket.release() {
            wake = true;
        }
        if wake {
            // The walker may have stopped waiting for good: nothing to tell.
            let _ = done.send(());
        }
    }

    fn store_file(
        &self,
        writer: &mut ContentWriter<'_, '_>,
        job: &Job,
        read: &AtomicU64,
    ) -> Result<()> {
        let walked = Walked {
            size: job.entry.size,
            mtime: (job.entry.mtime, job.entry.mtime_ns),
            ctime: (!self.ignore_ctime).then_some((job.entry.ctime, job.entry.ctime_ns)),
            dev: job.entry.dev,
            ino: job.entry.ino,
        };
        if self
            .panic_matching
            .iter()
            .any(|re| re.is_match(&job.path.to_string_lossy()))
        {
            panic!("simulated bug (--testing-panic-matching)");
        }
        // Another name of a file this run read already (or is reading),
        // seen the same. A claim to read it is held until the read is
        // remembered, or failed.
        let _claim = match job.entry.nlink > 1 {
            true => match self.links.reuse_or_claim(&walked) {
                Found::Read(shared) => {
                    let mut entry = job.entry.clone();
                    entry.size = shared.bytes_read;
                    entry.chunks = shared.chunks;
                    entry.checksum = shared.checksum;
                    return self.builder.put(&job.path, &entry);
                }
                Found::Claimed(claim) => Some(claim),
                Found::Unclaimed => None,
            },
            false => None,
        };
        let size = job.entry.size;
        let after_chunk = |len: u64, added: u64| {
            // Progress counts up to the size the walk saw, as the scan did.
            let before = read.fetch_add(len, Ordering::Relaxed);
            add(&self.stats.bytes_done, len.min(size.saturating_sub(before)));
            self.stored.fetch_add(added, Ordering::Relaxed);
            self.maybe_checkpoint()
        };
        match writer.store_file(&job.path, &walked, &after_chunk) {
            Ok(stored) => {
                self.links.remember(&walked, job.entry.nlink, &stored);
                add(&self.stats.files_read, 1);
                add(&self.stats.bytes_read, stored.bytes_read);
                add(&self.stats.bytes_new, stored.bytes_new);
                add(&self.stats.bytes_in_holes, stored.bytes_in_holes);
                let mut entry = job.entry.clone();
                // What was read, which a file in /proc, say, does not
                // claim: a restore gives back the content as read.
                entry.size = stored.bytes_read;
                entry.chunks = stored.chunks;
                entry.checksum = stored.checksum;
                self.builder.put(&job.path, &entry)
            }
            Err(ContentError::File(reason)) => {
                report(self.stats, &job.path, &reason);
                // Counted when found; not backed up after all (the
                // errors count it).
                self.stats.files.fetch_sub(1, Ordering::Relaxed);
                self.stats
                    .bytes_found
                    .fetch_sub(job.entry.size, Ordering::Relaxed);
                // Keep the version of the previous backup, if there is one:
                // a file that failed now is not lost from the new generation.
                match &job.previous {
                    Some(prev) => {
                        add(&self.stats.kept, 1);
                        self.builder.put(&job.path, prev)
                    }
                    None => Ok(()),
                }
            }
            Err(ContentError::Fatal(e)) => Err(e),
        }
    }

    /// Commit a checkpoint if `checkpoint` bytes of new data were stored
    /// since the last one (the commit makes them durable and reusable).
    fn maybe_checkpoint(&self) -> Result<()> {
        let due = |s: &Self| {
            s.stored.load(Ordering::Relaxed) >= s.next_checkpoint.load(Ordering::Relaxed)
        };
        if self.checkpoint_every == 0 || self.abort.load(Ordering::Relaxed) || !due(self) {
            return Ok(());
        }
        let Ok(_only_one) = self.checkpointing.try_lock() else {
            return Ok(());
        };
        if !due(self) {
            return Ok(());
        }
        // Counted from here, where the checkpoint cuts, not from when its
        // commit is done: what the other workers store while it waits for
        // the packs in flight counts toward the next one (it did not, and
        // checkpoints came further apart than asked).
        let cut = self.stored.load(Ordering::Relaxed);
        let gen = self.builder.commit(true)?;
        plugin_api::tracing::info!("committed checkpoint generation {}", gen.id);
        self.next_checkpoint
            .store(cut.saturating_add(self.checkpoint_every), Ordering::Relaxed);
        Ok(())
    }
}

/// The entry of a folder on the way to a root. A symbolic link on the way
/// (`/home` -> `/usr/home`) is recorded as the folder it leads to, with
/// that folder's metadata: a generation cannot hold something below a
/// link, and the root is recorded at the path it was given.
fn parent_entry(parent: &Path, names: &Names) -> std::io::Result<Entry> {
    let real = std::fs::canonicalize(parent)?;
    let meta = walk::lstat(&real)?;
    // No previous entry to compare with: the rule is not used.
    let rule = metadata::ChangeRule::default();
    let mut entry = metadata::entry(&real, &meta, names, None, rule, None)?;
    entry.name = parent
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    Ok(entry)
}

/// Report a file that could not be backed up (on standard error, and in
/// a json-lines stream).
fn report(stats: &Stats, path: &Path, reason: &str) {
    add(&stats.errors, 1);
    // Escaped, as every command shows names: a name holding a newline
    // must not make a line of its own, nor escapes reach the terminal.
    let shown = escape_path(path);
    plugin_api::tracing::error!("{shown}: {reason}");
    stats.events.error(path.as_os_str().as_bytes(), reason);
}

/// Report, as files that could not be backed up, the folders too large
/// for the generation to hold whole: it holds their first entries.
fn report_left_out(builder: &GenerationBuilder, stats: &Stats) -> Result<()> {
    for left in builder.take_left_out()? {
        add(&stats.left_out, left.entries - left.kept);
        let reason = format!(
            "{} entries take more than one folder of a generation holds (256 MiB of entries: \
             about a million with short names, fewer where a file has a very long list of \
             chunks); the generation holds the first {} in name order, and the other {}, from \
             '{}' on, are not backed up",
            left.entries,
            left.kept,
            left.entries - left.kept,
            plugin_api::names::escape(&left.first_left_out)
        );
        report(stats, &left.path, &reason);
    }
    Ok(())
}

/// Where the walk's findings go.
enum Sink<'a> {
    /// A real backup.
    Build {
        shared: &'a Shared<'a>,
        jobs: Sender<Vec<Job>>,
        /// Changed files not yet sent to the workers.
        batch: Batch,
        /// A message whenever a worker completes a directory or stops the run.
        done: Receiver<()>,
    },
    /// `--pretend`: only counted, compared with the latest generation.
    Pretend(Option<&'a GenerationReader>),
}

struct Walker<'a, 'c> {
    ctx: &'a Context<'c>,
    settings: &'a BackupSettings,
    stats: &'a Stats,
    progress: Progress<'a, 'c>,
    sink: Sink<'a>,
    excluder: Excluder<'a, 'c>,
    /// Directories the walk has left, in that order, with their tickets.
    to_finish: VecDeque<(PathBuf, Arc<Ticket>)>,
    names: Names,
    /// The unchanged files found in each folder the walk is in (the
    /// innermost last), kept with one call per [`KEEP_BATCH`] files
    /// rather than put one by one.
    keeping: Vec<Kept>,
    /// Files of the previous generation whose modification or change time
    /// is this late or later are read again, however unchanged they look
    /// ([`metadata::racy_from`]).
    racy_from: Option<(i64, u32)>,
    /// The folder, if any, below which every file is read again, however
    /// unchanged it looks: one that may have been renamed or moved to
    /// where it is, under `--ignore-inode` (see [`metadata::maybe_moved`]).
    read_all_below: Option<PathBuf>,
}

/// Unchanged files of a folder, to be kept.
struct Kept {
    dir: PathBuf,
    entries: Vec<Entry>,
}

/// Unchanged files kept with one call to the builder: a call (and the
/// entry's trip through the plugin boundary) per file was a tenth of a
/// no-change backup's time.
const KEEP_BATCH: usize = 256;

impl<'a, 'c> Walker<'a, 'c> {
    fn new(
        ctx: &'a Context<'c>,
        settings: &'a BackupSettings,
        stats: &'a Stats,
        progress: Progress<'a, 'c>,
        sink: Sink<'a>,
    ) -> Result<Self> {
        // The start of the earliest run whose entries the previous
        // generation holds: its own, unless it holds older ones unchecked
        // (a checkpoint, a folder kept after an error).
        let previous_start = match &sink {
            Sink::Build { shared, .. } => shared.builder.previous_racy_from(),
            Sink::Pretend(reader) => reader.map(|r| r.racy_from()),
        };
        Ok(Walker {
            ctx,
            settings,
            stats,
            progress,
            sink,
            excluder: Excluder::new(ctx, settings.repository_dir.clone())?,
            to_finish: VecDeque::new(),
            names: Names::default(),
            keeping: Vec::new(),
            racy_from: previous_start.map(metadata::racy_from),
            read_all_below: None,
        })
    }

    fn names(&self) -> &Names {
        match &self.sink {
            Sink::Build { shared, .. } => &shared.names,
            Sink::Pretend(_) => &self.names,
        }
    }

    fn aborted(&self) -> bool {
        matches!(&self.sink, Sink::Build { shared, .. } if shared.abort.load(Ordering::Relaxed))
    }

    fn previous(&self, path: &Path) -> Result<Option<Entry>> {
        match &self.sink {
            Sink::Build { shared, .. } => shared.builder.previous(path),
            Sink::Pretend(Some(reader)) => reader.lookup(path),
            Sink::Pretend(None) => Ok(None),
        }
    }

    /// The previous generation's entries of a directory: one lookup per
    /// directory rather than one per file.
    fn previous_dir(&self, dir: &Path) -> Result<PreviousDir> {
        let entries = match &self.sink {
            Sink::Build { shared, .. } => shared.builder.previous_dir(dir)?,
            Sink::Pretend(Some(reader)) => reader.list_dir(dir)?,
            Sink::Pretend(None) => None,
        };
        Ok(PreviousDir::new(entries.unwrap_or_default()))
    }

    /// Something could not be looked at now: keep what the previous
    /// generation had for it (a directory with its whole subtree), so that a
    /// passing error loses nothing that was backed up before.
    fn keep_previous(&self, path: &Path, previous: Option<Entry>) -> Result<()> {
        match previous {
            Some(prev) => {
                add(&self.stats.kept, 1);
                self.put(path, &prev)
            }
            None => Ok(()),
        }
    }

    /// Whether the repository still holds every chunk of a file's previous
    /// entry: a file whose chunks were lost is read again, however
    /// unchanged it looks.
    fn chunks_present(&self, previous: &Entry) -> bool {
        match &self.sink {
            Sink::Build { shared, .. } => {
                let present = previous.chunks.iter().all(|id| shared.repo.has_chunk(*id));
                if !present {
                    shared.healed.fetch_add(1, Ordering::Relaxed);
                }
                present
            }
            Sink::Pretend(_) => true,
        }
    }

    fn put(&self, path: &Path, entry: &Entry) -> Result<()> {
        match &self.sink {
            Sink::Build { shared, .. } => shared.builder.put(path, entry),
            Sink::Pretend(_) => Ok(()),
        }
    }

    /// A `--verbose` line (not with `--output-format json` or
    /// `json-lines`: standard output then holds only JSON).
    fn say(&self, line: &str) -> Result<()> {
        if self.settings.verbose && self.settings.output == OutputFormat::Text {
            self.ctx.outln(line)?;
        }
        Ok(())
    }

    /// Say that the folder `dir` is recorded without its contents, being
    /// on a file system of the kernel's state (`kind`): a warning if the
    /// user named it as a root (they may have meant its contents), else
    /// with `--verbose` only, as `obnam backup /` meets `/proc` and
    /// `/sys` every time.
    fn kernel_view(&self, dir: &Path, root: &Path, kind: &str) -> Result<()> {
        let named = dir == root;
        let dir = escape_path(dir);
        if named {
            plugin_api::tracing::warn!(
                "{dir} is on a {kind} file system, which shows the kernel's state rather than \
                 holding files: its contents are not backed up"
            );
            Ok(())
        } else {
            self.say(&format!(
                "left out the contents of {dir} (a {kind} file system: the kernel's state, \
                 not files)"
            ))
        }
    }

    /// The walk leaves out `meta` and, for a folder, what is below it:
    /// not to be counted in the scan's totals.
    fn left_out(&self, meta: &FileStat) {
        if let Some(scan) = self.progress.scan {
            scan.left_out(meta);
        }
    }

    /// The walk is done with an object: count it for the progress (a
    /// folder that is not walked is left out of the totals instead).
    fn skipped(&self, meta: &FileStat) {
        if meta.is_dir() {
            self.left_out(meta);
        } else {
            self.stats.done(meta.size);
        }
    }

    /// Why the folder at `path` (`meta`), if it looks like the mount point
    /// of a file system that is not mounted now: in the previous
    /// generation it was a file system of its own (its device was not its
    /// folder's) and held something, and now it is a folder of its
    /// folder's file system holding none of what it held (empty, or a
    /// marker such as `NOT-MOUNTED` left in the bare mount point). Backed
    /// up as it is, the new generation would drop everything on that disk
    /// or share without a word, and a retention policy would then forget
    /// the generations that hold it; so it is an error, and the
    /// generation keeps the previous version. Only a folder whose device
    /// changed is looked at further (a file system that numbers its
    /// devices anew at each mount, a btrfs subvolume emptied, are not
    /// taken for this: their folders are still, or were never, of another
    /// device than their folder's), and one whose contents were moved onto
    /// its parent's file system (some of the same names) is backed up as
    /// it is.
    fn unmounted(
        &self,
        path: &Path,
        meta: &FileStat,
        previous: Option<&Entry>,
    ) -> Result<Option<&'static str>> {
        let Some(prev) = previous.filter(|p| p.kind == EntryKind::Dir && p.dev != meta.dev) else {
            return Ok(None);
        };
        let Some(parent) = path.parent() else {
            return Ok(None);
        };
        let Ok(parent_now) = std::fs::canonicalize(parent).and_then(|real| walk::lstat(&real))
        else {
            return Ok(None);
        };
        if parent_now.dev != meta.dev {
            return Ok(None);
        }
        // Whether it was a file system of its own then: its device was not
        // its folder's. `/` is in no generation (and its device number may
        // be another after a reboot): there, the other top-level entries
        // the previous generation holds tell; one that shared this
        // folder's device shows it was none (and none to compare with, as
        // for a root such as `/home` backed up alone, tells nothing).
        let separate = match self.previous(parent)? {
            Some(p) => p.dev != prev.dev,
            None if parent == Path::new("/") => {
                let name = path.file_name().map(|n| n.as_bytes().to_vec());
                let others: Vec<Entry> = self
                    .previous_entries(parent)?
                    .into_iter()
                    .filter(|e| Some(&e.name) != name.as_ref())
                    .collect();
                !others.is_empty() && others.iter().all(|e| e.dev != prev.dev)
            }
            None => false,
        };
        if !separate {
            return Ok(None);
        }
        let held: Vec<Vec<u8>> = self
            .previous_entries(path)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        if held.is_empty() {
            return Ok(None);
        }
        let Ok(listing) = std::fs::read_dir(path) else {
            return Ok(None);
        };
        let mut now = listing.filter_map(|e| {
            e.ok()
                .map(|e| std::os::unix::ffi::OsStringExt::into_vec(e.file_name()))
        });
        if now.any(|name| held.contains(&name)) {
            return Ok(None);
        }
        Ok(Some(
            "it was a file system of its own in the previous generation, and is a folder of its \
             parent's now, holding none of what it held: is its disk or share mounted? Kept as \
             the previous generation had it",
        ))
    }

    /// The entries of the folder `dir` in the previous generation (none
    /// if it had no such folder).
    fn previous_entries(&self, dir: &Path) -> Result<Vec<Entry>> {
        Ok(match &self.sink {
            Sink::Build { shared, .. } => shared.builder.previous_dir(dir)?,
            Sink::Pretend(Some(reader)) => reader.list_dir(dir)?,
            Sink::Pretend(None) => None,
        }
        .unwrap_or_default())
    }

    /// Back up `roots` (sorted) one after the other, until `stop` says so.
    ///
    /// A root inside an earlier one waits until every folder of the
    /// earlier ones is finished: the folders on the way down to it that
    /// the outer root's rules left out are dropped then, and made anew,
    /// holding only the way to it, when it is walked ([`Self::root`]).
    /// (Finished later, they would keep what the previous generation had
    /// in them.)
    fn roots(&mut self, roots: &[PathBuf], stop: impl Fn() -> bool) -> Result<()> {
        for (i, root) in roots.iter().enumerate() {
            if roots[..i].iter().any(|outer| root.starts_with(outer)) {
                self.drain()?;
            }
            self.root(root)?;
            if stop() {
                break;
            }
        }
        Ok(())
    }

    /// Back up one root, recording its parent directories first.
    fn root(&mut self, root: &Path) -> Result<()> {
        let meta = match walk::lstat(root) {
            Ok(m) => m,
            Err(e) => {
                report(self.stats, root, &io_reason(&e));
                return Ok(());
            }
        };
        let mut moved_above = false;
        for parent in root
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if parent == Path::new("/") {
                continue;
            }
            match parent_entry(parent, self.names()) {
                Ok(entry) => {
                    // A folder on the way to the root replaced by another
                    // renamed into its path brings another root.
                    moved_above |= metadata::maybe_moved(
                        &entry,
                        self.previous(parent)?.as_ref(),
                        self.settings.change_rule,
                    );
                    self.put(parent, &entry)?
                }
                Err(e) => report(self.stats, parent, &io_reason(&e)),
            }
        }
        let root_stat = meta;
        // A root that is a file belongs to no directory the run finishes:
        // nothing waits on this ticket.
        let root_ticket = Ticket::new();
        let previous = self.previous(root)?;
        let moved_above = moved_above && self.read_all_below.is_none();
        if moved_above {
            self.read_all_below = Some(root.to_path_buf());
        }
        let visited = self.visit(root, meta, previous, root, root_stat, &root_ticket);
        if moved_above {
            self.read_all_below = None;
        }
        visited?;
        self.finish_ready(false)
    }

    /// Back up one object found by the walk.
    fn visit(
        &mut self,
        path: &Path,
        meta: FileStat,
        mut previous: Option<Entry>,
        root: &Path,
        root_stat: FileStat,
        parent_ticket: &Arc<Ticket>,
    ) -> Result<()> {
        let rule = self.settings.change_rule;
        let mut entry = match metadata::entry(
            path,
            &meta,
            self.names(),
            previous.as_ref(),
            rule,
            self.racy_from,
        ) {
            Ok(e) => e,
            // Its attributes are read through a descriptor of its own.
            Err(e) if crate::content::out_of_descriptors(&e) => {
                return Err(plugin_api::Error::msg(format!(
                    "{}: {}",
                    escape_path(path),
                    crate::content::no_descriptors_left(&e)
                )));
            }
            Err(e) => {
                report(self.stats, path, &io_reason(&e));
                self.skipped(&meta);
                return self.keep_previous(path, previous);
            }
        };
        if self
            .settings
            .fail_matching
            .iter()
            .any(|re| re.is_match(&path.to_string_lossy()))
        {
            report(
                self.stats,
                path,
                "simulated failure (--testing-fail-matching)",
            );
            self.skipped(&meta);
            return self.keep_previous(path, previous);
        }
        if entry.kind == EntryKind::Dir {
            if let Some(reason) = self.unmounted(path, &meta, previous.as_ref())? {
                report(self.stats, path, reason);
                self.skipped(&meta);
                return self.keep_previous(path, previous);
            }
            add(&self.stats.directories, 1);
            if path != Path::new("/") {
                self.put(path, &entry)?;
            }
            if let Some(scan) = self.progress.scan {
                scan.entered(&meta);
            }
            let moved = self.read_all_below.is_none()
                && metadata::maybe_moved(&entry, previous.as_ref(), rule);
            if moved {
                self.read_all_below = Some(path.to_path_buf());
            }
            let walked = self.walk_dir(path, (meta.dev, meta.ino), root, root_stat);
            if moved {
                self.read_all_below = None;
            }
            return walked;
        }
        add(&self.stats.files, 1);
        add(&self.stats.bytes_found, entry.size);
        self.stats.current.offer(path.as_os_str().as_bytes());
        let unchanged = self.read_all_below.is_none()
            && previous.as_ref().is_some_and(|p| {
                rule.unchanged(&entry, p)
                    && !metadata::racy(p, self.racy_from, rule)
                    && self.chunks_present(p)
            });
        if let Some(mut prev) = previous.take_if(|_| unchanged) {
            rule.keep_content_of(&mut entry, &prev);
            // The entry has no content yet: compared without the
            // previous one's, they are the same if nothing at all
            // changed (then the file is kept, not put).
            let chunks = std::mem::take(&mut prev.chunks);
            let checksum = std::mem::take(&mut prev.checksum);
            let same = entry == prev;
            entry.chunks = chunks;
            entry.checksum = checksum;
            self.stats.done(meta.size);
            return match self.keeping.last_mut() {
                Some(batch) if same && Some(batch.dir.as_path()) == path.parent() => {
                    batch.entries.push(entry);
                    if batch.entries.len() >= KEEP_BATCH {
                        self.flush_kept()?;
                    }
                    Ok(())
                }
                _ => self.put(path, &entry),
            };
        }
        if entry.kind != EntryKind::File {
            self.put(path, &entry)?;
            self.stats.done(meta.size);
            return Ok(());
        }
        self.say(&format!(
            "{} {}",
            if matches!(self.sink, Sink::Pretend(_)) {
                "would back up"
            } else {
                "backing up"
            },
            escape_path(path)
        ))?;
        match &mut self.sink {
            Sink::Pretend(_) => {
                add(&self.stats.files_read, 1);
                add(&self.stats.bytes_read, entry.size);
                self.stats.done(meta.size);
                Ok(())
            }
            Sink::Build { jobs, batch, .. } => {
                parent_ticket.hold();
                let job = Job {
                    path: path.to_path_buf(),
                    entry,
                    previous,
                    ticket: parent_ticket.clone(),
                };
                if batch.add(job) {
                    batch.send(jobs);
                }
                Ok(())
            }
        }
    }

    fn walk_dir(
        &mut self,
        dir: &Path,
        seen: (u64, u64),
        root: &Path,
        root_stat: FileStat,
    ) -> Result<()> {
        let ticket = Ticket::new();
        let children = match walk::children(dir, seen) {
            Ok(walk::Listing {
                kernel_view: Some(kind),
                ..
            }) => {
                self.kernel_view(dir, root, kind)?;
                Vec::new()
            }
            Ok(listing) => listing.children,
            // No folder can be listed until descriptors are closed.
            Err(e) if crate::content::out_of_descriptors(&e) => {
                return Err(plugin_api::Error::msg(format!(
                    "{}: {}",
                    plugin_api::names::escape_path(dir),
                    crate::content::no_descriptors_left(&e)
                )));
            }
            Err(e) => {
                // Not finishing the directory keeps its previous contents.
                report(self.stats, dir, &io_reason(&e));
                if self.previous(dir)?.is_some() {
                    add(&self.stats.kept, 1);
                }
                return Ok(());
            }
        };
        let mut previous = self.previous_dir(dir)?;
        if matches!(self.sink, Sink::Build { .. }) {
            self.keeping.push(Kept {
                dir: dir.to_path_buf(),
                entries: Vec::new(),
            });
        }
        for listed in children {
            if self.aborted() {
                break;
            }
            // A json-lines stream that cannot be written stops the run.
            self.progress.reporter.check()?;
            let prev = previous.take(listed.name());
            let walk::Child {
                path: child, meta, ..
            } = listed;
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    report(self.stats, &child, &io_reason(&e));
                    self.keep_previous(&child, prev)?;
                    continue;
                }
            };
            // A root inside this one is walked as a root of its own, after
            // this one (the roots are sorted): never excluded by this
            // root's rules. What the previous generation had there stays
            // until that walk puts it anew, so that finishing this folder
            // first does not drop it.
            if self.settings.inner_roots.binary_search(&child).is_ok() {
                if let Some(prev) = prev {
                    self.put(&child, &prev)?;
                }
                continue;
            }
            // A file mounted on its own from a kernel's file system (a
            // bind mount of `/proc/kmsg`): its device is not its folder's.
            let kernel_file = (meta.is_file() && meta.dev != seen.0)
                .then(|| plugin_api::live_paths::kernel_view_of(&child))
                .flatten()
                .map(|kind| {
                    format!("it is on a {kind} file system: the kernel's state, not a file")
                });
            // `obnam mount` of a repository in the tree (to browse the
            // backups): its files are backups already, and walking it
            // recorded every mounted generation again at every backup.
            let kernel_file = kernel_file.or_else(|| {
                (meta.is_dir() && meta.dev != seen.0 && walk::is_obnam_mount(&child)).then(|| {
                    "it is an 'obnam mount' of a repository: its files are backups already"
                        .to_string()
                })
            });
            let files_seen = self.stats.files.load(Ordering::Relaxed);
            let reason = match kernel_file {
                Some(reason) => Some(reason),
                None => self
                    .excluder
                    .reason(&child, meta, root, root_stat, files_seen)?,
            };
            if let Some(reason) = reason {
                add(&self.stats.excluded, 1);
                self.left_out(&meta);
                self.say(&format!(
                    "excluded {} ({})",
                    escape_path(&child),
                    plugin_api::names::escape_text(&reason)
                ))?;
                continue;
            }
            self.visit(&child, meta, prev, root, root_stat, &ticket)?;
        }
        self.flush_kept()?;
        self.keeping.pop();
        self.send_batch();
        // The walk leaves: the directory now waits only for its files.
        ticket.release();
        self.to_finish.push_back((dir.to_path_buf(), ticket));
        self.finish_ready(false)
    }

    /// Send the changed files gathered to the workers.
    fn send_batch(&mut self) {
        if let Sink::Build { jobs, batch, .. } = &mut self.sink {
            batch.send(jobs);
        }
    }

    /// Keep the unchanged files gathered in the folder being walked, and
    /// put those the builder would not keep.
    fn flush_kept(&mut self) -> Result<()> {
        let Some(batch) = self.keeping.last_mut() else {
            return Ok(());
        };
        if batch.entries.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut batch.entries);
        let dir = batch.dir.clone();
        let Sink::Build { shared, .. } = &self.sink else {
            return Ok(());
        };
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        for i in shared.builder.keep(&dir, &names)? {
            if let Some(entry) = entries.get(i) {
                let path = dir.join(std::ffi::OsStr::from_bytes(&entry.name));
                shared.builder.put(&path, entry)?;
            }
        }
        Ok(())
    }

    /// Finish the directories whose files are all done, in order; with
    /// `block`, wait for all of them.
    ///
    /// A wait ends with a message from a worker that completed a directory
    /// or stopped the run; every such change sends one, so none is missed.
    fn finish_ready(&mut self, block: bool) -> Result<()> {
        let Sink::Build { shared, done, .. } = &self.sink else {
            self.to_finish.clear();
            return Ok(());
        };
        while let Some((dir, ticket)) = self.to_finish.front() {
            // The state is in the tickets: the messages so far are stale.
            while done.try_recv().is_ok() {}
            if !ticket.complete() {
                if !block || shared.abort.load(Ordering::Relaxed) {
                    if shared.abort.load(Ordering::Relaxed) {
                        self.to_finish.clear();
                    }
                    return Ok(());
                }
                if done.recv().is_err() {
                    plugin_api::bail!("the backup's worker threads stopped");
                }
                continue;
            }
            shared.builder.finish_dir(dir)?;
            report_left_out(shared.builder, self.stats)?;
            self.to_finish.pop_front();
        }
        Ok(())
    }

    /// Wait for the workers and finish every directory.
    fn drain(&mut self) -> Result<()> {
        self.send_batch();
        self.finish_ready(true)
    }
}

/// A directory's entries in the previous generation, handed out as the
/// walk meets their names. The walk takes a folder's children in name
/// order, the order of the entries: one pass with a cursor matches them,
/// with no map of the folder (which for 100,000 files was 38 MB).
struct PreviousDir {
    entries: std::iter::Peekable<std::vec::IntoIter<Entry>>,
}

impl PreviousDir {
    fn new(mut entries: Vec<Entry>) -> Self {
        // Trees are written in name order; one that is not (damaged, or
        // not written by obnam) is put in order here.
        if !entries.windows(2).all(|w| w[0].name < w[1].name) {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
        }
        PreviousDir {
            entries: entries.into_iter().peekable(),
        }
    }

    /// The entry called `name`. Names must be asked for in increasing
    /// order: an entry before the last name asked for is not found.
    fn take(&mut self, name: &[u8]) -> Option<Entry> {
        while let Some(e) = self.entries.peek() {
            match e.name.as_slice().cmp(name) {
                std::cmp::Ordering::Less => drop(self.entries.next()),
                std::cmp::Ordering::Equal => return self.entries.next(),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, size: u64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            size,
            ..Entry::default()
        }
    }

    /// The walk's children come in name order; each finds its own
    /// previous entry, new names find none, and the entries of vanished
    /// files are passed over.
    #[test]
    fn a_previous_folder_hands_each_child_its_own_entry() {
        for given in [
            vec![named("a", 1), named("c", 3), named("d", 4), named("f", 6)],
            // Out of order (not written by obnam): put in order first.
            vec![named("f", 6), named("a", 1), named("d", 4), named("c", 3)],
        ] {
            let mut previous = PreviousDir::new(given);
            let found: Vec<Option<u64>> = ["a", "b", "d", "e", "f", "g"]
                .iter()
                .map(|n| previous.take(n.as_bytes()).map(|e| e.size))
                .collect();
            assert_eq!(found, [Some(1), None, Some(4), None, Some(6), None]);
        }
        assert!(PreviousDir::new(Vec::new()).take(b"a").is_none());
    }
}
