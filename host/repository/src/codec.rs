//! The codec of one open repository: how its objects are turned into
//! their stored form and back, with the data filters, the seal named in
//! its `config`, and (format 3) the checksums of objects not named by
//! their content.
//!
//! [`object`] has the pieces (headers, checksums, the filter trait); this
//! module holds them together for one repository, so that nothing else
//! needs to know whether it is sealed or carries checksums. It adds to
//! [`Repository`] the operations every other module stores its own
//! objects with: `Repository::write_object`, `Repository::read_object`,
//! and `Repository::read_objects_each` (many small objects, each damaged
//! or not).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::config::{RepoConfig, FIRST_CHECKSUM_VERSION};
use super::error::{RepoError, RepoResult};
use super::object::{self, ObjectFilter};
use super::storage::StorageError;
use super::Repository;

/// Bytes a blob's stored form may exceed its decoded limit by: the filter
/// header, a compressor's framing of data that did not shrink, a seal's
/// nonce and tag.
pub(crate) const STORED_SLACK: usize = 64 << 10;

/// The data filters and the rules of one repository's format version.
pub(crate) struct Codec {
    filter: Arc<dyn ObjectFilter>,
    /// The sealing filter's tag (from the config), if any.
    seal: Option<String>,
    /// Whether objects carry checksums (format 3 and later).
    checksums: bool,
}

impl Codec {
    /// The codec of the repository whose config is `config`.
    pub fn new(filter: Arc<dyn ObjectFilter>, config: &RepoConfig) -> Self {
        Codec {
            filter,
            seal: config.seal_tag().map(str::to_string),
            checksums: config.version >= FIRST_CHECKSUM_VERSION,
        }
    }

    /// The data filters.
    pub fn filter(&self) -> &dyn ObjectFilter {
        self.filter.as_ref()
    }

    /// The sealing filter's tag, if the repository is sealed.
    pub fn seal_tag(&self) -> Option<&str> {
        self.seal.as_deref()
    }

    /// The stored form of an object that is not named by its content: its
    /// checksum appended (format 3), then the data filters.
    pub fn encode(&self, key: &str, mut data: Vec<u8>) -> RepoResult<Vec<u8>> {
        if self.checksums {
            object::add_checksum(key, &mut data);
        }
        object::seal_whole(self.filter(), self.seal_tag(), key, &data)
    }

    /// Undo [`encode`](Self::encode), checking the checksum.
    pub fn decode(&self, key: &str, stored: Vec<u8>) -> RepoResult<Vec<u8>> {
        if !self.checksums {
            // Only a checksum proves a record's header damaged: without
            // one (format 1), a header "repaired" to no filter at all
            // decodes to anything, and a missing plugin's records were
            // taken for damage.
            return object::open(self.filter(), self.seal_tag(), key, stored);
        }
        let mut plain = self.open_owned(key, stored, |plain| {
            object::check_checksum(key, plain).map(drop)
        })?;
        plain.truncate(plain.len() - object::CHECKSUM_LEN);
        Ok(plain)
    }

    /// Damage to the filter header of `stored`, which did not open, if
    /// it is proven: one changed byte of it (a tag's, a tag's length,
    /// the count of tags) undone, the object opens and is found sound by
    /// `check` (its checksum, or a blob's id) and, in a sealed repository,
    /// by the seal's authentication (only the seal's own header is
    /// outside it: the inner tags are sealed with the data). A tag `zstd` read as `zst$` made
    /// `repair-packs` refuse its pack as needing a plugin, and fsck and
    /// backups stop; taken for damage without the proof, a plugin
    /// missing whose tag was close to a loaded one's (`zstd-dict`) had
    /// `repair-packs` drop every blob it wrote.
    ///
    /// Asked only once an object failed to open: a sound object is read
    /// once, as it is.
    fn damaged_header(
        &self,
        context: &str,
        stored: &[u8],
        check: impl Fn(&[u8]) -> RepoResult<()>,
    ) -> Option<RepoError> {
        self.repaired_header(context, stored, check)
            .map(|(reason, _)| RepoError::DamagedHeader {
                object: context.to_string(),
                reason,
            })
    }

    /// The stored bytes of an object whose filter header is proven
    /// damaged (see [`damaged_header`](Self::damaged_header)) with the
    /// damage undone, checked by `check`, and why it is damaged, in
    /// words: what `repair-packs` copies rather than drop a blob (the one
    /// byte that was wrong is known, and the blob checks without it).
    pub fn repaired_header(
        &self,
        context: &str,
        stored: &[u8],
        check: impl Fn(&[u8]) -> RepoResult<()>,
    ) -> Option<(String, Vec<u8>)> {
        // In a sealed repository only the seal's own header is there to
        // be damaged (the inner one is sealed with the data), and the
        // seal's authentication is the proof.
        let opens = |fixed: &[u8]| {
            let (plain, tags) =
                object::open_borrowed_tagged(self.filter(), self.seal_tag(), context, fixed)?;
            object::after_filters(self.filter(), &tags, check(&plain))
        };
        object::header_repairs(self.filter(), stored)
            .into_iter()
            .find(|(_, fixed)| opens(fixed).is_ok())
            .map(|(what, fixed)| {
                (
                    format!("its filter header is damaged: {what} the object checks"),
                    fixed,
                )
            })
    }

    /// A record's stored bytes whose filter header is proven damaged (see
    /// [`damaged_header`](Self::damaged_header)), with the damage undone,
    /// and what was wrong: what `repair-records` writes again. `None` if
    /// the record opens as it is, or its damage is not proven so (a
    /// record proves it by its checksum, which format 1 has not).
    pub fn repaired_record(&self, key: &str, stored: &[u8]) -> Option<(String, Vec<u8>)> {
        if !self.checksums || self.decode(key, stored.to_vec()).is_ok() {
            return None;
        }
        self.repaired_header(key, stored, |plain| {
            object::check_checksum(key, plain).map(drop)
        })
    }

    /// The stored form of a blob, as its filter header and its payload
    /// (a blob is checked against its id, so it carries no checksum).
    pub fn seal_blob<'d>(
        &self,
        context: &str,
        data: &'d [u8],
    ) -> RepoResult<(Vec<u8>, object::Encoded<'d>)> {
        object::seal(self.filter(), self.seal_tag(), context, data)
    }

    /// The plain bytes of a stored blob, which stay where they are (see
    /// [`object::open_borrowed`]), checked by `check` (against the blob's
    /// id): what the check finds wrong after a filter that does not
    /// vouch for its decode is the filter's problem, not damage (see
    /// [`object::after_filters`]).
    pub fn open_blob_borrowed_checked<'s>(
        &self,
        context: &str,
        stored: &'s [u8],
        check: impl Fn(&[u8]) -> RepoResult<()>,
    ) -> RepoResult<object::Encoded<'s>> {
        let opened = object::open_borrowed_tagged(self.filter(), self.seal_tag(), context, stored)
            .and_then(|(plain, tags)| {
                object::after_filters(self.filter(), &tags, check(&plain))?;
                Ok(plain)
            });
        opened.map_err(|e| self.damaged_header(context, stored, &check).unwrap_or(e))
    }

    /// [`open_blob_borrowed_checked`](Self::open_blob_borrowed_checked) of
    /// bytes that are the caller's.
    pub fn open_blob_checked(
        &self,
        context: &str,
        stored: Vec<u8>,
        check: impl Fn(&[u8]) -> RepoResult<()>,
    ) -> RepoResult<Vec<u8>> {
        self.open_owned(context, stored, check)
    }

    /// The plain bytes of an object whose stored bytes are the caller's,
    /// checked by `check`: the stored bytes themselves, their header cut
    /// off, where no filter changed them (a blob of an uncompressed
    /// repository is not copied). One that does not open is asked
    /// whether its header is proven damaged, which is then the error
    /// ([`damaged_header`](Self::damaged_header)).
    fn open_owned(
        &self,
        context: &str,
        mut stored: Vec<u8>,
        check: impl Fn(&[u8]) -> RepoResult<()>,
    ) -> RepoResult<Vec<u8>> {
        /// What an open gave, once its borrow of the stored bytes ended.
        enum Opened {
            /// No filter changed them: the plain bytes start here.
            At(usize),
            /// What the filters made of them.
            Made(Vec<u8>),
        }
        let opened = object::open_borrowed_tagged(self.filter(), self.seal_tag(), context, &stored)
            .and_then(|(plain, tags)| {
                object::after_filters(self.filter(), &tags, check(&plain))?;
                Ok(match plain {
                    object::Encoded::Unchanged(plain) => Opened::At(stored.len() - plain.len()),
                    object::Encoded::Changed(plain) => Opened::Made(plain.into_vec()),
                })
            });
        match opened {
            Ok(Opened::At(start)) => {
                stored.drain(..start);
                Ok(stored)
            }
            Ok(Opened::Made(plain)) => Ok(plain),
            Err(e) => Err(self.damaged_header(context, &stored, &check).unwrap_or(e)),
        }
    }
}

impl Repository {
    /// Seal an object with the data filters and write it under `key`.
    pub(crate) fn write_object(&self, key: &str, data: Vec<u8>) -> RepoResult<()> {
        let sealed = self.codec.encode(key, data)?;
        self.storage.write(key, sealed)?;
        Ok(())
    }

    /// [`write_object`](Self::write_object), the write tried once
    /// ([`crate::storage::Storage::write_once`]).
    pub(crate) fn write_object_once(&self, key: &str, data: Vec<u8>) -> RepoResult<()> {
        let sealed = self.codec.encode(key, data)?;
        self.storage.write_once(key, sealed)?;
        Ok(())
    }

    /// Read an object written by [`write_object`](Self::write_object),
    /// verified; no more than the format allows for its kind is read.
    ///
    /// One that reads as damaged is read again, up to [`REREADS`] times,
    /// before it counts as damaged: a read cut short once (a store or link
    /// that drops the end of a response) made a sound index object's
    /// blobs count as absent for the run, and `repair-packs` then took a
    /// listed pack for one no index object lists.
    pub(crate) fn read_object(&self, key: &str) -> RepoResult<Vec<u8>> {
        self.read_again_while_damaged(key, self.read_object_once(key))
    }

    /// `read`, the first reading of `key`, or, if it reads as damaged, a
    /// reading again, up to [`REREADS`] times (see
    /// [`read_object`](Self::read_object)).
    fn read_again_while_damaged(
        &self,
        key: &str,
        mut read: RepoResult<Vec<u8>>,
    ) -> RepoResult<Vec<u8>> {
        for _ in 0..REREADS {
            if !read.as_ref().is_err_and(RepoError::is_damaged_object) {
                break;
            }
            read = self.read_object_once(key);
        }
        read
    }

    /// Read several objects as [`read_object`](Self::read_object) does,
    /// as many at once as the store does well (see
    /// [`crate::storage::Capabilities::parallel_reads`]); the results in
    /// the order of `keys`. All are held at once: callers pass a few
    /// dozen or small objects.
    pub(crate) fn read_objects(&self, keys: &[String]) -> Vec<RepoResult<Vec<u8>>> {
        self.each_in_parallel(keys, |key| self.read_object(key))
    }

    /// `f` of each of `keys`, on as many threads as the store reads well
    /// at once ([`crate::storage::Capabilities::parallel_reads`]); the
    /// results in the order of `keys`.
    fn each_in_parallel<T: Send>(&self, keys: &[String], f: impl Fn(&str) -> T + Sync) -> Vec<T> {
        let workers = self.storage.capabilities().parallel_reads.min(keys.len());
        if workers <= 1 {
            return keys.iter().map(|key| f(key)).collect();
        }
        let next = AtomicUsize::new(0);
        let done: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(key) = keys.get(i) else {
                                break;
                            };
                            mine.push((i, f(key)));
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        // Each index was taken by exactly one worker, and a worker that
        // panicked took the call with it: sorted, these are `keys`' results.
        let mut done: Vec<(usize, T)> = done.into_iter().flatten().collect();
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, result)| result).collect()
    }

    /// Read the objects of `keys`, as many at once as the store does well,
    /// and hand each to `take`, decoded and verified as
    /// [`read_object`](Self::read_object) gives it, in the order of
    /// `keys`, one at a time: what is held at once is the stored bytes of
    /// the window and one decoded object. An index object may decode to
    /// 256 MiB, and a crafted one of a few KB does: decoded in parallel
    /// and held together until the window was done, sixteen of them took
    /// gigabytes.
    pub(crate) fn read_objects_with(
        &self,
        keys: &[String],
        mut take: impl FnMut(usize, RepoResult<Vec<u8>>) -> RepoResult<()>,
    ) -> RepoResult<()> {
        let stored = self.read_stored(keys);
        for (i, (key, stored)) in keys.iter().zip(stored).enumerate() {
            let decoded = stored.and_then(|bytes| self.codec.decode(key, bytes));
            take(i, self.read_again_while_damaged(key, decoded))?;
        }
        Ok(())
    }

    /// One read and decoding of `key`, as [`read_object`](Self::read_object)
    /// does each time.
    fn read_object_once(&self, key: &str) -> RepoResult<Vec<u8>> {
        self.codec.decode(key, self.read_stored_one(key)?)
    }

    /// The stored bytes of `key`, no more than the format allows for its
    /// kind.
    fn read_stored_one(&self, key: &str) -> RepoResult<Vec<u8>> {
        let limit = crate::limits::max_decoded_len(key) + STORED_SLACK;
        Ok(self.storage.read_limited(key, limit as u64)?)
    }

    /// The stored bytes of the objects of `keys`, no more of each than the
    /// format allows for its kind, as many read at once as the store does
    /// well; in the order of `keys`.
    fn read_stored(&self, keys: &[String]) -> Vec<RepoResult<Vec<u8>>> {
        self.each_in_parallel(keys, |key| self.read_stored_one(key))
    }

    /// Read the small objects of `keys` as
    /// [`read_objects`](Self::read_objects) does, a window of them at a
    /// time: for each, its bytes, [`Read::Gone`] if it was removed since it
    /// was listed, or [`Read::Damaged`] if its content cannot be the object
    /// (see [`crate::damaged_records::is_damage`]); any other failure is an
    /// error. For records, one of which must not keep a client from its
    /// other generations.
    ///
    /// `sound` says whether bytes read are the record they should be (they
    /// parse, under the right name). One that reads as damaged, or not
    /// sound, is read again, up to [`REREADS`] times, before it counts as
    /// damaged: a read cut short once (a store or link that drops the end
    /// of a response) must not leave a sound record out, which would make
    /// a backup start from an older generation, a check report damage that
    /// is not there, and the warning advise forgetting a sound generation.
    /// The bytes of an unsound record are returned as read last, for the
    /// caller to name what is wrong.
    pub(crate) fn read_objects_each(
        &self,
        keys: &[String],
        sound: &dyn Fn(&str, &[u8]) -> bool,
    ) -> RepoResult<Vec<Read>> {
        let mut read = self.read_objects_each_once(keys)?;
        for _ in 0..REREADS {
            let again: Vec<usize> = read
                .iter()
                .enumerate()
                .filter(|(i, r)| match r {
                    Read::Bytes(bytes) => !sound(&keys[*i], bytes),
                    Read::Damaged(_) => true,
                    Read::Gone => false,
                })
                .map(|(i, _)| i)
                .collect();
            if again.is_empty() {
                break;
            }
            let keys_again: Vec<String> = again.iter().map(|&i| keys[i].clone()).collect();
            for (i, r) in again
                .into_iter()
                .zip(self.read_objects_each_once(&keys_again)?)
            {
                read[i] = r;
            }
        }
        Ok(read)
    }

    /// [`read_objects_each`](Self::read_objects_each), each object read
    /// once.
    fn read_objects_each_once(&self, keys: &[String]) -> RepoResult<Vec<Read>> {
        /// Objects read at once: they are small (a generation's record is
        /// a few hundred bytes).
        const WINDOW: usize = 256;
        let mut read = Vec::with_capacity(keys.len());
        for window in keys.chunks(WINDOW) {
            for data in self.read_objects(window) {
                read.push(match data {
                    Ok(d) => Read::Bytes(d),
                    Err(RepoError::Storage(StorageError::NotFound { .. })) => Read::Gone,
                    Err(e) if crate::damaged_records::is_damage(&e) => Read::Damaged(e),
                    Err(e) => return Err(e),
                });
            }
        }
        Ok(read)
    }
}

/// How many times more [`Repository::read_objects_each`] reads a record
/// that reads as damaged before it counts as damaged.
pub(crate) const REREADS: usize = 2;

/// What reading one object of [`Repository::read_objects_each`] gave.
pub(crate) enum Read {
    /// Its decoded bytes.
    Bytes(Vec<u8>),
    /// It is gone (removed since it was listed).
    Gone,
    /// It is damaged: what is wrong with it.
    Damaged(RepoError),
}
