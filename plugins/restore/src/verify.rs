//! `obnam verify [PATH]...`: does the file system still hold what a
//! generation (default latest) recorded?
//!
//! For every object below each PATH (relative to the current folder or
//! absolute, as `obnam backup` takes it; without PATH, the backup roots of
//! the `root` setting) it
//! compares the generation's entry with the live object: kind, mode,
//! owner, modification time, extended attributes, symlink target, device
//! number, size, and the content of regular files (read and hashed,
//! compared with the checksum recorded at backup). Objects in
//! the generation that are gone, and objects on disk that the generation
//! lacks, are differences too, except those the `backup-exclude` hook
//! leaves out (so `--exclude` patterns given to backup should be given
//! to verify as well). Status-change times and link counts are not
//! compared: they change without the object changing.
//!
//! Each difference is one line, `PATH: what`, on standard output; the run
//! ends non-zero if there was any. Whatever could not be looked at (an
//! object that cannot be `lstat`ed, a folder that cannot be listed, a file
//! that cannot be read, a path too long for the system) is an error, on
//! standard error as `ERROR: PATH: what`, and ends the run non-zero too:
//! verify never says "no differences" about something it did not see. `--verify-randomly N` checks only N
//! regular files chosen at random (a quick nightly spot check); objects
//! added on disk are then not looked for.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use plugin_api::checksum::{ChecksumError, ContentCheck};

use plugin_api::live_paths;
use plugin_api::payloads::{ExcludeCandidate, FileStat, BACKUP_EXCLUDE};
use plugin_api::{Context, Entry, EntryKind, GenerationReader, Hook, Repository, Result};

use crate::links::{live_object, recorded_object, LinkTable};
use crate::listing::bytes_fields;
use crate::names::{self, escape};
use crate::select;

fn kind_word(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "a file",
        EntryKind::Dir => "a directory",
        EntryKind::Symlink => "a symlink",
        EntryKind::Fifo => "a FIFO",
        EntryKind::Socket => "a socket",
        EntryKind::CharDevice => "a character device",
        EntryKind::BlockDevice => "a block device",
    }
}

/// A live object's extended attributes, sorted (as a backup records
/// them); none where the file system has no support for them.
fn live_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()), // EOPNOTSUPP
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(value) = xattr::get(path, &name)? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Read a live file's content through a check against the checksum a
/// backup recorded (of whichever kind that checksum is). Holes, where the
/// file system tells them (`SEEK_DATA`/`SEEK_HOLE`), are hashed as their
/// zeros without being read, as the backup did.
///
/// The file opened must be the one `seen` describes: opened without
/// following a link or waiting for a writer (a FIFO or a symlink put in
/// its place since blocked the verify, or led it anywhere).
fn check_file<'r>(
    path: &Path,
    seen: &fs::Metadata,
    recorded: &'r [u8],
) -> std::io::Result<ContentCheck<'r>> {
    use rustix::fs::{OFlags, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    // Read as the backup reads: its access time left as it was.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut file = fs::File::from(plugin_api::live_paths::open_unseen(path, flags)?);
    let opened = file.metadata()?;
    if !opened.is_file() || (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(std::io::Error::other(
            "it was replaced while it was being read",
        ));
    }
    // Reads block again (a network or FUSE file system may heed the flag);
    // `O_NOATIME` stays, which `F_SETFL` would clear with the rest.
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    let size = opened.len();
    let mut check = ContentCheck::new(recorded);
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(&file, SeekFrom::Data(pos)) {
            Ok(at) => at.clamp(pos, size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(_) => pos,
        };
        check.update_zeros(data - pos);
        pos = data;
        if pos == size {
            break;
        }
        let end = match rustix::fs::seek(&file, SeekFrom::Hole(pos)) {
            Ok(at) if at > pos => at.min(size),
            _ => size,
        };
        rustix::fs::seek(&file, SeekFrom::Start(pos))?;
        while pos < end {
            let want = buf.len().min((end - pos) as usize);
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                // Shorter than it said: what was hashed is the content.
                return Ok(check);
            }
            check.update(&buf[..n]);
            pos += n as u64;
        }
    }
    // Whatever it grew by since it was looked at is content too.
    rustix::fs::seek(&file, SeekFrom::Start(pos))?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(check);
        }
        check.update(&buf[..n]);
    }
}

/// The names in the live folder `dir` (not `.` and `..`), listed as the
/// backup lists them: without following a link put in its place, and
/// without stamping its access time. An error partway fails the whole
/// listing: a folder not listed to its end may hold anything.
fn names_in(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut list = rustix::fs::Dir::new(live_paths::open_unseen(dir, flags)?)?;
    let mut names = Vec::new();
    while let Some(entry) = list.read() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// The metadata differences between a recorded entry and a live object of
/// the same kind, in words (`mode 100644 -> 100600`: backup, then disk).
pub fn metadata_differences(e: &Entry, m: &Metadata) -> Vec<String> {
    let mut what = Vec::new();
    if e.mode != m.mode() {
        what.push(format!("mode {:o} -> {:o}", e.mode, m.mode()));
    }
    if e.uid != m.uid() {
        what.push(format!("owner {} -> {}", e.uid, m.uid()));
    }
    if e.gid != m.gid() {
        what.push(format!("group {} -> {}", e.gid, m.gid()));
    }
    if (e.mtime, e.mtime_ns) != (m.mtime(), m.mtime_nsec() as u32) {
        what.push(format!(
            "mtime {}.{:09} -> {}.{:09}",
            e.mtime,
            e.mtime_ns,
            m.mtime(),
            m.mtime_nsec()
        ));
    }
    if matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice) && e.rdev != m.rdev() {
        what.push(format!("device number {:#x} -> {:#x}", e.rdev, m.rdev()));
    }
    if e.kind == EntryKind::File && e.size != m.size() {
        what.push(format!("size {} -> {}", e.size, m.size()));
    }
    what
}

/// Verifies, and counts what it found.
struct Verifier<'a, 'c> {
    ctx: &'a Context<'c>,
    /// Where the backed-up content is read back from.
    repo: &'a Repository,
    exclude: Option<Hook<ExcludeCandidate>>,
    repository_dir: Option<PathBuf>,
    checked: u64,
    differences: u64,
    /// What could not be looked at.
    errors: u64,
    /// With JSON output, the differences as they are found (printed as
    /// one object at the end); else they are printed at once.
    found: Option<Vec<serde_json::Value>>,
    /// With JSON output, the errors (they are on standard error as well).
    unchecked: Vec<serde_json::Value>,
    /// The names compared that have other names, in the backup or on
    /// disk: which are one object is compared at the end of a full walk
    /// ([`crate::links`]).
    links: LinkTable,
    /// What the content of files with several names was found to be.
    contents: SeenContents,
}

/// The content of a live file with several names, as compared with a
/// record: the object and its `stat`, and the record's checksum and
/// chunks. Another name of it, seen the same, compared with the same
/// record, gives the same answer: a file with 10,000 names is read
/// once, not 10,000 times.
#[derive(PartialEq, Eq, Hash)]
struct SeenContent {
    object: (u64, u64),
    stat: (u64, i64, i64, i64, i64),
    checksum: Vec<u8>,
    chunks: Vec<plugin_api::ChunkId>,
}

impl SeenContent {
    fn of(e: &Entry, m: &Metadata) -> Self {
        SeenContent {
            object: (m.dev(), m.ino()),
            stat: (
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ),
            checksum: e.checksum.clone(),
            chunks: e.chunks.clone(),
        }
    }
}

/// What comparing contents found (`None`: the same), for up to
/// [`SeenContents::MAX`] files; past that, the others are read once a
/// name.
#[derive(Default)]
struct SeenContents(std::collections::HashMap<SeenContent, Option<String>>);

impl SeenContents {
    const MAX: usize = 100_000;

    fn get(&self, seen: &SeenContent) -> Option<&Option<String>> {
        self.0.get(seen)
    }

    fn insert(&mut self, seen: SeenContent, found: Option<String>) {
        if self.0.len() < Self::MAX {
            self.0.insert(seen, found);
        }
    }
}

/// A difference or error in JSON: the path as every listing gives one
/// (the string, and its exact bytes in `path_bytes` if not UTF-8), and
/// what was found under `key`.
fn path_json(path: &[u8], key: &str, what: &str) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    bytes_fields(&mut obj, "path", path);
    obj.insert(key.into(), serde_json::json!(what));
    serde_json::Value::Object(obj)
}

impl Verifier<'_, '_> {
    fn differ(&mut self, path: &[u8], what: &str) -> Result<()> {
        self.differences += 1;
        match &mut self.found {
            Some(found) => {
                found.push(path_json(path, "difference", what));
                Ok(())
            }
            None => self.ctx.outln(&format!("{}: {what}", escape(path))),
        }
    }

    /// Something at `path` could not be looked at: not a difference (it may
    /// be the same), but the run must not say there are none.
    fn cannot(&mut self, path: &[u8], what: &str) {
        self.errors += 1;
        plugin_api::tracing::error!("{}: {what}", escape(path));
        if self.found.is_some() {
            self.unchecked.push(path_json(path, "error", what));
        }
    }

    /// Compare one entry with the live object at `path`.
    /// Read a file's content back from the repository, checking it
    /// against the checksum recorded with it: what a restore of it would
    /// read (a pack lost or damaged since the backup shows here).
    fn read_back(&self, e: &Entry) -> std::result::Result<(), String> {
        let mut check = ContentCheck::new(&e.checksum);
        crate::fetch::for_each_chunk(self.repo, &e.chunks, |chunk| {
            if chunk.zero {
                check.update_zeros(chunk.data.len() as u64);
            } else {
                check.update(&chunk.data);
            }
            Ok(())
        })
        .map_err(|err| err.to_string())?;
        check.finish().map_err(|err| err.to_string())
    }

    /// The first of `folders` (those on the way to a file, from
    /// [`folders_to`]) below the root (which is looked up by its whole
    /// path, as backup takes a root) that is no longer a folder on disk,
    /// reported as a difference; `None` if all are.
    fn folders_on_the_way(&mut self, folders: &[Vec<u8>]) -> Result<Option<Vec<u8>>> {
        for folder in folders.iter().skip(1) {
            let found = match fs::symlink_metadata(names::as_path(folder)) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) => format!(
                    "a directory in the backup, {} on disk",
                    kind_word(EntryKind::from_mode(m.mode()))
                ),
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    "in the backup, not on disk".to_string()
                }
                Err(err) => {
                    self.cannot(folder, &format!("cannot be read: {err}"));
                    return Ok(Some(folder.clone()));
                }
            };
            self.checked += 1;
            self.differ(folder, &found)?;
            return Ok(Some(folder.clone()));
        }
        Ok(None)
    }

    fn entry(&mut self, path: &[u8], e: &Entry) -> Result<Option<Metadata>> {
        self.checked += 1;
        let live = names::as_path(path);
        let m = match fs::symlink_metadata(live) {
            Ok(m) => m,
            // A folder on the way that is now a file: the object is gone.
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                self.differ(path, "in the backup, not on disk")?;
                return Ok(None);
            }
            Err(err) => {
                self.cannot(path, &format!("cannot be read: {err}"));
                return Ok(None);
            }
        };
        let kind = EntryKind::from_mode(m.mode());
        if kind != e.kind {
            self.differ(
                path,
                &format!(
                    "{} in the backup, {} on disk",
                    kind_word(e.kind),
                    kind_word(kind)
                ),
            )?;
            return Ok(None);
        }
        let mut what = metadata_differences(e, &m);
        // The folder at the top of a file system of the kernel's state
        // (`/proc`, `/sys`) has the times the kernel gives it, which
        // change as the kernel's objects come and go (a FUSE mount anywhere
        // changed those of `/sys`): backed up without its contents, it is
        // compared without its times too.
        if kind == EntryKind::Dir
            && (e.mtime, e.mtime_ns) != (m.mtime(), m.mtime_nsec() as u32)
            && live_paths::kernel_view_of(live).is_some()
        {
            what = metadata_differences(
                &Entry {
                    mtime: m.mtime(),
                    mtime_ns: m.mtime_nsec() as u32,
                    ..e.clone()
                },
                &m,
            );
        }
        // What could not be looked at, reported apart from what differs.
        let mut unseen = Vec::new();
        match live_xattrs(live) {
            Ok(x) if x != e.xattrs => what.push("extended attributes".into()),
            Ok(_) => {}
            Err(err) => unseen.push(format!("extended attributes cannot be read: {err}")),
        }
        if kind == EntryKind::Symlink {
            match fs::read_link(live) {
                Ok(t) if t.as_os_str().as_bytes() == e.target.as_slice() => {}
                Ok(t) => what.push(format!(
                    "symlink target {} -> {}",
                    escape(&e.target),
                    escape(t.as_os_str().as_bytes())
                )),
                Err(err) => unseen.push(format!("symlink cannot be read: {err}")),
            }
        }
        if kind == EntryKind::File && e.size == m.size() && !e.checksum.is_empty() {
            // Another name of a file compared already, seen the same, with
            // the same record: the same answer, without reading it again.
            // (Only a file of several names is looked up and kept: the
            // key copies the record's chunk list.)
            let seen = (m.nlink() > 1).then(|| SeenContent::of(e, &m));
            if let Some(difference) = seen.as_ref().and_then(|seen| self.contents.get(seen)) {
                what.extend(difference.clone());
            } else {
                let found = match check_file(live, &m, &e.checksum).map(ContentCheck::finish) {
                    // The file on disk is what was backed up: and the
                    // backup still holds it (as Obnam 1.x's verify read
                    // it back).
                    Ok(Ok(())) => Ok(self
                        .read_back(e)
                        .err()
                        .map(|why| format!("the backed-up content cannot be read back: {why}"))),
                    Ok(Err(ChecksumError::Mismatch)) => Ok(Some("content".to_string())),
                    Ok(Err(err)) => Err(format!("content cannot be checked: {err}")),
                    Err(err) => Err(format!("content cannot be read: {err}")),
                };
                match found {
                    Ok(difference) => {
                        if let Some(seen) = seen {
                            self.contents.insert(seen, difference.clone());
                        }
                        what.extend(difference);
                    }
                    Err(cannot) => unseen.push(cannot),
                }
            }
        }
        if !what.is_empty() {
            self.differ(path, &what.join(", "))?;
        }
        if !unseen.is_empty() {
            self.cannot(path, &unseen.join(", "));
        }
        Ok(Some(m))
    }

    /// Whether the backup would have left out the live object at `path`.
    fn excluded(&self, path: &Path, m: &Metadata, root: &Path, root_m: &Metadata) -> Result<bool> {
        if self.repository_dir.as_deref() == Some(path) {
            return Ok(true);
        }
        // A file of the kernel's state, mounted on its own: backup
        // leaves it out.
        if m.is_file() && live_paths::kernel_view_of(path).is_some() {
            return Ok(true);
        }
        let Some(hook) = self.exclude else {
            return Ok(false);
        };
        let mut p = ExcludeCandidate {
            path: path.as_os_str().as_bytes().into(),
            stat: FileStat::from_metadata(m),
            root: root.as_os_str().as_bytes().into(),
            root_stat: FileStat::from_metadata(root_m),
            ..ExcludeCandidate::default()
        };
        self.ctx.call(hook, &mut p)?;
        Ok(p.exclude)
    }

    /// Everything below the root `root`, whose live status is `root_m`.
    fn tree(&mut self, reader: &GenerationReader, root: &[u8], root_m: &Metadata) -> Result<()> {
        let mut stack = vec![root.to_vec()];
        while let Some(dir) = stack.pop() {
            self.ctx.status(&format!(
                "verify: {} ({} checked)",
                escape(&dir),
                self.checked
            ));
            let mut recorded = BTreeMap::new();
            for e in reader.list_dir(names::as_path(&dir))?.unwrap_or_default() {
                if names::check_name(&e.name).is_ok() {
                    recorded.insert(e.name.clone(), e);
                }
            }
            let mut below = Vec::new();
            for (name, e) in &recorded {
                let child = names::join(&dir, name);
                if let Some(m) = self.entry(&child, e)? {
                    self.links
                        .note(child.clone(), recorded_object(e), live_object(&m));
                    if m.is_dir() {
                        below.push(child);
                    }
                }
            }
            // What is on disk and not in the backup. A folder that cannot
            // be listed (or not to its end) may hold anything: an error.
            let mut added = Vec::new();
            // A folder of the kernel's state (`/proc`, `/sys`) is backed
            // up without its contents: nothing there is added.
            let kernel_view = live_paths::kernel_view_of(names::as_path(&dir));
            let listing = match kernel_view {
                Some(_) => Ok(None),
                None => names_in(names::as_path(&dir)).map(Some),
            };
            match listing {
                Ok(None) => {}
                Ok(Some(names)) => added = names,
                Err(err) => self.cannot(&dir, &format!("cannot be listed: {err}")),
            }
            added.retain(|n| !recorded.contains_key(n));
            added.sort();
            for name in added {
                let child = names::join(&dir, &name);
                let path = names::as_path(&child);
                let m = match fs::symlink_metadata(path) {
                    Ok(m) => m,
                    // Gone since the listing: nothing to compare.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    // On disk, and maybe not in the backup (a path longer
                    // than the system takes, which a backup cannot have
                    // stored either): it cannot be seen whether it is
                    // excluded, nor what it is.
                    Err(err) => {
                        self.cannot(&child, &format!("on disk, cannot be read: {err}"));
                        continue;
                    }
                };
                if !self.excluded(path, &m, names::as_path(root), root_m)? {
                    self.differ(&child, "on disk, not in the backup")?;
                }
            }
            stack.extend(below.into_iter().rev());
        }
        Ok(())
    }
}

/// A small random generator (xorshift), seeded from the clock and the
/// process: a spot check needs variety, not cryptographic quality.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Random((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `root` and the folders below it on the way to `path` (which is below
/// `root`), outermost first; none if `path` is `root` (a PATH that is a
/// file is that file, with no folder on the way).
fn folders_to(root: &[u8], path: &[u8]) -> Vec<Vec<u8>> {
    if root == path {
        return Vec::new();
    }
    let mut folders = vec![root.to_vec()];
    let mut at = if root == b"/" { 0 } else { root.len() };
    while let Some(slash) = path
        .get(at + 1..)
        .and_then(|rest| rest.iter().position(|b| *b == b'/'))
    {
        at += 1 + slash;
        folders.push(path[..at].to_vec());
    }
    folders
}

/// `n` regular files chosen at random below `roots` (reservoir sampling:
/// one pass, memory for `n` entries).
fn random_files(
    reader: &GenerationReader,
    roots: &[(Vec<u8>, Entry)],
    n: u64,
) -> Result<Vec<(Vec<u8>, Entry)>> {
    let mut rng = Random::new();
    let mut chosen: Vec<(Vec<u8>, Entry)> = Vec::new();
    let mut seen = 0u64;
    let mut consider = |path: Vec<u8>, e: Entry, chosen: &mut Vec<(Vec<u8>, Entry)>| {
        seen += 1;
        if (chosen.len() as u64) < n {
            chosen.push((path, e));
        } else {
            let k = rng.below(seen);
            if k < n {
                chosen[k as usize] = (path, e);
            }
        }
    };
    let mut stack = Vec::new();
    for (path, e) in roots {
        match e.kind {
            EntryKind::Dir => stack.push(path.clone()),
            EntryKind::File => consider(path.clone(), e.clone(), &mut chosen),
            _ => {}
        }
    }
    while let Some(dir) = stack.pop() {
        for e in reader.list_dir(names::as_path(&dir))?.unwrap_or_default() {
            if names::check_name(&e.name).is_err() {
                continue;
            }
            let child = names::join(&dir, &e.name);
            match e.kind {
                EntryKind::Dir => stack.push(child),
                EntryKind::File => consider(child, e, &mut chosen),
                _ => {}
            }
        }
    }
    chosen.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(chosen)
}

/// The absolute path of `path`, a path of the file system (relative to
/// `cwd`, or absolute), with `.` and `..` resolved by name: what `obnam
/// backup` makes of the same argument, so that `obnam verify DIR` finds
/// what `obnam backup DIR` stored, from the same folder. An empty one is
/// left to be refused.
fn live_path(cwd: &Path, path: &std::ffi::OsStr) -> Result<PathBuf> {
    if path.is_empty() {
        return Ok(PathBuf::from(path));
    }
    let out = live_paths::absolute(cwd, Path::new(path));
    // As backup takes a root written `link/` or `link/.`: the folder the
    // link leads to, at its real path; and `file/` is no folder.
    if live_paths::names_folder(path) {
        match fs::symlink_metadata(&out) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(real) = fs::canonicalize(&out) {
                    return Ok(real);
                }
            }
            Ok(meta) if !meta.is_dir() => plugin_api::bail!(
                "{} names a folder, but it is not one: give it without the /",
                names::escape(path.as_encoded_bytes())
            ),
            _ => {}
        }
    }
    Ok(out)
}

/// `obnam verify [PATH]...`.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let mut roots: Vec<Vec<u8>> = Vec::new();
    let given: Vec<OsString> = if args.is_empty() {
        // The backup plugin's setting; absent if it is not loaded.
        ctx.path_list("root")
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::into_os_string)
            .collect()
    } else {
        args
    };
    if given.is_empty() {
        plugin_api::bail!(
            "verify needs the paths to compare (the backed-up folders), as arguments or as \
             'root' in the configuration"
        );
    }
    let cwd = std::env::current_dir()?;
    let mut asked = Vec::new();
    for arg in &given {
        asked.push(
            names::parse_absolute(live_path(&cwd, arg)?.as_os_str())
                .map_err(plugin_api::Error::msg)?,
        );
    }
    // A PATH (or root) inside another, or given twice, is compared once,
    // as backup walks it once.
    for parts in crate::path_args::outermost(asked) {
        roots.push(names::from_parts(&parts));
    }
    let randomly = ctx.integer("verify-randomly")?;
    if randomly < 0 {
        // The host's range refuses it first; kept for a host that did not.
        return Err(ctx.setting_error(
            "verify-randomly",
            &format!("'{randomly}' is out of range: give a number of files, 0 for all"),
        ));
    }
    let repo = ctx.repository(false)?;
    let client = select::client(ctx)?;
    select::hold_for_reading(&repo, &client, "verify");
    let gen = select::generation(ctx, &repo, &client)?;
    let reader = repo.open_generation(&client, &gen.id)?;
    let mut entries = Vec::new();
    for root in &roots {
        match reader.lookup(names::as_path(root))? {
            Some(e) => entries.push((root.clone(), e)),
            None => plugin_api::bail!("{} is not in generation {}", escape(root), gen.id),
        }
    }
    let repository_dir = ctx.path("repository")?.filter(|r| r.is_absolute());
    let mut v = Verifier {
        ctx,
        repo: &repo,
        exclude: ctx.hook::<ExcludeCandidate>(BACKUP_EXCLUDE).ok(),
        repository_dir,
        checked: 0,
        differences: 0,
        errors: 0,
        found: ctx.output_format()?.is_json().then(Vec::new),
        unchecked: Vec::new(),
        links: LinkTable::default(),
        contents: SeenContents::default(),
    };
    if randomly > 0 {
        // A chosen file is looked up by its whole path; the folders on
        // the way are checked first, as the full walk checks them: one
        // that is now a symlink must not be followed, one that is now a
        // file or gone is a difference (once), not an error per file.
        let mut not_folders: Vec<Vec<u8>> = Vec::new();
        // The root and the folders on the way to each chosen file are
        // compared too, each once (their mode or owner changed: what a
        // restore of the file would give differs as much).
        let mut compared: std::collections::HashSet<Vec<u8>> = Default::default();
        for (path, e) in random_files(&reader, &entries, randomly as u64)? {
            if not_folders
                .iter()
                .any(|bad| names::as_path(&path).starts_with(names::as_path(bad)))
            {
                continue;
            }
            let root = roots
                .iter()
                .find(|r| names::as_path(&path).starts_with(names::as_path(r)));
            let folders = root.map_or_else(Vec::new, |r| folders_to(r, &path));
            if let Some(bad) = v.folders_on_the_way(&folders)? {
                not_folders.push(bad);
                continue;
            }
            for folder in folders {
                if !compared.insert(folder.clone()) {
                    continue;
                }
                if let Some(recorded) = reader.lookup(names::as_path(&folder))? {
                    v.entry(&folder, &recorded)?;
                }
            }
            v.entry(&path, &e)?;
        }
    } else {
        for (root, e) in &entries {
            if let Some(m) = v.entry(root, e)? {
                v.links
                    .note(root.clone(), recorded_object(e), live_object(&m));
                if m.is_dir() {
                    v.tree(&reader, root, &m)?;
                }
            }
        }
        // Names that were one file and are two on disk, or the other
        // way round: a restore would link them otherwise.
        for (path, what) in v.links.changed() {
            v.differ(&path, &what)?;
        }
    }
    if let Some(found) = v.found.take() {
        let json = serde_json::json!({
            "generation": gen.id,
            "checked": v.checked,
            "differences": found,
            "errors": v.unchecked,
        });
        ctx.outln(&serde_json::to_string_pretty(&json)?)?;
    }
    if v.differences > 0 || v.errors > 0 {
        let unchecked = match v.errors {
            0 => String::new(),
            1 => ", and 1 object could not be checked".to_string(),
            n => format!(", and {n} objects could not be checked"),
        };
        let outcome = plugin_api::Error::msg(format!(
            "verify: {} {} between generation {} and the file system{unchecked} ({} {} checked)",
            v.differences,
            if v.differences == 1 {
                "difference"
            } else {
                "differences"
            },
            gen.id,
            v.checked,
            if v.checked == 1 { "object" } else { "objects" },
        ));
        // A folder listing deleted under it reads as the files in it
        // gone from the generation: differences that are not.
        return select::unless_removed_meanwhile(&repo, &client, &gen.id, "verify", Err(outcome));
    }
    if ctx.output_format()?.is_json() || ctx.boolean("quiet")? {
        return Ok(());
    }
    ctx.outln(&format!(
        "verified {} {} against generation {}: no differences",
        v.checked,
        if v.checked == 1 { "object" } else { "objects" },
        gen.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_sample_has_the_size_asked_for() {
        let mut rng = Random::new();
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
        }
    }
}
