//! The regular files a restore is writing at the moment, so that none is
//! left behind half-written under its real name, looking restored.
//!
//! A file's content is written under its own name (a temporary name
//! would need a rename that could clash with, or overwrite, another
//! restored name); what keeps a partial file from being left is that
//! every file is registered here from its creation until it is complete
//! with its metadata, and removed if it does not get there:
//!
//! * a worker that cannot finish a file removes it ([`Partial::remove`]);
//!   so does dropping a [`Partial`] not kept (an early return, a panic
//!   caught around one entry);
//! * an interruption (Ctrl-C, `SIGTERM`, `SIGHUP`) ends the process from
//!   the host's interruption thread while the workers are still writing;
//!   the host's `run-interrupted` hook calls [`remove_all`] first, which
//!   removes every file registered and refuses to create any more, so
//!   none can appear between the hook and the end of the process.
//!
//! A second signal, or `SIGKILL`, ends the process at once, and the files
//! being written then stay as they are (the user guide says so).
//!
//! The register is global because the hook has no other way to reach
//! the restore; one process runs one restore.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fsops;

/// The files being written, by a key of their own.
struct Register {
    files: BTreeMap<u64, (Arc<OwnedFd>, Vec<u8>)>,
    next: u64,
    /// The run was interrupted: no more files may be created.
    closed: bool,
}

static WRITING: Mutex<Register> = Mutex::new(Register {
    files: BTreeMap::new(),
    next: 0,
    closed: false,
});

fn register() -> MutexGuard<'static, Register> {
    WRITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file being written: removed when dropped unless [`kept`](Self::keep).
pub struct Partial {
    key: u64,
    parent: Arc<OwnedFd>,
    name: Vec<u8>,
    settled: bool,
}

/// Create the regular file `name` in `parent` (see
/// [`fsops::create_file`]) and register it as being written. Fails if the
/// run was interrupted.
pub fn create(parent: &Arc<OwnedFd>, name: &[u8]) -> io::Result<(File, Partial)> {
    let mut reg = register();
    if reg.closed {
        return Err(io::Error::other("the run was interrupted"));
    }
    // Created under the lock, so that an interruption sees every file
    // that exists.
    let file = fsops::create_file(parent.as_fd(), name)?;
    let key = reg.next;
    reg.next += 1;
    reg.files.insert(key, (Arc::clone(parent), name.to_vec()));
    Ok((
        file,
        Partial {
            key,
            parent: Arc::clone(parent),
            name: name.to_vec(),
            settled: false,
        },
    ))
}

impl Partial {
    /// The file is complete: keep it.
    pub fn keep(mut self) {
        register().files.remove(&self.key);
        self.settled = true;
    }

    /// The file cannot be completed: remove it. Already removed by an
    /// interruption is fine.
    pub fn remove(mut self) -> io::Result<()> {
        self.settled = true;
        self.unlink()
    }

    fn unlink(&self) -> io::Result<()> {
        let mut reg = register();
        if reg.files.remove(&self.key).is_none() {
            return Ok(());
        }
        // Under the lock, like the creation.
        fsops::remove_file(self.parent.as_fd(), &self.name)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.settled {
            if let Err(e) = self.unlink() {
                plugin_api::tracing::warn!(
                    "cannot remove the unfinished file {}: {e}",
                    crate::names::escape(&self.name)
                );
            }
        }
    }
}

/// Remove every file being written, and refuse to create more: the run is
/// ending early. Returns how many were removed, and the failures.
pub fn remove_all() -> (usize, Vec<String>) {
    let mut reg = register();
    reg.closed = true;
    let mut removed = 0;
    let mut failed = Vec::new();
    for (_, (parent, name)) in std::mem::take(&mut reg.files) {
        match fsops::remove_file(parent.as_fd(), &name) {
            Ok(()) => removed += 1,
            Err(e) => failed.push(format!("{}: {e}", crate::names::escape(&name))),
        }
    }
    (removed, failed)
}

/// The `run-interrupted` callback: remove the files being written.
pub fn on_interrupted(
    _: &plugin_api::Context<'_>,
    _: &mut plugin_api::serde_json::Value,
) -> plugin_api::Result<()> {
    let (removed, failed) = remove_all();
    if removed > 0 {
        plugin_api::tracing::info!("restore: removed {removed} unfinished files on interruption");
    }
    for f in failed {
        plugin_api::tracing::warn!(
            "restore: cannot remove an unfinished file on interruption: {f}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, as the register is global: its steps in order.
    #[test]
    fn unfinished_files_are_removed_and_finished_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(
            rustix::fs::open(
                tmp.path(),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
        );
        let exists = |n: &str| tmp.path().join(n).exists();
        let (_, kept) = create(&dir, b"kept").unwrap();
        kept.keep();
        let (_, failed) = create(&dir, b"failed").unwrap();
        failed.remove().unwrap();
        let (_, dropped) = create(&dir, b"dropped").unwrap();
        drop(dropped);
        let (_, open) = create(&dir, b"open").unwrap();
        assert!(exists("kept") && !exists("failed") && !exists("dropped") && exists("open"));

        let (removed, failures) = remove_all();
        assert_eq!((removed, failures.len()), (1, 0));
        assert!(!exists("open") && exists("kept"));
        // Removed already: its own removal is no error.
        open.remove().unwrap();
        assert!(create(&dir, b"late").is_err());
        assert!(!exists("late"));
    }
}
