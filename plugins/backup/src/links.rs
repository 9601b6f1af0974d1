//! Hard links read once a run.
//!
//! The names of a hard-linked file are one object: once a run has read
//! it through one name, another name of the same object (device and
//! inode) that the walk saw with the same size, modification time and
//! change time holds the same content, and takes the chunks and checksum
//! of that read instead of reading it again. Without this, a file with
//! 10,000 names (an `rsnapshot` or `cp -al` tree, a Nix or pnpm store) was
//! read 10,000 times by every backup that found it changed: 50 GB of
//! reads for a 5 MB file, however well deduplication then stored it.
//!
//! Names met while the object is being read wait for that read ([`Claim`]):
//! several workers took two names of one file at once, and each read it
//! (a 100 MB file of six names: "2 files read").
//!
//! The reuse trusts the `stat` as a backup trusts it against the previous
//! generation: content rewritten with the times set back, and the change
//! time ignored (`--ignore-ctime`), looks unchanged. The read the names
//! share was checked, as every read is, against the `stat` the walk took
//! of the name it was read through ([`crate::content`]).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use plugin_api::ChunkId;

use crate::content::{Stored, Walked};

/// Objects remembered at most, and chunk ids in all: a run that finds
/// more hard-linked files than this reads the others once per name, as
/// before, rather than hold their chunk lists (about 40 bytes a chunk).
const MAX_OBJECTS: usize = 100_000;
const MAX_CHUNKS: usize = 4 << 20;

/// The files with more than one name read in this run, by object.
#[derive(Default)]
pub struct ReadLinks {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    by_object: HashMap<(u64, u64), Read>,
    chunks: usize,
    /// The objects a worker is reading now, each with the `stat` it saw.
    reading: HashMap<(u64, u64), Arc<Reading>>,
}

/// A read going on, which other names of the object wait for.
struct Reading {
    stat: Stat,
    done: Mutex<bool>,
    finished: Condvar,
}

/// What a name's `stat` says of the content: size, modification and
/// change times.
type Stat = (u64, (i64, u32), Option<(i64, u32)>);

fn stat_of(walked: &Walked) -> Stat {
    (walked.size, walked.mtime, walked.ctime)
}

/// What [`ReadLinks::reuse_or_claim`] found.
pub enum Found {
    /// An earlier read of the object, seen the same: take it.
    Read(Shared),
    /// None: read it, holding the claim until it is remembered (or has
    /// failed), so that other names wait for it.
    Claimed(Claim),
    /// None, and another name seen otherwise is being read: read it.
    Unclaimed,
}

/// A worker's claim to read an object: other names of it wait until it
/// is dropped.
pub struct Claim {
    links: Arc<Mutex<State>>,
    key: (u64, u64),
    reading: Arc<Reading>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut state = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .reading
            .get(&self.key)
            .is_some_and(|r| Arc::ptr_eq(r, &self.reading))
        {
            state.reading.remove(&self.key);
        }
        drop(state);
        *self.reading.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.reading.finished.notify_all();
    }
}

/// One read of a hard-linked file: the `stat` it matched, what it gave,
/// and how many of the object's names may still come.
struct Read {
    size: u64,
    mtime: (i64, u32),
    ctime: Option<(i64, u32)>,
    stored: Shared,
    names_left: u64,
}

/// What a later name takes of a read.
#[derive(Clone)]
pub struct Shared {
    pub chunks: Vec<ChunkId>,
    pub checksum: Vec<u8>,
    pub bytes_read: u64,
}

impl ReadLinks {
    /// Note the read of a file of `nlink` names, seen as `walked`.
    pub fn remember(&self, walked: &Walked, nlink: u64, stored: &Stored) {
        if nlink < 2 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.by_object.len() >= MAX_OBJECTS || state.chunks + stored.chunks.len() > MAX_CHUNKS {
            return;
        }
        let read = Read {
            size: walked.size,
            mtime: walked.mtime,
            ctime: walked.ctime,
            stored: Shared {
                chunks: stored.chunks.clone(),
                checksum: stored.checksum.clone(),
                bytes_read: stored.bytes_read,
            },
            names_left: nlink - 1,
        };
        state.chunks += read.stored.chunks.len();
        if let Some(old) = state.by_object.insert((walked.dev, walked.ino), read) {
            state.chunks -= old.stored.chunks.len();
        }
    }

    /// What an earlier read of this run gave for the object the walk saw
    /// as `walked`, waiting for a read of it going on; else a claim to
    /// read it (see [`Found`]).
    pub fn reuse_or_claim(&self, walked: &Walked) -> Found {
        let key = (walked.dev, walked.ino);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Looked at under the same lock as the reads going on: a read
        // remembered since is taken, and one of the object seen otherwise
        // (it changed between the walk of two of its names) is no reason
        // to wait, but to read this name on its own. (A loop that looked
        // again while the object was remembered spun for ever on such a
        // read.)
        if let Some(shared) = reuse_locked(&mut state, walked) {
            return Found::Read(shared);
        }
        let other = match state.reading.get(&key) {
            Some(other) if other.stat == stat_of(walked) => other.clone(),
            Some(_) => return Found::Unclaimed,
            None => {
                let reading = Arc::new(Reading {
                    stat: stat_of(walked),
                    done: Mutex::new(false),
                    finished: Condvar::new(),
                });
                state.reading.insert(key, reading.clone());
                return Found::Claimed(Claim {
                    links: self.state.clone(),
                    key,
                    reading,
                });
            }
        };
        drop(state);
        let mut done = other.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = other.finished.wait(done).unwrap_or_else(|e| e.into_inner());
        }
        // Then it is remembered, or the read failed (or was not
        // remembered: too many objects): this name is read then.
        drop(done);
        match self.reuse(walked) {
            Some(shared) => Found::Read(shared),
            None => Found::Unclaimed,
        }
    }

    /// What an earlier read of this run gave for the object the walk saw
    /// as `walked`, if it saw it the same then.
    pub fn reuse(&self, walked: &Walked) -> Option<Shared> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        reuse_locked(&mut state, walked)
    }
}

/// [`ReadLinks::reuse`], with the state locked.
fn reuse_locked(state: &mut State, walked: &Walked) -> Option<Shared> {
    let key = (walked.dev, walked.ino);
    let read = state.by_object.get_mut(&key)?;
    if (read.size, read.mtime, read.ctime) != (walked.size, walked.mtime, walked.ctime) {
        return None;
    }
    let shared = read.stored.clone();
    read.names_left = read.names_left.saturating_sub(1);
    // Every name came: the object is done with (a name outside the
    // backup's roots never comes, and its read stays until the end).
    if read.names_left == 0 {
        if let Some(done) = state.by_object.remove(&key) {
            state.chunks -= done.stored.chunks.len();
        }
    }
    Some(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(ino: u64, mtime: i64) -> Walked {
        Walked {
            size: 5,
            mtime: (mtime, 0),
            ctime: Some((mtime, 0)),
            dev: 1,
            ino,
        }
    }

    fn stored(checksum: &[u8]) -> Stored {
        Stored {
            chunks: Vec::new(),
            checksum: checksum.to_vec(),
            bytes_read: 5,
            bytes_new: 5,
            bytes_in_holes: 0,
        }
    }

    #[test]
    fn a_name_of_an_object_read_takes_its_read_while_the_stat_is_the_same() {
        let links = ReadLinks::default();
        links.remember(&walked(7, 100), 3, &stored(b"one"));
        assert!(links.reuse(&walked(8, 100)).is_none(), "another object");
        assert!(links.reuse(&walked(7, 101)).is_none(), "changed since");
        assert_eq!(links.reuse(&walked(7, 100)).unwrap().checksum, b"one");
        assert_eq!(links.reuse(&walked(7, 100)).unwrap().checksum, b"one");
        // Its three names came: forgotten.
        assert!(links.reuse(&walked(7, 100)).is_none());
        assert_eq!(links.state.lock().unwrap().by_object.len(), 0);
    }

    #[test]
    fn a_name_met_while_the_object_is_read_waits_for_that_read() {
        let links = Arc::new(ReadLinks::default());
        let Found::Claimed(claim) = links.reuse_or_claim(&walked(7, 100)) else {
            panic!("the first name claims the read");
        };
        // Seen otherwise: read for itself, without waiting.
        assert!(matches!(
            links.reuse_or_claim(&walked(7, 101)),
            Found::Unclaimed
        ));
        let waiter = {
            let links = links.clone();
            std::thread::spawn(move || match links.reuse_or_claim(&walked(7, 100)) {
                Found::Read(shared) => shared.checksum,
                _ => panic!("the second name takes the first's read"),
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "it waits for the read");
        links.remember(&walked(7, 100), 3, &stored(b"one"));
        drop(claim);
        assert_eq!(waiter.join().unwrap(), b"one");
        // A read that failed (nothing remembered) lets the next read.
        let Found::Claimed(failed) = links.reuse_or_claim(&walked(9, 100)) else {
            panic!("claimed");
        };
        drop(failed);
        assert!(matches!(
            links.reuse_or_claim(&walked(9, 100)),
            Found::Claimed(_)
        ));
    }

    /// A name walked before its object changed, met after the read of
    /// another name walked after the change: read on its own. It spun
    /// for ever (metadata review F3).
    #[test]
    fn a_name_seen_otherwise_than_the_read_is_read_on_its_own() {
        let links = ReadLinks::default();
        let Found::Claimed(claim) = links.reuse_or_claim(&walked(7, 101)) else {
            panic!("the first name claims the read");
        };
        links.remember(&walked(7, 101), 2, &stored(b"new"));
        drop(claim);
        let (tx, rx) = std::sync::mpsc::channel();
        let links = Arc::new(links);
        let other = links.clone();
        std::thread::spawn(move || {
            let claimed = matches!(other.reuse_or_claim(&walked(7, 100)), Found::Claimed(_));
            let _ = tx.send(claimed);
        });
        let claimed = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("it does not spin");
        assert!(claimed, "the old name is read for itself");
    }

    #[test]
    fn a_file_of_one_name_is_not_remembered() {
        let links = ReadLinks::default();
        links.remember(&walked(7, 100), 1, &stored(b"one"));
        assert!(links.reuse(&walked(7, 100)).is_none());
    }
}
