//! Writing again the records whose filter header one damaged byte made
//! unreadable, with that byte undone.
//!
//! Why: a record (a generation's, a client's, an index object) starts with
//! the filter header that names the filters to undo. One byte of it
//! changed (a disk error, a bit flipped in transit) makes the record read
//! as needing a filter no plugin provides, or as having none, and the
//! record is damaged: a generation whose record it is is left out of
//! every listing, and the only way out used to be `forget`, which loses
//! it. But the damage is known: the codec finds the one byte which,
//! undone, makes the record check (its checksum covers its name and every
//! byte it holds, so what checks is what was written there; see
//! `Codec::damaged_header`). [`Repository::repair_records`] writes each
//! such record again as it was written, so that nothing is lost.
//!
//! Only records whose repair is proven are written: by their checksum
//! (format 3 and later), and in an encrypted repository by the seal's
//! authentication too (only the seal's own header is outside it). Any
//! other damaged record is left as it is, and said: `fsck` says what to
//! do about it.
//!
//! Run under the exclusive lock (no backup or `forget` writes or removes
//! a record meanwhile), and under the prune lock besides: a record written
//! again after a prune deleted it (an index object it replaced) would
//! come back.

use crate::codec::STORED_SLACK;
use crate::error::{RepoError, RepoResult};
use crate::storage::StorageError;
use crate::Repository;

/// Records read at once: a window of them is held in memory (index
/// objects may be a few MiB each).
const WINDOW: usize = 32;

/// One record [`Repository::repair_records`] wrote again (or would).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairedRecord {
    /// Its key (`generations/CLIENT/ID`, `clients/ID`, `index/NAME`).
    pub key: String,
    /// What was wrong with it, and what undoing it took, in words.
    pub problem: String,
}

/// What [`Repository::repair_records`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairedRecords {
    /// The records whose damaged filter header was undone, written again
    /// (pretending: that would be).
    pub repaired: Vec<RepairedRecord>,
    /// Damaged records that cannot be repaired so, each with what is
    /// wrong with it: left as they are.
    pub left: Vec<String>,
    /// Records read.
    pub records: u64,
}

impl Repository {
    /// Write again, with the one damaged byte of their filter header
    /// undone, the records that check once it is undone (see the
    /// module's docs); with `pretend`, only read them. Take the exclusive
    /// lock first; this takes the prune lock besides (waiting up to
    /// `lock_timeout`).
    pub fn repair_records(
        &self,
        pretend: bool,
        lock_timeout: std::time::Duration,
    ) -> RepoResult<RepairedRecords> {
        self.under_prune_lock(pretend, lock_timeout, |p| self.repair_records_locked(p))
    }

    fn repair_records_locked(&self, pretend: bool) -> RepoResult<RepairedRecords> {
        use crate::damaged_records::Record;
        // What every other command takes for records: a name no record
        // has (a sync tool's "conflicted copy", a folder no client's) is
        // ignored with a warning, as they ignore it.
        let mut keys = Vec::new();
        for key in self.storage().list_recursive("generations/")? {
            match crate::generation::Generation::valid_key(&key) {
                true => keys.push(key),
                false => self.damaged.stray(&key),
            }
        }
        for name in self.storage().list("clients/")? {
            let key = format!("clients/{name}");
            match crate::clients::ClientRecord::valid_key(&key) {
                true => keys.push(key),
                false => self.damaged.stray(&key),
            }
        }
        keys.extend(
            self.list_index_objects()?
                .into_iter()
                .map(|name| format!("index/{name}")),
        );
        let mut done = RepairedRecords::default();
        for window in keys.chunks(WINDOW) {
            // One decoded at a time: index objects among them may be large.
            self.read_objects_with(window, |i, read| {
                let key = &window[i];
                match read {
                    Ok(_) => done.records += 1,
                    Err(RepoError::Storage(StorageError::NotFound { .. })) => {}
                    Err(RepoError::DamagedHeader { .. }) => {
                        done.records += 1;
                        match self.repair_record(key, pretend)? {
                            Repair::Done(repaired) => {
                                done.repaired.push(repaired);
                                if !pretend {
                                    // Each is whole once written: an
                                    // interruption says how many are.
                                    let n = done.repaired.len();
                                    crate::done::note(format!(
                                        "{n} {} written again, whole, with the damaged byte \
                                         of the header undone (the last {key}); run \
                                         repair-records again for the rest",
                                        if n == 1 { "record was" } else { "records were" }
                                    ));
                                }
                            }
                            Repair::Sound => {}
                            Repair::Left(problem) => done.left.push(problem),
                        }
                    }
                    Err(e) if e.is_damaged_object() => {
                        done.records += 1;
                        done.left.push(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
                Ok(())
            })?;
        }
        Ok(done)
    }

    /// Write the record of `key`, whose filter header read as damaged,
    /// again with the damage undone, and read it back.
    fn repair_record(&self, key: &str, pretend: bool) -> RepoResult<Repair> {
        let limit = crate::limits::max_decoded_len(key) + STORED_SLACK;
        let stored = match self.storage().read_limited(key, limit as u64) {
            Ok(stored) => stored,
            Err(StorageError::NotFound { .. }) => return Ok(Repair::Sound),
            Err(e) => return Err(e.into()),
        };
        let Some((problem, fixed)) = self.codec.repaired_record(key, &stored) else {
            // Read again, it is sound (a read cut short before), or
            // damaged otherwise.
            return Ok(match self.codec.decode(key, stored) {
                Ok(_) => Repair::Sound,
                Err(e) => Repair::Left(e.to_string()),
            });
        };
        if !pretend {
            self.storage().write(key, fixed)?;
            self.read_object(key).map_err(|e| {
                RepoError::corrupt(
                    key,
                    format!("written again with its filter header repaired, it reads as: {e}"),
                )
            })?;
        }
        Ok(Repair::Done(RepairedRecord {
            key: key.to_string(),
            problem,
        }))
    }
}

/// What `Repository::repair_record` made of one record.
enum Repair {
    /// Written again (or would be).
    Done(RepairedRecord),
    /// It reads as it is, or is gone: nothing to do.
    Sound,
    /// It is damaged otherwise: what is wrong with it.
    Left(String),
}
