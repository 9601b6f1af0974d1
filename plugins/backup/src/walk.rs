//! Finding what to back up: a directory's children in a stable order, and
//! the `backup-exclude` hook that may leave any of them out.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use plugin_api::payloads::{ExcludeCandidate, FileStat};
use plugin_api::{Context, Hook, Result};

/// The children of a directory, sorted by name bytes, each with its
/// `lstat` or the error that stat gave.
///
/// Each child is stat'ed through the open folder (`statx` on the folder's
/// descriptor and the child's name), not by its full path: the kernel then
/// does not walk the path from the root again for every file, which was a
/// tenth of a no-change backup's time.
///
/// A folder's children are all held at once (to be sorted), so each
/// keeps only what the walk uses of its `stat` ([`FileStat`], less than
/// half of a `Metadata`), and the list gives back the room it grew
/// into: a folder of 100,000 files held 27 MB of them, now 13.
pub fn children(dir: &Path) -> std::io::Result<Vec<Child>> {
    let mut out: Vec<Child> = std::fs::read_dir(dir)?
        .map(|e| {
            e.map(|e| {
                let path = e.path();
                Child {
                    name_at: path.as_os_str().len() - path.file_name().map_or(0, |n| n.len()),
                    path,
                    meta: e.metadata().map(|m| FileStat::from_metadata(&m)),
                }
            })
        })
        .collect::<std::io::Result<_>>()?;
    out.shrink_to_fit();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(out)
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
}

impl<'a, 'c> Excluder<'a, 'c> {
    /// An excluder for one run.
    pub fn new(ctx: &'a Context<'c>, repository_dir: Option<PathBuf>) -> Result<Self> {
        Ok(Excluder {
            ctx,
            hook: ctx.hook::<ExcludeCandidate>(plugin_api::payloads::BACKUP_EXCLUDE)?,
            payload: ExcludeCandidate::default(),
            repository_dir,
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
        if self.repository_dir.as_deref() == Some(path) {
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
