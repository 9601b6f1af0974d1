//! Reading a file's chunks from the repository, in order, with read-ahead
//! for large files.
//!
//! Each chunk read is a round trip to the repository's storage. For a file
//! of a few chunks that is fine, since many files are restored at once.
//! A large file, though, would otherwise be restored by one thread that
//! alternates between waiting for a chunk and hashing and writing it, and
//! so can end up the last thing a restore waits for. For files of more than
//! [`READ_AHEAD_FROM`] chunks, [`FETCHERS`] threads read the chunks ahead
//! (each a share of them, round robin, at most [`AHEAD`] chunks ahead of the
//! writer), while the caller hashes and writes them in order.
//!
//! A run of one chunk repeated (a sparse file's zeros deduplicate to that)
//! is read once, and whether a chunk is all zeros is worked out once per
//! run. A chunk found all zeros is not read again at all (see
//! [`KnownZeros`]).

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Mutex, OnceLock};

use plugin_api::types::RVec;
use plugin_api::{ChunkId, Repository};

use crate::sparse;

/// Files with more chunks than this are read ahead.
pub const READ_AHEAD_FROM: usize = 4;

/// Threads reading ahead for one large file.
pub const FETCHERS: usize = 2;

/// Chunks each read-ahead thread may hold before the writer takes them.
pub const AHEAD: usize = 2;

/// A chunk's data (as the host read it, not copied), and whether it is
/// all zeros.
pub struct Chunk {
    pub data: RVec<u8>,
    pub zero: bool,
}

/// Why a file's chunks could not all be read and written.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// This file cannot be restored (a chunk missing or damaged, a failed
    /// write): the restore goes on with the others.
    File(String),
    /// The repository's store failed (it cannot be reached): no other
    /// file would fare better, so the restore stops. The store's message,
    /// naming its URL.
    Store(String),
}

impl From<String> for ReadError {
    fn from(why: String) -> Self {
        ReadError::File(why)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::File(why) | ReadError::Store(why) => f.write_str(why),
        }
    }
}

/// What the host adds to the message of a store operation that failed
/// after its retries (see `describe` in host/repository/src/storage/error.rs,
/// and the user guide's "remote stores"): the store, not one object, is
/// at fault. The boundary carries only the message, and no error of one
/// damaged or missing object says this.
const GAVE_UP: &str = "(gave up after retrying)";

/// Whether `message` is that of a store that failed after the retries.
pub fn is_store_failure(message: &str) -> bool {
    message.contains(GAVE_UP)
}

/// The chunks this process read and found all zeros, with their lengths.
///
/// A backup records a sparse file's holes as chunks of zeros of a few
/// lengths (powers of two), the same few for every hole of every file; a
/// hole between two stretches of data takes several of them, so they do
/// not come as runs of one chunk. Each was read, decompressed and checked
/// against its id again at every hole: 33 s to restore an 8.4 GB file of
/// 2,000 holes holding 8 MB of data. Once one is read (and checked by the
/// host) and found all zeros, its zeros are made here instead, untouched
/// (fresh pages) where the restore skips them as a hole.
struct KnownZeros(Mutex<HashMap<ChunkId, usize>>);

/// How many chunks of zeros [`KnownZeros`] remembers (a repository holds
/// a few dozen lengths of them at most, unless crafted).
const KNOWN_ZEROS_MAX: usize = 1024;

impl KnownZeros {
    fn get() -> &'static KnownZeros {
        static KNOWN: OnceLock<KnownZeros> = OnceLock::new();
        KNOWN.get_or_init(|| KnownZeros(Mutex::new(HashMap::new())))
    }

    fn len_of(&self, id: &ChunkId) -> Option<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    fn remember(&self, id: ChunkId, len: usize) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() < KNOWN_ZEROS_MAX {
            known.insert(id, len);
        }
    }
}

fn fetch(repo: &Repository, id: ChunkId) -> Result<Chunk, ReadError> {
    let known = KnownZeros::get();
    if let Some(len) = known.len_of(&id) {
        return Ok(Chunk {
            data: RVec::from(vec![0u8; len]),
            zero: true,
        });
    }
    let data = repo.get_chunk_data(id).map_err(|e| {
        if is_store_failure(e.message()) {
            ReadError::Store(e.to_string())
        } else {
            ReadError::File(format!("cannot read chunk {}: {e}", chunk_hex(&id)))
        }
    })?;
    let zero = sparse::is_zero(&data);
    if zero {
        known.remember(id, data.len());
    }
    Ok(Chunk { data, zero })
}

/// Whether chunk `i` differs from the one before it, and so must be read.
fn starts_run(chunks: &[ChunkId], i: usize) -> bool {
    i == 0 || chunks[i] != chunks[i - 1]
}

/// The indexes into `chunks` of the chunks that must be read.
pub fn reads(chunks: &[ChunkId]) -> Vec<usize> {
    (0..chunks.len())
        .filter(|&i| starts_run(chunks, i))
        .collect()
}

/// Call `each` with every chunk of `chunks`, in order. Stops at the first
/// error, from reading or from `each`.
pub fn for_each_chunk(
    repo: &Repository,
    chunks: &[ChunkId],
    mut each: impl FnMut(&Chunk) -> Result<(), String>,
) -> Result<(), ReadError> {
    let reads = reads(chunks);
    if reads.len() <= READ_AHEAD_FROM {
        let mut current: Option<Chunk> = None;
        for (i, id) in chunks.iter().enumerate() {
            if starts_run(chunks, i) {
                current = Some(fetch(repo, *id)?);
            }
            if let Some(chunk) = &current {
                each(chunk)?;
            }
        }
        return Ok(());
    }
    std::thread::scope(|s| {
        let mut receivers: Vec<Receiver<Result<Chunk, ReadError>>> = Vec::new();
        for k in 0..FETCHERS {
            let (tx, rx) = sync_channel(AHEAD);
            receivers.push(rx);
            let mine: Vec<ChunkId> = reads
                .iter()
                .skip(k)
                .step_by(FETCHERS)
                .map(|&i| chunks[i])
                .collect();
            // Out of memory or processes, the system may refuse a thread:
            // an error, not a panic reported as a bug.
            std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    for id in mine {
                        let result = fetch(repo, id);
                        let failed = result.is_err();
                        // A closed channel means the writer stopped: so do we.
                        if tx.send(result).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(|e| {
                    ReadError::File(format!(
                        "cannot start a thread to read its chunks: {e} (out of memory, or over \
                         the limit of processes?)"
                    ))
                })?;
        }
        let mut current: Option<Chunk> = None;
        let mut next_read = 0usize;
        for i in 0..chunks.len() {
            if starts_run(chunks, i) {
                let rx = &receivers[next_read % FETCHERS];
                next_read += 1;
                let chunk = rx
                    .recv()
                    .map_err(|_| ReadError::File("a chunk reader stopped unexpectedly".into()))??;
                current = Some(chunk);
            }
            if let Some(chunk) = &current {
                each(chunk)?;
            }
        }
        // Dropping the receivers here ends any reader still waiting to send.
        drop(receivers);
        Ok(())
    })
}

/// A chunk id in text, as the repository format writes it.
pub fn chunk_hex(id: &ChunkId) -> String {
    let mut s: String = id.token.0.iter().map(|b| format!("{b:02x}")).collect();
    if id.variant != 0 {
        s.push_str(&format!(".{:x}", id.variant));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::Token;

    fn id(n: u8) -> ChunkId {
        ChunkId {
            token: Token([n; 32]),
            variant: 0,
        }
    }

    #[test]
    fn repeated_chunks_are_read_once_per_run() {
        assert!(reads(&[]).is_empty());
        assert_eq!(reads(&[id(1)]), vec![0]);
        assert_eq!(
            reads(&[id(1), id(0), id(0), id(0), id(2), id(0)]),
            vec![0, 1, 4, 5]
        );
    }

    #[test]
    fn only_a_store_that_gave_up_stops_a_restore() {
        assert!(is_store_failure(
            "sftp://h/r: cannot read packs/ab/cd: Connection refused (os error 111) \
             (gave up after retrying)"
        ));
        assert!(!is_store_failure("chunk ab is not in the repository"));
        assert!(!is_store_failure(
            "object packs/ab is corrupt: bad checksum"
        ));
    }

    #[test]
    fn chunk_ids_print_like_the_format_says() {
        let c = id(0xab);
        assert_eq!(chunk_hex(&c), "ab".repeat(32));
        let c = ChunkId { variant: 255, ..c };
        assert_eq!(chunk_hex(&c), format!("{}.ff", "ab".repeat(32)));
    }
}
