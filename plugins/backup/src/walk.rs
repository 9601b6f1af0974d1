//! Finding what to back up: a directory's children in a stable order, and
//! the `backup-exclude` hook that may leave any of them out.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use plugin_api::payloads::{ExcludeCandidate, FileStat};
use plugin_api::{Context, Hook, Result};

/// The children of the directory the walk saw at `dir`, as `(device,
/// inode)` `seen`, sorted by name bytes, each with its `lstat` or the
/// error that stat gave.
///
/// The folder is opened with `O_NOFOLLOW`, and what was opened must be
/// the folder the walk saw: whoever can write in a backed-up folder can
/// put a symbolic link (to `/etc`, say) in a subfolder's place between
/// the walk's `lstat` and this listing, and a listing that followed it
/// would store what the link points to as if it were in the subfolder.
/// The same holds for a folder higher up the path being replaced: the
/// device and inode of the folder opened are checked against those the
/// walk read through its parent's open descriptor, so a path that now
/// leads elsewhere is refused, not listed.
///
/// Each child is stat'ed through the open folder (`fstatat` on the
/// folder's descriptor and the child's name), not by its full path: the
/// kernel then does not walk the path from the root again for every file,
/// which was a tenth of a no-change backup's time.
///
/// A folder's children are all held at once (to be sorted), so each
/// keeps only what the walk uses of its `stat` ([`FileStat`], less than
/// half of a `Metadata`), and the list gives back the room it grew
/// into: a folder of 100,000 files held 27 MB of them, now 13.
///
/// A folder on a file system that shows the kernel's state rather than
/// holding files ([`plugin_api::live_paths::kernel_view`]: `/proc`, `/sys`, ...) is listed as
/// empty, with its kind: reading its files blocks for ever
/// (`/proc/kmsg`, a tracing pipe) or yields hundreds of GiB
/// (`/proc/PID/pagemap`), and none of it can be restored.
pub fn children(dir: &Path, seen: (u64, u64)) -> std::io::Result<Listing> {
    use rustix::fs::{AtFlags, Dir, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // Listing a folder stamps its access time; `open_unseen` spares it.
    let fd = match plugin_api::live_paths::open_unseen(dir, flags) {
        Ok(fd) => fd,
        // A symlink fails with ELOOP or ENOTDIR: say what is there now.
        Err(e) => return Err(replaced(dir).unwrap_or(e)),
    };
    let opened = rustix::fs::fstat(&fd)?;
    if (opened.st_dev as u64, opened.st_ino as u64) != seen {
        return Err(std::io::Error::other(
            "it was replaced by another folder since it was scanned; not backed up",
        ));
    }
    if let Some(kind) = plugin_api::live_paths::kernel_view(&fd) {
        return Ok(Listing {
            children: Vec::new(),
            kernel_view: Some(kind),
        });
    }
    let mut list = Dir::new(fd)?;
    let base = dir.as_os_str().as_bytes();
    let mut out: Vec<Child> = Vec::new();
    while let Some(entry) = list.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let meta = rustix::fs::statat(list.fd()?, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| file_stat(&st))
            .map_err(std::io::Error::from);
        let mut path = Vec::with_capacity(base.len() + 1 + name.len());
        path.extend_from_slice(base);
        if !base.ends_with(b"/") {
            path.push(b'/');
        }
        let name_at = path.len();
        path.extend_from_slice(name);
        out.push(Child {
            path: PathBuf::from(std::ffi::OsString::from_vec(path)),
            meta,
            name_at,
        });
    }
    out.shrink_to_fit();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Listing {
        children: out,
        kernel_view: None,
    })
}

/// A folder's children, as [`children`] lists them.
#[derive(Default)]
pub struct Listing {
    pub children: Vec<Child>,
    /// The kind of file system, if the folder is on one that shows the
    /// kernel's state (its children are then not listed).
    pub kernel_view: Option<&'static str>,
}

/// What is at `dir` now, if it is not a folder (the open of a folder
/// failed): an error saying so.
fn replaced(dir: &Path) -> Option<std::io::Error> {
    let now = std::fs::symlink_metadata(dir)
        .ok()
        .filter(|m| !m.is_dir())?;
    Some(std::io::Error::other(format!(
        "it changed into {} since it was scanned; not backed up",
        crate::content::what(&now)
    )))
}

/// The [`FileStat`] of a `stat` made through a folder's descriptor.
// The `stat` fields' types differ between architectures: the casts are
// the identity on some of them.
#[allow(clippy::unnecessary_cast)]
fn file_stat(st: &rustix::fs::Stat) -> FileStat {
    FileStat {
        mode: st.st_mode as u32,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        size: st.st_size as u64,
        mtime: st.st_mtime as i64,
        mtime_ns: st.st_mtime_nsec as u32,
        ctime: st.st_ctime as i64,
        ctime_ns: st.st_ctime_nsec as u32,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        nlink: st.st_nlink as u64,
        rdev: st.st_rdev as u64,
    }
}

/// One child of a folder, as [`children`] found it.
pub struct Child {
    pub path: PathBuf,
    pub meta: std::io::Result<FileStat>,
    /// Where the name starts in `path`: found once, not parsed from the
    /// path again at every comparison of the sort.
    name_at: usize,
}

impl Child {
    /// The child's name (the last component of its path).
    pub fn name(&self) -> &[u8] {
        &self.path.as_os_str().as_bytes()[self.name_at..]
    }
}

/// Asks the `backup-exclude` hook about each candidate.
pub struct Excluder<'a, 'c> {
    ctx: &'a Context<'c>,
    hook: Hook<ExcludeCandidate>,
    payload: ExcludeCandidate,
    /// The repository's own folder, never backed up into itself.
    repository_dir: Option<PathBuf>,
    /// The same folder's device and inode: the walk may reach it by
    /// another path than the one `--repository` gives (a symbolic link on
    /// the way to either, a bind mount).
    repository_identity: Option<(u64, u64)>,
}

impl<'a, 'c> Excluder<'a, 'c> {
    /// An excluder for one run.
    pub fn new(ctx: &'a Context<'c>, repository_dir: Option<PathBuf>) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let repository_identity = repository_dir
            .as_deref()
            .and_then(|dir| std::fs::metadata(dir).ok())
            .filter(|m| m.is_dir())
            .map(|m| (m.dev(), m.ino()));
        Ok(Excluder {
            ctx,
            hook: ctx.hook::<ExcludeCandidate>(plugin_api::payloads::BACKUP_EXCLUDE)?,
            payload: ExcludeCandidate::default(),
            repository_dir,
            repository_identity,
        })
    }

    /// Why `path` is to be left out, or `None` to back it up.
    pub fn reason(
        &mut self,
        path: &Path,
        stat: FileStat,
        root: &Path,
        root_stat: FileStat,
        files_seen: u64,
    ) -> Result<Option<String>> {
        let is_repository = self.repository_dir.as_deref() == Some(path)
            || (stat.mode & 0o170000 == 0o040000
                && self.repository_identity == Some((stat.dev, stat.ino)));
        if is_repository {
            return Ok(Some("it is the repository".into()));
        }
        let p = &mut self.payload;
        p.path.clear();
        p.path.extend_from_copy_slice(path.as_os_str().as_bytes());
        p.root.clear();
        p.root.extend_from_copy_slice(root.as_os_str().as_bytes());
        p.stat = stat;
        p.root_stat = root_stat;
        p.files_seen = files_seen;
        p.exclude = false;
        p.reason.clear();
        self.ctx.call(self.hook, p)?;
        Ok(p.exclude.then(|| {
            if p.reason.is_empty() {
                "excluded by a plugin".to_string()
            } else {
                p.reason.to_string()
            }
        }))
    }
}

/// `lstat` of a path.
pub fn lstat(path: &Path) -> std::io::Result<FileStat> {
    std::fs::symlink_metadata(path).map(|m| FileStat::from_metadata(&m))
}

/// Whether the folder at `path` (the root of a file system of its own) is
/// where `obnam mount` shows a repository: a FUSE file system of the
/// type `fuse.obnam`, by `/proc/self/mountinfo`. Only a mount point on
/// FUSE is looked up, so the table is read only for those.
pub fn is_obnam_mount(path: &Path) -> bool {
    const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;
    // `f_type` is signed, and 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let on_fuse =
        rustix::fs::statfs(path).is_ok_and(|st| st.f_type as u64 & 0xffff_ffff == FUSE_SUPER_MAGIC);
    if !on_fuse {
        return false;
    }
    let Ok(table) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.as_os_str().as_bytes();
    table.split(|b| *b == b'\n').any(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            return false;
        };
        fields
            .get(4)
            .is_some_and(|point| unescape_mountinfo(point) == wanted)
            && fields.get(dash + 1) == Some(&&b"fuse.obnam"[..])
    })
}

/// A mount point as `/proc/self/mountinfo` writes it: a space, tab,
/// newline and backslash as `\NNN` (octal).
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}
