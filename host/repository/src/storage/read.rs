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
            let read = self.run(|op| async move {
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
                Ok(None) => Err(StorageError::Failed {
                    url: self.url.clone(),
                    op: "read",
                    key: key.to_string(),
                    message: format!(
                        "it is larger than the format allows for it ({limit} bytes); \
                         damaged or not written by obnam"
                    ),
                }),
                Err(e) => Err(self.fail("read", key, e)),
            }
        })
    }

    /// Read a whole object as the pieces it arrived in, without copying
    /// them into one block.
    pub fn read_pieces(&self, key: &str) -> Result<opendal::Buffer, StorageError> {
        self.faults.run(Op::Read, key, || {
            let backend = self.backend.clone();
            self.run(|op| {
                let backend = backend.clone();
                async move { backend.read_whole(&op, key).await }
            })
            .map_err(|e| self.fail("read", key, e))
        })
    }

    /// Read `len` bytes of an object from `offset`. Readers of recently
    /// read objects are kept open: a restore reads many blobs of each pack.
    pub fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.faults.run(Op::Read, key, || {
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
                        .run(|op| async move { op.reader(key).await })
                        .map_err(|e| self.fail("read", key, e))?;
                    let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
                    if readers.len() >= OPEN_READERS {
                        readers.clear();
                    }
                    readers.insert(key.to_string(), r.clone());
                    r
                }
            };
            let data = match self.block_on(reader.read(offset..offset + len)) {
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
