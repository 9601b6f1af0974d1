//! A repository in a local folder (OpenDAL's fs service, for listing and
//! deleting). Writes go through a temporary file in `.tmp/`, synced and
//! renamed into place, on the calling thread (see
//! [`Backend::put_direct`]); a new object that must not replace another
//! is made by a hard link, and the process umask is set so that objects
//! are private to their owner. Reads of a range and of a whole object are
//! plain `pread`s on the calling thread, through files kept open (see
//! [`Backend::read_range_direct`]). Every read of an object, whole or a
//! range, refuses what is not a regular file under its name (a FIFO, a
//! device, a socket, a folder) as damage to that object, without waiting
//! on it: so no command ever blocks on one. A write renames a new file
//! into place, and a listing lists only regular files (and links to
//! them) as objects: neither opens what is there. A listing of one
//! folder can also name the rest apart
//! ([`Backend::list_direct_with_others`]), so that a reader of a folder
//! whose every name is an object's can name what took an object's place
//! as damage to it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opendal::{services, Operator};

use super::{Backend, Capabilities, FolderListing};
use crate::fault_injection::Op;
use crate::storage::{NotAnObject, Storage, StorageError};

/// How many objects are kept open for reading at most: a restore reads
/// many blobs of each pack, a few packs at a time.
const OPEN_FILES: usize = 64;

/// How many folders deep a recursive listing goes below the folder
/// listed (the deepest keys, `packs/XX/ID`, are one below `packs/`).
const MAX_LIST_DEPTH: usize = 8;

/// A local folder.
pub struct Local {
    root: PathBuf,
    /// Whether this open is to create the folder (it did not exist).
    made_root: bool,
    /// Whether opening made `.tmp/` (OpenDAL makes it) in a folder that
    /// was there: a failed creation in an empty mount point leaves none.
    made_tmp: bool,
    /// The folders above the root that did not exist either, nearest
    /// first.
    made_above: Vec<PathBuf>,
    /// Objects recently read, open. An object is never changed once
    /// written; one deleted meanwhile reads as it was, as through any
    /// reader opened before the delete.
    open: Mutex<HashMap<String, Arc<File>>>,
}

impl Local {
    /// Object `key`, open for reading.
    fn file(&self, key: &str) -> std::io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(key) {
            return Ok(f.clone());
        }
        let f = Arc::new(self.open_object(key)?);
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        open.insert(key.to_string(), f.clone());
        Ok(f)
    }

    /// Open object `key` for reading, if it is a regular file (a symbolic
    /// link counts as what it points to, as in a listing). Anything else
    /// under an object's name is damage, refused with an error naming what
    /// it is ([`NotAnObject`]): a FIFO would block the open until a writer
    /// came, forever, and a read of a device may never end. So it is
    /// looked at before it is opened (opening a device may do something
    /// of its own), opened with `O_NONBLOCK` (a FIFO put there between the
    /// look and the open does not block it; for a regular file the flag
    /// changes nothing) and `O_NOCTTY`, and looked at again once open.
    fn open_object(&self, key: &str) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root.join(key);
        let meta = match std::fs::metadata(&path) {
            // A symbolic link whose target is gone is there, and is no
            // object: damage, as anything else under an object's name
            // that cannot be read as one (a listing shows it apart).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match std::fs::symlink_metadata(&path) {
                    Ok(link) if link.file_type().is_symlink() => {
                        Err(std::io::Error::other(NotAnObject(
                            "it is a symbolic link to nothing, not a regular file (damaged, \
                             or not written by obnam)"
                                .to_string(),
                        )))
                    }
                    _ => Err(e),
                };
            }
            meta => meta?,
        };
        not_an_object(&meta)?;
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(&path)?;
        not_an_object(&f.metadata()?)?;
        Ok(f)
    }

    /// The entries directly in `folder` (a key prefix ending in `/`), each
    /// with what it is: a symbolic link counts as what it points to, a
    /// dangling one as [`Kind::Other`]. The kind of any other entry comes
    /// from the directory entry, with no `stat`. A name that is not UTF-8
    /// is no key of ours, and left out; a folder that does not exist holds
    /// nothing.
    fn entries(&self, folder: &str) -> std::io::Result<Vec<(String, Kind)>> {
        let entries = match std::fs::read_dir(self.root.join(folder)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let (is_file, is_dir) = if kind.is_symlink() {
                match std::fs::metadata(entry.path()) {
                    Ok(target) => (target.is_file(), target.is_dir()),
                    Err(_) => (false, false),
                }
            } else {
                (kind.is_file(), kind.is_dir())
            };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let kind = match (is_file, is_dir) {
                (true, _) => Kind::File,
                (_, true) => Kind::Folder,
                _ => Kind::Other,
            };
            out.push((name, kind));
        }
        Ok(out)
    }

    /// See [`Backend::put_direct`].
    fn put_whole(&self, key: &str, data: &[u8]) -> std::io::Result<()> {
        use std::io::{ErrorKind, Write};
        let tmp_dir = self.root.join(".tmp");
        let tmp = tmp_dir.join(crate::ids::ObjectId::random().to_hex());
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
        };
        let mut file = match create() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(&tmp_dir)?;
                create()?
            }
            other => other?,
        };
        let written = file
            .write_all(data)
            .and_then(|()| file.sync_all())
            .and_then(|()| {
                let target = self.root.join(key);
                match std::fs::rename(&tmp, &target) {
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        if let Some(parent) = target.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::rename(&tmp, &target)
                    }
                    other => other,
                }
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// What an entry of a folder is, for a listing.
enum Kind {
    /// A regular file, or a link to one: an object.
    File,
    /// A folder, or a link to one.
    Folder,
    /// Anything else: a FIFO, a socket, a device, a dangling link.
    Other,
}

/// Refuse what is not a regular file where an object should be (see
/// [`Local::open_object`]), saying what it is.
fn not_an_object(meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "of another kind"
    };
    Err(std::io::Error::other(NotAnObject(format!(
        "it is {what}, not a regular file (damaged, or not written by obnam)"
    ))))
}

/// A folder's name for messages (escaped if not UTF-8).
fn shown(path: &Path) -> String {
    crate::location::shown(path.as_os_str())
}

/// Open the folder `root` (made when first written to).
pub fn open(root: &Path, url: &str) -> Result<(Box<dyn Backend>, Operator), StorageError> {
    let setup = |message: String| StorageError::Setup {
        url: url.to_string(),
        message,
    };
    // Looked at here, so that a folder that cannot be used (a name too
    // long, a part that is a file, no permission) is named in our words
    // with the system's reason, not as OpenDAL's failure to canonicalize
    // its "root".
    let made_root = match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => false,
        Ok(_) => return Err(setup("it is not a folder".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(setup(format!("cannot look at {}: {e}", shown(root)))),
    };
    // The folders above the root that opening will make too (OpenDAL
    // makes the whole way down): a reader pointed at a mistyped path
    // leaves none of them behind ([`Backend::abandon_creation`]).
    let made_above: Vec<PathBuf> = match made_root {
        false => Vec::new(),
        true => root
            .ancestors()
            .skip(1)
            .take_while(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_err())
            .map(Path::to_path_buf)
            .collect(),
    };
    // Repository objects are private to their owner: with umask 077 the
    // objects (and `.tmp/`'s files, renamed into place) are created 0600
    // and the folders 0700. OpenDAL's fs service takes no permissions to
    // create with, so the process umask is the one way to say it; the
    // host creates nothing else that the umask would make less readable.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // OpenDAL takes its root as text, and a folder's name need not be
    // UTF-8. It canonicalizes the root, so such a folder is handed to it
    // as the link /proc/self/fd/N to the folder held open here, which
    // it resolves to the real name (bytes and all) and keeps.
    let held = match root.to_str() {
        Some(_) => None,
        None => {
            std::fs::create_dir_all(root)
                .map_err(|e| setup(format!("cannot make the folder {}: {e}", shown(root))))?;
            let dir = File::open(root)
                .map_err(|e| setup(format!("cannot open the folder {}: {e}", shown(root))))?;
            Some(dir)
        }
    };
    let opendal_root = match &held {
        Some(dir) => {
            use std::os::fd::AsRawFd;
            PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        }
        None => root.to_path_buf(),
    };
    let tmp = opendal_root.join(".tmp");
    let made_tmp = std::fs::symlink_metadata(&tmp).is_err();
    let builder = services::Fs::default()
        .root(&opendal_root.to_string_lossy())
        .atomic_write_dir(&tmp.to_string_lossy());
    // OpenDAL makes a missing folder here; its failure speaks of its
    // "root dir": say it in our words, with the system's reason.
    let op = Operator::new(builder).map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                // A folder that is there but cannot be entered (no
                // permission) is not one obnam tried to make.
                let what = if made_root { "make" } else { "use" };
                return setup(format!("cannot {what} the folder {}: {io}", shown(root)));
            }
            cause = c.source();
        }
        super::setup_error(url, e)
    })?;
    drop(held);
    let backend = Local {
        root: root.to_path_buf(),
        made_root,
        made_tmp,
        made_above,
        open: Mutex::new(HashMap::new()),
    };
    Ok((Box::new(backend), op))
}

impl Backend for Local {
    /// A write costs little more than the copy, and a ranged read little
    /// more than the bytes it returns. One pack in flight: packs are
    /// written by the thread that sealed them, and writing one (a few
    /// milliseconds) takes less time than filling the next, so a second
    /// seldom had to wait, and held 8 MiB more at the peak.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            background_writes: false,
            packs_in_flight: 1,
            whole_pack_reads: false,
            // A local read costs no round trip: a few threads hide the
            // system calls of one another.
            parallel_reads: 4,
            // A record read from the folder costs what one read from
            // the cache would, and is checked against its checksum.
            cache_records: false,
        }
    }

    /// Written under a temporary name, then hard-linked to `key`, which
    /// fails if `key` exists.
    fn create_new(&self, storage: &Storage, key: &str, data: Vec<u8>) -> Result<(), StorageError> {
        let tmp = format!(".new-{}", crate::ids::ObjectId::random().to_hex());
        storage.put_counted(&tmp, data.into())?;
        let linked = std::fs::hard_link(self.root.join(&tmp), self.root.join(key));
        let _ = std::fs::remove_file(self.root.join(&tmp));
        match linked {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(StorageError::Failed {
                url: storage.url().to_string(),
                op: "write",
                key: key.to_string(),
                message: e.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn read_range_direct(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Option<std::io::Result<Vec<u8>>> {
        let read = || {
            let f = self.file(key)?;
            let len = usize::try_from(len).map_err(std::io::Error::other)?;
            // Read into the buffer's spare room, not into zeros written
            // first: zeroing every chunk read was a twentieth of a
            // restore's processor time.
            let mut data = Vec::with_capacity(len);
            while data.len() < len {
                let at = offset + data.len() as u64;
                match rustix::io::pread(&*f, rustix::buffer::spare_capacity(&mut data), at) {
                    Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(data)
        };
        Some(read())
    }

    /// Written to a new file in `.tmp/`, synced, and renamed to `key`
    /// (replacing what is there, as OpenDAL's atomic write does), making
    /// the folders on the way as needed. A run killed meanwhile leaves only
    /// the temporary file, which a later run removes
    /// ([`remove_stale_temporaries`](Backend::remove_stale_temporaries)).
    fn put_direct(&self, key: &str, data: &[u8]) -> Option<std::io::Result<()>> {
        Some(self.put_whole(key, data))
    }

    fn read_limited_direct(&self, key: &str, limit: u64) -> Option<std::io::Result<Vec<u8>>> {
        let read = || {
            // Opened afresh, not kept: read whole once (a pack checked,
            // an index object).
            let mut f = self.open_object(key)?;
            let len = f.metadata()?.len();
            if len > limit {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            let mut data = Vec::with_capacity(len as usize);
            // One byte more than the limit shows a file that grew.
            (&mut f)
                .take(limit.saturating_add(1))
                .read_to_end(&mut data)?;
            if data.len() as u64 > limit {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            Ok(data)
        };
        Some(read())
    }

    /// Files, as OpenDAL's fs service lists them: a symbolic link counts
    /// as what it points to (an object moved elsewhere and linked back
    /// reads through the link, so it must be listed too, or a backup would
    /// take its pack for lost); a dangling one as nothing. The kind of
    /// any other entry comes from the directory entry, with no `stat`.
    /// Keys are at most a few folders deep, so a descent stops at
    /// `MAX_LIST_DEPTH` (a link to a folder above it would loop).
    fn list_direct(&self, folder: &str, recursive: bool) -> Option<std::io::Result<Vec<String>>> {
        let mut out = Vec::new();
        // Folders still to read: key prefixes ending in `/`, and depth.
        let mut folders = vec![(folder.to_string(), 0)];
        while let Some((prefix, depth)) = folders.pop() {
            let entries = match self.entries(&prefix) {
                Ok(entries) => entries,
                Err(e) => return Some(Err(e)),
            };
            for (name, kind) in entries {
                match kind {
                    Kind::File => out.push(match recursive {
                        true => format!("{prefix}{name}"),
                        false => name,
                    }),
                    Kind::Folder if recursive && depth < MAX_LIST_DEPTH => {
                        folders.push((format!("{prefix}{name}/"), depth + 1));
                    }
                    Kind::Folder | Kind::Other => {}
                }
            }
        }
        Some(Ok(out))
    }

    /// One `readdir` of `folder`: the regular files (and links to them),
    /// and the names of everything else, which a folder of objects
    /// holds only where something took an object's place.
    fn list_direct_with_others(&self, folder: &str) -> Option<std::io::Result<FolderListing>> {
        let listed = self.entries(folder).map(|entries| {
            let mut listing = FolderListing::default();
            for (name, kind) in entries {
                match kind {
                    Kind::File => listing.objects.push(name),
                    Kind::Folder | Kind::Other => listing.not_objects.push(name),
                }
            }
            listing
        });
        Some(listed)
    }

    /// Only in `.tmp/` itself, a real folder: the files are looked at and
    /// removed relative to the folder opened without following a symbolic
    /// link, so that a `.tmp` that someone replaced with a link to another
    /// folder (`/etc`, a home folder) has nothing there deleted.
    fn remove_stale_temporaries(&self, storage: &Storage, cutoff: SystemTime) -> usize {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let tmp = self.root.join(".tmp");
        let folder = match rustix::fs::open(
            &tmp,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return 0,
            Err(e) => {
                tracing::warn!(
                    "{}: left .tmp/ alone (nothing in it is deleted): it is not a folder \
                     obnam can open (a symbolic link?): {e}",
                    storage.url()
                );
                return 0;
            }
        };
        if !storage.faults_allow(Op::List, ".tmp/") {
            return 0;
        }
        let Ok(entries) = rustix::fs::Dir::read_from(&folder) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_bytes();
                name != b"." && name != b".."
            })
            .filter(|e| {
                rustix::fs::statat(&folder, e.file_name(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(
                    |st| {
                        let modified = std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(
                            st.st_mtime.max(0) as u64,
                            st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
                        ));
                        FileType::from_raw_mode(st.st_mode) != FileType::Directory
                            && modified.is_some_and(|t| t < cutoff)
                    },
                )
            })
            .filter(|e| rustix::fs::unlinkat(&folder, e.file_name(), AtFlags::empty()).is_ok())
            .count()
    }

    /// The folders only this process's creation made (`creating/` stays
    /// after a creation claim), if empty.
    fn abandon_creation(&self) {
        if self.made_root {
            for folder in [".tmp", "creating"] {
                let _ = std::fs::remove_dir(self.root.join(folder));
            }
            let _ = std::fs::remove_dir(&self.root);
            // Nearest first; each only while empty.
            for folder in &self.made_above {
                if std::fs::remove_dir(folder).is_err() {
                    break;
                }
            }
        } else if self.made_tmp {
            let _ = std::fs::remove_dir(self.root.join(".tmp"));
        }
    }
}
