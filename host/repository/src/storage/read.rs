//! Reading objects: whole, at most so many bytes, in pieces, or a range
//! (through readers kept open for the next range of the same object).

use futures_util::TryStreamExt;
use opendal::ErrorKind;

use super::{Storage, StorageError};
use crate::fault_injection::Op;

/// How many objects' readers are kept open at most.
const OPEN_READERS: usize = 64;

impl Storage {
    /// Read a whole object.
    pub fn read(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        // `to_bytes` is free for a buffer in one piece, and so is turning
        // uniquely owned `Bytes` into a `Vec`: no copy of a large object.
        self.faults.run(Op::Read, key, || {
            // Where the store reads on the calling thread, it refuses what
            // is not a regular file (see `read_limited_direct`), which
            // OpenDAL's local folder would open and wait on.
            if let Some(read) = self.backend.read_limited_direct(key, u64::MAX) {
                return read.map_err(|e| self.direct_failure(key, e, None));
            }
            self.run(|op| async move { op.read(key).await })
                .map(|b| Vec::from(b.to_bytes()))
                .map_err(|e| self.fail("read", key, e))
        })
    }

    /// Read a whole object that may be at most `limit` bytes long: a
    /// larger one is refused as soon as more than `limit` bytes have
    /// arrived, so that a damaged or hostile repository cannot make obnam
    /// read a huge object into memory.
    pub fn read_limited(&self, key: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
        self.faults.run(Op::Read, key, || {
            if let Some(read) = self.backend.read_limited_direct(key, limit) {
                return read.map_err(|e| match e.kind() {
                    std::io::ErrorKind::FileTooLarge => self.too_large(key, limit),
                    _ => self.direct_failure(key, e, None),
                });
            }
            let read = self.run_read(|op| async move {
                let mut stream = op.reader(key).await?.into_stream(..).await?;
                let mut out: Vec<u8> = Vec::new();
                while let Some(buffer) = stream.try_next().await? {
                    if (out.len() + buffer.len()) as u64 > limit {
                        return Ok(None);
                    }
                    // Copied out as it arrives: see `read_pieces` on SFTP.
                    for piece in buffer {
                        out.extend_from_slice(&piece);
                    }
                }
                Ok(Some(out))
            });
            match read {
                Ok(Some(data)) => Ok(data),
                Ok(None) => Err(self.too_large(key, limit)),
                Err(e) => Err(self.fail("read", key, e)),
            }
        })
    }

    /// The error of an object larger than `limit` bytes.
    fn too_large(&self, key: &str, limit: u64) -> StorageError {
        StorageError::Damaged {
            url: self.url.clone(),
            key: key.to_string(),
            reason: format!(
                "it is larger than the format allows for it ({limit} bytes); \
                 damaged or not written by obnam"
            ),
        }
    }

    /// The error of a read done on the calling thread (see
    /// [`Backend::read_range_direct`](crate::backend::Backend::read_range_direct)),
    /// in the words of a read through OpenDAL; `end` is where a ranged
    /// read ends.
    fn direct_failure(&self, key: &str, e: std::io::Error, end: Option<u64>) -> StorageError {
        if let Some(reason) = super::NotAnObject::of(&e) {
            return StorageError::Damaged {
                url: self.url.clone(),
                key: key.to_string(),
                reason: reason.to_string(),
            };
        }
        match (e.kind(), end) {
            (std::io::ErrorKind::NotFound, _) => StorageError::NotFound {
                url: self.url.clone(),
                key: key.to_string(),
            },
            (std::io::ErrorKind::UnexpectedEof, Some(end)) => StorageError::Failed {
                url: self.url.clone(),
                op: "read",
                key: key.to_string(),
                message: format!("it ends before byte {end} (truncated or damaged)"),
            },
            _ => StorageError::Failed {
                url: self.url.clone(),
                op: "read",
                key: key.to_string(),
                message: e.to_string(),
            },
        }
    }

    /// Read a whole object as the pieces it arrived in, without copying
    /// them into one block; one longer than `limit` bytes is damaged (a
    /// store answering with gigabytes cannot make the reader hold them).
    pub fn read_pieces(&self, key: &str, limit: u64) -> Result<opendal::Buffer, StorageError> {
        self.faults.run(Op::Read, key, || {
            if let Some(read) = self.backend.read_limited_direct(key, limit) {
                return read.map(opendal::Buffer::from).map_err(|e| match e.kind() {
                    std::io::ErrorKind::FileTooLarge => self.too_large(key, limit),
                    _ => self.direct_failure(key, e, None),
                });
            }
            let backend = self.backend.clone();
            let read = self.run_read(|op| {
                let backend = backend.clone();
                async move { backend.read_whole(&op, key, limit).await }
            });
            match read {
                Ok(Some(pieces)) => Ok(pieces),
                Ok(None) => Err(self.too_large(key, limit)),
                Err(e) => Err(self.fail("read", key, e)),
            }
        })
    }

    /// Read `len` bytes of an object from `offset`. Readers of recently
    /// read objects are kept open: a restore reads many blobs of each pack.
    pub fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.faults.run(Op::Read, key, || {
            if let Some(read) = self.backend.read_range_direct(key, offset, len) {
                return read.map_err(|e| self.direct_failure(key, e, Some(offset + len)));
            }
            let cached = self
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned();
            let reader = match cached {
                Some(r) => r,
                None => {
                    let r = self
                        .run_read(|op| async move { op.reader(key).await })
                        .map_err(|e| self.fail("read", key, e))?;
                    let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
                    if readers.len() >= OPEN_READERS {
                        readers.clear();
                    }
                    readers.insert(key.to_string(), r.clone());
                    r
                }
            };
            // Each try reads the whole range again ([`Storage::run_read`]);
            // where the store runs whole operations again (SFTP), a
            // reader of a session that broke is not tried again.
            let read = if self.backend.retries().reader_survives_failure {
                self.run_read(|_| {
                    let reader = reader.clone();
                    async move { reader.read(offset..offset + len).await }
                })
            } else {
                self.block_on(reader.read(offset..offset + len))
            };
            let data = match read {
                Ok(b) => b.to_vec(),
                // Say plainly what a short object means, rather than the
                // store's account of the range request.
                Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => {
                    return Err(StorageError::Failed {
                        url: self.url.clone(),
                        op: "read",
                        key: key.to_string(),
                        message: format!(
                            "it ends before byte {} (truncated or damaged)",
                            offset + len
                        ),
                    })
                }
                Err(e) => return Err(self.fail("read", key, e)),
            };
            if data.len() as u64 != len {
                return Err(StorageError::Failed {
                    url: self.url.clone(),
                    op: "read",
                    key: key.to_string(),
                    message: format!(
                        "expected {len} bytes at offset {offset}, got {}",
                        data.len()
                    ),
                });
            }
            Ok(data)
        })
    }
}
