//! The clients' trees, and how the schedule changes them between runs:
//! new, changed, truncated, deleted and renamed files, hard links,
//! symlinks, sparse files, copies of other files (for deduplication),
//! folders, changed modes and times, and files whose content changed
//! while their size, mode and modification time did not (replaced by a
//! rename, or rewritten in place with their mtime set back), which only
//! their inode number or change time tells.
//!
//! Every choice comes from the step's [`Rng`], and the tree's state comes
//! only from earlier choices, so a seed replays the same trees.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::rng::Rng;

/// A client's tree of files.
pub struct Source {
    pub root: PathBuf,
    /// For fresh names.
    counter: u64,
}

/// What is in a tree, in a fixed order.
struct Listing {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    links: Vec<PathBuf>,
}

impl Source {
    /// A new tree at `root`, with some folders and files.
    pub fn create(root: PathBuf, rng: &mut Rng) -> Source {
        fs::create_dir_all(&root).expect("source root");
        let mut source = Source { root, counter: 0 };
        for _ in 0..3 {
            source.new_dir(rng);
        }
        for _ in 0..20 {
            source.new_file(rng);
        }
        source
    }

    /// Change the tree with `count` random edits; returns what was done.
    pub fn mutate(&mut self, rng: &mut Rng, count: usize) -> Vec<String> {
        (0..count).map(|_| self.mutate_once(rng)).collect()
    }

    fn mutate_once(&mut self, rng: &mut Rng) -> String {
        match rng.below(100) {
            0..=24 => self.new_file(rng),
            25..=40 => self.change_file(rng),
            41..=43 => self.replace_keeping_mtime(rng),
            44..=46 => self.rewrite_keeping_mtime(rng),
            47..=54 => self.delete(rng),
            55..=62 => self.rename(rng),
            63..=68 => self.hard_link(rng),
            69..=73 => self.symlink(rng),
            74..=77 => self.new_dir(rng),
            78..=83 => self.sparse_file(rng),
            84..=91 => self.chmod(rng),
            _ => self.touch(rng),
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    fn listing(&self) -> Listing {
        let mut l = Listing {
            files: Vec::new(),
            dirs: vec![self.root.clone()],
            links: Vec::new(),
        };
        fn walk(dir: &Path, l: &mut Listing) {
            let mut children: Vec<_> = fs::read_dir(dir)
                .expect("read_dir")
                .map(|e| e.expect("entry").path())
                .collect();
            children.sort();
            for p in children {
                let ft = fs::symlink_metadata(&p).expect("stat").file_type();
                if ft.is_dir() {
                    l.dirs.push(p.clone());
                    walk(&p, l);
                } else if ft.is_symlink() {
                    l.links.push(p);
                } else {
                    l.files.push(p);
                }
            }
        }
        walk(&self.root, &mut l);
        l
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .display()
            .to_string()
    }

    /// A size: mostly small, sometimes large enough for several chunks
    /// and checkpoints.
    fn size(rng: &mut Rng) -> usize {
        match rng.below(20) {
            0..=7 => rng.below(2048) as usize,
            8..=15 => rng.range(2048, 65536) as usize,
            16..=18 => rng.range(65536, 600_000) as usize,
            _ => rng.range(600_000, 2_500_000) as usize,
        }
    }

    fn new_file(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        let dir = l.dirs[rng.index(l.dirs.len())].clone();
        let path = dir.join(self.fresh("f"));
        let size = Self::size(rng);
        let copy_from = rng.chance(0.2).then(|| rng.index(l.files.len()));
        let data = match copy_from {
            // A copy of another file, maybe with a change: deduplication.
            Some(i) if !l.files.is_empty() => {
                let mut d = fs::read(&l.files[i]).expect("read");
                if !d.is_empty() && rng.chance(0.5) {
                    let at = rng.index(d.len());
                    d[at] ^= 0x5a;
                }
                d
            }
            _ => rng.bytes(size),
        };
        fs::write(&path, &data).expect("write");
        format!("new {} ({} B)", self.rel(&path), data.len())
    }

    fn change_file(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        if l.files.is_empty() {
            return self.new_file(rng);
        }
        let path = l.files[rng.index(l.files.len())].clone();
        make_writable(&path);
        let len = fs::metadata(&path).expect("stat").len();
        let how = rng.below(3);
        let mut f = OpenOptions::new().write(true).open(&path).expect("open");
        let what = match how {
            0 => {
                let at = rng.below(len + 1);
                let n = rng.range(1, 100_000) as usize;
                let data = rng.bytes(n);
                f.seek(SeekFrom::Start(at)).expect("seek");
                f.write_all(&data).expect("write");
                format!("overwrite {} B at {at}", data.len())
            }
            1 => {
                let n = rng.range(1, 300_000) as usize;
                let data = rng.bytes(n);
                f.seek(SeekFrom::End(0)).expect("seek");
                f.write_all(&data).expect("write");
                format!("append {} B", data.len())
            }
            _ => {
                let to = rng.below(len + 1);
                f.set_len(to).expect("truncate");
                format!("truncate to {to}")
            }
        };
        format!("change {}: {what}", self.rel(&path))
    }

    /// A file with content, small enough to read whole and write again
    /// (not the large sparse files), if there is one.
    fn file_to_rewrite(&self, rng: &mut Rng) -> Option<PathBuf> {
        let files: Vec<PathBuf> = self
            .listing()
            .files
            .into_iter()
            .filter(|p| {
                let len = fs::symlink_metadata(p).expect("stat").len();
                len > 0 && len <= 3_000_000
            })
            .collect();
        (!files.is_empty()).then(|| files[rng.index(files.len())].clone())
    }

    /// Replace a file by another of the same size, mode and modification
    /// time, written beside it and renamed over it (as an editor that
    /// keeps the times, or `cp -p` of another version, does): only its
    /// inode number and change time show the backup it is not the file
    /// backed up before. The model expects the new content restored.
    fn replace_keeping_mtime(&mut self, rng: &mut Rng) -> String {
        let Some(path) = self.file_to_rewrite(rng) else {
            return self.new_file(rng);
        };
        let old = fs::symlink_metadata(&path).expect("stat");
        let mut data = fs::read(&path).expect("read");
        let how = if rng.chance(0.5) {
            // All new: every chunk is new.
            let fresh = rng.bytes(data.len());
            let same = fresh == data;
            data = fresh;
            if same {
                data[0] ^= 0xff;
            }
            "all new bytes".to_string()
        } else {
            // A few bytes changed: most chunks deduplicate.
            let range = change_bytes(&mut data, rng);
            format!("bytes {range:?} changed")
        };
        let tmp = path.with_file_name(self.fresh("t"));
        fs::write(&tmp, &data).expect("write");
        // The mode after the write: writing clears a set-user-id bit.
        fs::set_permissions(&tmp, old.permissions()).expect("chmod");
        File::open(&tmp)
            .expect("open")
            .set_modified(old.modified().expect("mtime"))
            .expect("set mtime");
        fs::rename(&tmp, &path).expect("rename");
        format!(
            "replace {} by a file of the same size and mtime ({how})",
            self.rel(&path)
        )
    }

    /// Overwrite part of a file in place with other bytes, then set its
    /// mode and modification time back to what they were (`touch -r`):
    /// only its change time shows the backup it changed. The model
    /// expects the new content restored.
    fn rewrite_keeping_mtime(&mut self, rng: &mut Rng) -> String {
        let Some(path) = self.file_to_rewrite(rng) else {
            return self.new_file(rng);
        };
        let old = fs::symlink_metadata(&path).expect("stat");
        let mut data = fs::read(&path).expect("read");
        let range = change_bytes(&mut data, rng);
        make_writable(&path);
        let mut f = OpenOptions::new().write(true).open(&path).expect("open");
        f.seek(SeekFrom::Start(range.start as u64)).expect("seek");
        f.write_all(&data[range.clone()]).expect("write");
        f.set_modified(old.modified().expect("mtime"))
            .expect("set mtime");
        drop(f);
        // chmod sets no modification time.
        fs::set_permissions(&path, old.permissions()).expect("chmod");
        format!(
            "rewrite {} in place, bytes {range:?}, mtime and mode set back",
            self.rel(&path)
        )
    }

    fn sparse_file(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        let dir = l.dirs[rng.index(l.dirs.len())].clone();
        let path = dir.join(self.fresh("sparse"));
        // Up to 24 MB: holes of 1 MiB or more are recorded unread, and
        // those over 16 MiB take more than one chunk of zeros.
        let len = rng.range(100_000, 24_000_000);
        let f = File::create(&path).expect("create");
        f.set_len(len).expect("set_len");
        let mut f = f;
        for _ in 0..rng.range(0, 4) {
            let at = rng.below(len);
            let n = rng.range(1, 20_000) as usize;
            let data = rng.bytes(n);
            f.seek(SeekFrom::Start(at)).expect("seek");
            f.write_all(&data).expect("write");
        }
        format!("sparse {} ({len} B)", self.rel(&path))
    }

    fn delete(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        // Now and then a whole folder (never the root).
        if l.dirs.len() > 2 && rng.chance(0.1) {
            let dir = l.dirs[1 + rng.index(l.dirs.len() - 1)].clone();
            fs::remove_dir_all(&dir).expect("remove folder");
            return format!("delete folder {}", self.rel(&dir));
        }
        let mut all = l.files;
        all.extend(l.links);
        if all.is_empty() {
            return self.new_file(rng);
        }
        let path = all[rng.index(all.len())].clone();
        fs::remove_file(&path).expect("remove");
        format!("delete {}", self.rel(&path))
    }

    fn rename(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        let mut all = l.files;
        all.extend(l.links);
        all.extend(l.dirs.iter().skip(1).cloned());
        if all.is_empty() {
            return self.new_file(rng);
        }
        let from = all[rng.index(all.len())].clone();
        let into = l.dirs[rng.index(l.dirs.len())].clone();
        if into.starts_with(&from) {
            return format!("rename {}: skipped (into itself)", self.rel(&from));
        }
        let to = into.join(self.fresh("r"));
        fs::rename(&from, &to).expect("rename");
        format!("rename {} -> {}", self.rel(&from), self.rel(&to))
    }

    fn hard_link(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        if l.files.is_empty() {
            return self.new_file(rng);
        }
        let from = l.files[rng.index(l.files.len())].clone();
        let dir = l.dirs[rng.index(l.dirs.len())].clone();
        let to = dir.join(self.fresh("h"));
        fs::hard_link(&from, &to).expect("hard link");
        format!("hard link {} -> {}", self.rel(&to), self.rel(&from))
    }

    fn symlink(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        let dir = l.dirs[rng.index(l.dirs.len())].clone();
        let to = dir.join(self.fresh("s"));
        let target = match rng.below(3) {
            0 if !l.files.is_empty() => l.files[rng.index(l.files.len())].display().to_string(),
            1 => "../nowhere/at/all".to_string(),
            _ => format!("relative-{}", rng.below(1000)),
        };
        std::os::unix::fs::symlink(&target, &to).expect("symlink");
        format!("symlink {} -> {target}", self.rel(&to))
    }

    fn new_dir(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        let parent = l.dirs[rng.index(l.dirs.len())].clone();
        let dir = parent.join(self.fresh("d"));
        fs::create_dir(&dir).expect("mkdir");
        format!("mkdir {}", self.rel(&dir))
    }

    fn chmod(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        if rng.chance(0.3) && l.dirs.len() > 1 {
            let dir = l.dirs[1 + rng.index(l.dirs.len() - 1)].clone();
            let mode = [0o755, 0o700, 0o750][rng.index(3)];
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
            return format!("chmod {:o} {}", mode, self.rel(&dir));
        }
        if l.files.is_empty() {
            return self.new_file(rng);
        }
        let path = l.files[rng.index(l.files.len())].clone();
        let mode = [0o600, 0o644, 0o640, 0o755, 0o444, 0o4755][rng.index(6)];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        format!("chmod {:o} {}", mode, self.rel(&path))
    }

    fn touch(&mut self, rng: &mut Rng) -> String {
        let l = self.listing();
        let mut all = l.files;
        all.extend(l.dirs);
        let path = all[rng.index(all.len())].clone();
        let secs = rng.range(0, 2_000_000_000);
        let nanos = rng.below(1_000_000_000) as u32;
        let when = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        // Setting times needs ownership, not write permission: open read-only.
        let f = File::open(&path).expect("open");
        f.set_modified(when).expect("set mtime");
        format!("touch {} {secs}.{nanos:09}", self.rel(&path))
    }
}

/// Change a run of up to 100,000 bytes of `data` (which is not empty),
/// each to another value; returns where.
fn change_bytes(data: &mut [u8], rng: &mut Rng) -> std::ops::Range<usize> {
    let at = rng.index(data.len());
    let n = rng.range(1, 100_000).min((data.len() - at) as u64) as usize;
    for b in &mut data[at..at + n] {
        // Never 0: each byte changes.
        *b ^= rng.range(1, 256) as u8;
    }
    at..at + n
}

/// Let the harness write a file it made read-only.
fn make_writable(path: &Path) {
    let mode = fs::metadata(path).expect("stat").permissions().mode();
    if mode & 0o200 == 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o200)).expect("chmod");
    }
}
