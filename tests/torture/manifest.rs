//! What a tree is, for the model: every entry's type, metadata and
//! content digest, by path.
//!
//! A backup that reported success must restore to exactly its tree's
//! manifest: names, types, mode, owner, modification time to the
//! nanosecond, size, the SHA-256 of the content, symlink targets, which
//! files are hard links of each other, and — for files that had holes —
//! that the restored file has holes too (obnam promises to keep sparse
//! files sparse). The manifest of the source is taken before the backup
//! starts; the harness never changes a tree while one of its backups runs.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Type, metadata and content digest, as text (compared exactly).
    pub desc: String,
    /// The file had holes: the restored one must have some too.
    pub holes: bool,
    /// Just the type and content (for checkpoints: see [`Manifest::contains_file`]).
    pub content: String,
}

/// A tree, by path relative to its root (the root itself is `""`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<String, Entry>,
}

impl Manifest {
    /// The manifest of the tree at `root`.
    pub fn of(root: &Path) -> Manifest {
        let mut entries = BTreeMap::new();
        let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
        walk(root, root, &mut entries, &mut inodes);
        // A hard-link group is named by its first path, so that the same
        // grouping gives the same text whatever the inode numbers are.
        for mut paths in inodes.into_values() {
            if paths.len() < 2 {
                continue;
            }
            paths.sort();
            for p in &paths {
                let e = entries.get_mut(p).expect("walked path");
                e.desc.push_str(&format!(" linked-with={}", paths[0]));
            }
        }
        Manifest { entries }
    }

    /// A short digest of the whole manifest, for the log.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, e) in &self.entries {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(e.desc.as_bytes());
            h.update([u8::from(e.holes), 0]);
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// How `restored` differs from this manifest (empty: it is the same).
    pub fn differences(&self, restored: &Manifest) -> Vec<String> {
        let mut diffs = Vec::new();
        for (path, want) in &self.entries {
            match restored.entries.get(path) {
                None => diffs.push(format!("missing: {path:?} ({})", want.desc)),
                Some(got) if got.desc != want.desc => {
                    diffs.push(format!("{path:?}: want {} / got {}", want.desc, got.desc))
                }
                Some(got) if want.holes && !got.holes => diffs.push(format!(
                    "{path:?}: the original had holes, the restored file has none"
                )),
                Some(_) => {}
            }
        }
        for path in restored.entries.keys() {
            if !self.entries.contains_key(path) {
                diffs.push(format!("extra: {path:?}"));
            }
        }
        diffs
    }

    /// Whether this manifest has a file or symlink at `path` with the
    /// same type and content as `entry`.
    pub fn contains_content(&self, path: &str, entry: &Entry) -> bool {
        self.entries
            .get(path)
            .is_some_and(|e| e.content == entry.content)
    }
}

fn walk(
    root: &Path,
    path: &Path,
    entries: &mut BTreeMap<String, Entry>,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) {
    let rel = String::from_utf8_lossy(
        path.strip_prefix(root)
            .expect("below root")
            .as_os_str()
            .as_bytes(),
    )
    .into_owned();
    let meta =
        fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let ft = meta.file_type();
    let common = format!(
        "mode={:o} uid={} gid={} mtime={}.{:09}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let (kind, content, holes) = if ft.is_dir() {
        ("dir".to_string(), "dir".to_string(), false)
    } else if ft.is_file() {
        let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let sum: String = Sha256::digest(&data)[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
        let content = format!("file size={} sha256={sum}", meta.len());
        let holes = meta.blocks() * 512 < meta.len();
        (format!("{content} nlink={}", meta.nlink()), content, holes)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).expect("readlink");
        let content = format!("symlink -> {:?}", target.as_os_str());
        (content.clone(), content, false)
    } else {
        panic!(
            "{}: the harness makes only folders, files and symlinks",
            path.display()
        );
    };
    entries.insert(
        rel,
        Entry {
            desc: format!("{kind} {common}"),
            holes,
            content,
        },
    );
    if ft.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .expect("read_dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        children.sort();
        for child in children {
            walk(root, &child, entries, inodes);
        }
    }
}
