//! Pack files: many blobs (chunks or tree objects) in one storage object.
//!
//! ```text
//! "OBNAMPK1"
//! blob, blob, ...          each a sealed object (filter tags + payload)
//! trailer                  a sealed object (context `pack/ID`) listing the
//!                          blobs: per blob token (32), variant (u64 LE),
//!                          offset (u32 LE), length (u32 LE), kind (u8)
//! u32 LE                   length of the trailer
//! "OBPK"
//! ```
//!
//! The trailer makes a pack self-describing, so indexes can be rebuilt from
//! packs alone. Packs are stored under `packs/XX/ID` (XX: the first two hex
//! digits of the id) to keep folders small.

use super::ids::{ChunkId, ObjectId};
use super::index::{BlobKind, IndexEntry, Location, Reader};

/// The magic bytes at the start of a pack.
pub const MAGIC: &[u8; 8] = b"OBNAMPK1";
const TRAILER_MAGIC: &[u8; 4] = b"OBPK";

/// The storage key of a pack.
pub fn key(id: &ObjectId) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{}", &hex[..2], hex)
}

/// A pack being filled.
pub struct Packer {
    pub id: ObjectId,
    pub number: u32,
    pub kind: BlobKind,
    pub buf: Vec<u8>,
    pub entries: Vec<IndexEntry>,
}

impl Packer {
    /// A new, empty pack in `buf` (its content dropped, its room kept).
    pub fn new(id: ObjectId, number: u32, kind: BlobKind, mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(MAGIC);
        Packer {
            id,
            number,
            kind,
            buf,
            entries: Vec::new(),
        }
    }

    /// Whether adding a blob of `len` bytes would take the pack past
    /// `target`, its trailer counted (or the pack already lists as many
    /// blobs as an index object may). Counting the trailer keeps a pack of
    /// many small blobs within the buffer it was given: its trailer (49
    /// bytes a blob) once overflowed the slack, and the whole pack was
    /// copied into a buffer twice its size to append it.
    pub fn would_overflow(&self, len: usize, target: usize) -> bool {
        !self.entries.is_empty()
            && (self.buf.len() + len + trailer_len(self.entries.len() + 1) > target
                || self.entries.len() >= super::index::MAX_ENTRIES_PER_OBJECT)
    }

    /// Append a sealed blob; returns where it is.
    pub fn add(&mut self, id: ChunkId, header: &[u8], payload: &[u8]) -> Location {
        let location = Location {
            pack: self.number,
            offset: self.buf.len() as u32,
            length: (header.len() + payload.len()) as u32,
            kind: self.kind,
        };
        self.buf.extend_from_slice(header);
        self.buf.extend_from_slice(payload);
        self.entries.push(IndexEntry { id, location });
        location
    }

    /// The bytes of a blob in this pack.
    pub fn blob(&self, location: &Location) -> Option<Vec<u8>> {
        let start = location.offset as usize;
        self.buf
            .get(start..start + location.length as usize)
            .map(<[u8]>::to_vec)
    }
}

/// A pack whose bytes are complete, being written (and readable meanwhile).
pub struct Sealed {
    pub id: ObjectId,
    pub kind: BlobKind,
    pub entries: Vec<IndexEntry>,
    pub bytes: bytes::Bytes,
}

impl Sealed {
    /// The bytes of a blob in this pack.
    pub fn blob(&self, location: &Location) -> Option<Vec<u8>> {
        let start = location.offset as usize;
        self.bytes
            .get(start..start + location.length as usize)
            .map(<[u8]>::to_vec)
    }
}

/// The length of one blob's record in a pack trailer.
const TRAILER_RECORD_LEN: usize = 32 + 8 + 4 + 4 + 1;

/// The length of the plain bytes of the trailer of a pack of `blobs` blobs.
pub fn trailer_len(blobs: usize) -> usize {
    4 + blobs * TRAILER_RECORD_LEN
}

/// Room for what sealing a trailer adds to its plain bytes (the object
/// header naming the pack and the filters, an encryption's nonce and tag)
/// and for the length and magic after it.
pub const TRAILER_SLACK: usize = 4 << 10;

/// The plain bytes of a pack trailer.
pub fn trailer(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(trailer_len(entries.len()));
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id.token.0);
        out.extend_from_slice(&e.id.variant.to_le_bytes());
        out.extend_from_slice(&e.location.offset.to_le_bytes());
        out.extend_from_slice(&e.location.length.to_le_bytes());
        out.push(e.location.kind as u8);
    }
    out
}

/// Finish a pack's bytes: append the sealed trailer and its length.
pub fn finish(mut buf: Vec<u8>, sealed_trailer: &[u8]) -> Vec<u8> {
    buf.extend_from_slice(sealed_trailer);
    buf.extend_from_slice(&(sealed_trailer.len() as u32).to_le_bytes());
    buf.extend_from_slice(TRAILER_MAGIC);
    buf
}

/// Split a stored pack into its blob area and its sealed trailer.
pub fn split_trailer(pack: &[u8]) -> Result<&[u8], String> {
    if pack.len() < MAGIC.len() + 8 || &pack[..8] != MAGIC {
        return Err("not a pack (bad magic)".into());
    }
    let end = pack.len();
    if &pack[end - 4..] != TRAILER_MAGIC {
        // Said as precisely as the bytes allow: a pack whose trailer ends
        // before its last byte had bytes added (it was called "truncated"
        // too).
        let ends_early = pack[MAGIC.len()..end - 4]
            .windows(TRAILER_MAGIC.len())
            .rposition(|w| w == TRAILER_MAGIC)
            .map(|at| MAGIC.len() + at + TRAILER_MAGIC.len())
            .filter(|trailer_end| trailer_at(pack, *trailer_end).is_ok());
        return Err(match ends_early {
            Some(trailer_end) => format!(
                "the pack does not end with its trailer: {} bytes follow what looks like its \
                 end at byte {trailer_end} (bytes were added to it)",
                end - trailer_end
            ),
            None => "the pack does not end with its trailer (it was cut short, or its last \
                     bytes were changed)"
                .into(),
        });
    }
    trailer_at(pack, end)
}

/// The sealed trailer of a pack whose trailer (length and magic) ends at
/// byte `end`.
fn trailer_at(pack: &[u8], end: usize) -> Result<&[u8], String> {
    let len = u32::from_le_bytes(pack[end - 8..end - 4].try_into().map_err(|_| "short")?) as usize;
    let start = (end - 8)
        .checked_sub(len)
        .ok_or("trailer length out of range")?;
    if start < MAGIC.len() {
        return Err("trailer length out of range".into());
    }
    Ok(&pack[start..end - 8])
}

/// Decode a pack trailer's plain bytes.
pub fn decode_trailer(data: &[u8], pack_number: u32) -> Result<Vec<IndexEntry>, String> {
    let mut r = Reader { data, pos: 0 };
    let count = r.u32()? as usize;
    let mut entries = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let mut token = [0u8; 32];
        token.copy_from_slice(r.take(32)?);
        let variant = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| "short")?);
        let offset = r.u32()?;
        let length = r.u32()?;
        let kind = match r.take(1)?[0] {
            0 => BlobKind::Data,
            1 => BlobKind::Tree,
            _ => return Err("unknown blob kind".into()),
        };
        entries.push(IndexEntry {
            id: ChunkId {
                token: super::ids::Token(token),
                variant,
            },
            location: Location {
                pack: pack_number,
                offset,
                length,
                kind,
            },
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack of some blob bytes and a trailer of `trailer` bytes.
    fn pack_bytes(trailer: &[u8]) -> Vec<u8> {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&[7u8; 100]);
        finish(buf, trailer)
    }

    #[test]
    fn the_trailer_is_found_at_the_end() {
        let pack = pack_bytes(b"the sealed list");
        assert_eq!(split_trailer(&pack).unwrap(), b"the sealed list");
    }

    #[test]
    fn bytes_added_after_the_trailer_are_told_from_a_cut() {
        let pack = pack_bytes(b"the sealed list");
        let mut longer = pack.clone();
        longer.extend_from_slice(b"leftovers");
        let e = split_trailer(&longer).unwrap_err();
        assert!(
            e.contains("9 bytes follow") && e.contains(&format!("byte {}", pack.len())),
            "{e}"
        );
        assert!(e.contains("bytes were added") && !e.contains("  "), "{e}");
        for cut in [1, 5, 30] {
            let e = split_trailer(&pack[..pack.len() - cut]).unwrap_err();
            assert!(
                e.contains("it was cut short") && !e.contains("  "),
                "{cut}: {e}"
            );
        }
        assert!(split_trailer(&pack[..10])
            .unwrap_err()
            .contains("bad magic"));
    }
}
