//! Index segments: immutable, sorted files of index entries, read a page
//! at a time, that hold the loaded part of the chunk index on local disk
//! instead of in memory ([`crate::index_cache`] decides which exist).
//!
//! A segment is written once, to a temporary name, and renamed into
//! place; it is never modified. A process keeps in memory only the
//! segment's tables (its packs and the index objects it covers) and one
//! 8-byte key per 4 KiB page (the first 8 bytes of the token of the page's
//! first entry): a lookup finds its page by binary search in those keys
//! and reads that page (usually one, `read_at`; no mmap, as this crate
//! has no `unsafe`). The OS page cache keeps the pages that are read
//! often; nothing else is cached, so the memory of a segment is about
//! 1/500 of its size on disk, plus its pack table.
//!
//! Everything read from a segment file is checked: the header and tables
//! by a hash over them, each page by a keyed hash (keyed by the segment's
//! random salt, so a page of another segment, or of another place in this
//! one, does not pass). A segment that fails a check is not used (see
//! [`crate::index_cache`]): the cache is an optimisation, never a source
//! of truth, and a damaged one costs a rebuild, never a wrong answer.
//!
//! ```text
//! header (4096 bytes, the rest zero):
//!   "OBNAMSG2", salt (32), entries N (u64), packs P (u32), objects O (u32),
//!   tables length T (u64), hash (16: BLAKE3 of the 64 bytes before it and the tables)
//! ceil(N / 73) pages of 4096 bytes: 73 entries of 56 bytes, then a u64
//!   checksum (BLAKE3 keyed by the salt, of the 4088 bytes and the page number)
//! tables (T bytes):
//!   P pack ids (16 bytes each, ascending)
//!   P pack ends (u64 each): where the last of the segment's entries in
//!     each pack ends (offset + length), the least size the pack can have
//!   O objects: name length (u16), name, entries (u64), packs listed K (u32), K pack numbers (u32)
//!   one key (u64) per page
//! entry: token (32), variant (u64), pack number (u32, into the packs above),
//!   offset (u32), length (u32), kind (u8) << 24 | object number (u24, into the objects above)
//! ```
//!
//! Entries are sorted by chunk id, then pack id, then offset, then
//! object. Every integer is little-endian.

use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::ids::{ChunkId, ObjectId, Token};
use super::index::BlobKind;

const MAGIC: &[u8; 8] = b"OBNAMSG2";
/// The magic of segments of an older format, which a newer obnam
/// replaces without a word (the first had no pack ends).
const OLDER_MAGICS: [&[u8; 8]; 1] = [b"OBNAMSG1"];
/// Bytes of a page, and of the header.
pub const PAGE_BYTES: usize = 4096;
/// Bytes of an entry.
pub const ENTRY_BYTES: usize = 56;
/// Entries in a full page.
pub const ENTRIES_PER_PAGE: usize = 73;
const CHECKSUM_AT: usize = ENTRIES_PER_PAGE * ENTRY_BYTES;
const HEADER_FIELDS: usize = 64;
/// The most index objects one segment covers (object numbers are 24 bits).
pub const MAX_OBJECTS: usize = 1 << 24;
/// The longest index object name a segment records.
const MAX_NAME: usize = 255;
/// The largest segment file read whole into memory when opened, rather
/// than a page at a time: about 150,000 entries. A backup looks up every
/// chunk of every unchanged file (to find lost ones), and a lookup in
/// memory costs a tenth of a page read through the OS. With at most a
/// few segments (see [`crate::index_cache::MAX_SEGMENTS`]), this bounds
/// the memory so held to a few times 8 MiB; larger segments, of larger
/// repositories, are read a page at a time.
const IN_MEMORY_MAX: u64 = 8 << 20;
/// The most entries a segment may claim (far beyond any real one; it
/// keeps the arithmetic on the claimed sizes from overflowing).
const MAX_ENTRIES: u64 = 1 << 40;

/// Why a segment could not be used.
#[derive(Debug, thiserror::Error)]
#[error("index cache file {path}: {reason}")]
pub struct SegmentError {
    /// The file (or "(memory)").
    pub path: String,
    pub reason: String,
}

/// One entry as a segment holds it: pack and object are numbers into the
/// segment's own tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegEntry {
    pub id: ChunkId,
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub kind: BlobKind,
    /// The index object that listed it, by number.
    pub object: u32,
}

/// One index object a segment covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoveredObject {
    /// Its name under `index/`.
    pub name: String,
    /// How many entries it listed.
    pub entries: u64,
    /// The packs it lists, by number into the segment's pack table.
    pub packs: Vec<u32>,
}

/// Where a segment's bytes are.
enum Bytes {
    File(File),
    /// A segment kept in memory: a small one (see [`IN_MEMORY_MAX`]), or
    /// when no cache file could be written.
    Memory(Vec<u8>),
}

/// An open, checked segment.
pub struct Segment {
    path: Option<PathBuf>,
    bytes: Bytes,
    salt: [u8; 32],
    entries: u64,
    /// Pack ids, ascending (taken by the index that uses the segment:
    /// see [`take_packs`](Self::take_packs)).
    pub packs: Vec<ObjectId>,
    /// Where the segment's last entry in each pack ends, as `packs`.
    pub pack_ends: Vec<u64>,
    /// How many packs the pack table holds.
    pack_count: u32,
    pub objects: Vec<CoveredObject>,
    /// The first 8 bytes of the first token of each page.
    keys: Vec<u64>,
    /// Set when a page failed its check: the segment is not used again.
    broken: AtomicBool,
    /// One bit per page: checked already. The file is never changed in
    /// place, so a page that passed once is not hashed again in this run.
    checked: Vec<AtomicU64>,
}

fn prefix(token: &Token) -> u64 {
    prefix_of(&token.0)
}

/// The first eight bytes of an encoded entry (or token) as a number.
fn prefix_of(raw: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[..8]);
    u64::from_be_bytes(b)
}

fn page_checksum(salt: &[u8; 32], page: u64, bytes: &[u8]) -> u64 {
    let mut h = blake3::Hasher::new_keyed(salt);
    // The page first, whole: BLAKE3 hashes its 1 KiB chunks in parallel
    // only while its buffer is empty.
    h.update(bytes);
    h.update(&page.to_le_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(out)
}

fn header_hash(fields: &[u8], tables: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(fields);
    h.update(tables);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

fn pages_for(entries: u64) -> u64 {
    entries.div_ceil(ENTRIES_PER_PAGE as u64)
}

/// A little cursor over bytes that fails instead of panicking.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let b = self.data.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(b)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

impl Segment {
    fn error(&self, reason: impl Into<String>) -> SegmentError {
        SegmentError {
            path: self.describe(),
            reason: reason.into(),
        }
    }

    /// The file's path, or "(memory)".
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "(memory)".into(),
        }
    }

    /// The file, if the segment is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes of memory its tables (and its pages, if held in memory)
    /// hold.
    pub fn memory_bytes(&self) -> usize {
        let pages = match &self.bytes {
            Bytes::File(_) => 0,
            Bytes::Memory(data) => data.capacity(),
        };
        pages
            + self.packs.capacity() * 16
            + self.pack_ends.capacity() * 8
            + self.keys.capacity() * 8
            + self.checked.capacity() * 8
            + self
                .objects
                .iter()
                .map(|o| 48 + o.name.capacity() + o.packs.capacity() * 4)
                .sum::<usize>()
    }

    /// Take the pack table out (the index keeps one pack table for all
    /// segments, and the segment's numbers into it).
    pub fn take_packs(&mut self) -> Vec<ObjectId> {
        std::mem::take(&mut self.packs)
    }

    /// Take the pack ends out (as [`take_packs`](Self::take_packs)).
    pub fn take_pack_ends(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.pack_ends)
    }

    /// How many packs the segment's pack table holds.
    pub fn pack_count(&self) -> usize {
        self.pack_count as usize
    }

    /// Whether a page failed its check since it was opened.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Open and check a segment file.
    pub fn open(path: &Path) -> Result<Segment, SegmentError> {
        Segment::open_held_up_to(path, IN_MEMORY_MAX)
    }

    /// Open and check a segment file, read whole into memory if it is at
    /// most `in_memory_max` bytes.
    fn open_held_up_to(path: &Path, in_memory_max: u64) -> Result<Segment, SegmentError> {
        let fail = |reason: String| SegmentError {
            path: path.display().to_string(),
            reason,
        };
        let file = File::open(path).map_err(|e| fail(e.to_string()))?;
        let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        if len <= in_memory_max {
            // Read whole: a lookup then costs no system call.
            let mut data = vec![0u8; len as usize];
            file.read_exact_at(&mut data, 0)
                .map_err(|e| fail(format!("reading the segment: {e}")))?;
            return Segment::whole(data, Some(path));
        }
        let mut header = [0u8; HEADER_FIELDS + 16];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| fail(format!("reading the header: {e}")))?;
        let (salt, entries, packs, objects, tables_len) =
            parse_header_fields(&header).map_err(&fail)?;
        let pages = pages_for(entries);
        let tables_at = PAGE_BYTES as u64 + pages * PAGE_BYTES as u64;
        if tables_at.checked_add(tables_len) != Some(len) {
            return Err(fail(format!(
                "{len} bytes, not the {} its header announces",
                tables_at.saturating_add(tables_len)
            )));
        }
        let tables_len = usize::try_from(tables_len).map_err(|e| fail(e.to_string()))?;
        let mut tables = vec![0u8; tables_len];
        file.read_exact_at(&mut tables, tables_at)
            .map_err(|e| fail(format!("reading the tables: {e}")))?;
        let mut segment = Segment::unparsed(Some(path), Bytes::File(file), salt, entries);
        segment
            .parse_tables(&header, &tables, packs, objects, pages)
            .map_err(&fail)?;
        Ok(segment)
    }

    /// A segment whose tables are still to be parsed (`parse_tables`).
    fn unparsed(path: Option<&Path>, bytes: Bytes, salt: [u8; 32], entries: u64) -> Segment {
        Segment {
            path: path.map(Path::to_path_buf),
            bytes,
            salt,
            entries,
            packs: Vec::new(),
            pack_ends: Vec::new(),
            pack_count: 0,
            objects: Vec::new(),
            keys: Vec::new(),
            broken: AtomicBool::new(false),
            checked: Vec::new(),
        }
    }

    /// Check and use a whole segment held in memory (as written by a
    /// [`SegmentWriter`] without a file).
    pub fn from_bytes(data: Vec<u8>) -> Result<Segment, SegmentError> {
        Segment::whole(data, None)
    }

    /// Check and use a whole segment held in memory: made in memory
    /// (`path` is `None`), or a small segment file read whole.
    fn whole(data: Vec<u8>, path: Option<&Path>) -> Result<Segment, SegmentError> {
        let fail = |reason: String| SegmentError {
            path: path.map_or_else(|| "(memory)".into(), |p| p.display().to_string()),
            reason,
        };
        let header: [u8; HEADER_FIELDS + 16] = data
            .get(..HEADER_FIELDS + 16)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| fail("truncated header".into()))?;
        let (salt, entries, packs, objects, tables_len) =
            parse_header_fields(&header).map_err(&fail)?;
        let pages = pages_for(entries);
        let tables_at = PAGE_BYTES as u64 + pages * PAGE_BYTES as u64;
        if tables_at.checked_add(tables_len) != Some(data.len() as u64) {
            return Err(fail(format!(
                "{} bytes, not the {} its header announces",
                data.len(),
                tables_at.saturating_add(tables_len)
            )));
        }
        let tables = data[tables_at as usize..].to_vec();
        let mut segment = Segment::unparsed(path, Bytes::Memory(Vec::new()), salt, entries);
        segment
            .parse_tables(&header, &tables, packs, objects, pages)
            .map_err(&fail)?;
        segment.bytes = Bytes::Memory(data);
        Ok(segment)
    }

    fn parse_tables(
        &mut self,
        header: &[u8; HEADER_FIELDS + 16],
        tables: &[u8],
        packs: u32,
        objects: u32,
        pages: u64,
    ) -> Result<(), String> {
        if header_hash(&header[..HEADER_FIELDS], tables) != header[HEADER_FIELDS..] {
            return Err("header or tables do not match their hash".into());
        }
        let mut r = Cursor {
            data: tables,
            pos: 0,
        };
        // Every claimed count is checked against the bytes there are
        // before anything is reserved for it.
        let remaining = |r: &Cursor| (r.data.len() - r.pos) as u64;
        if u64::from(packs) * 16 > remaining(&r) {
            return Err("pack table truncated".into());
        }
        let mut pack_ids = Vec::with_capacity(packs as usize);
        for _ in 0..packs {
            pack_ids.push(ObjectId(r.array()?));
        }
        if pack_ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err("pack table not in order".into());
        }
        if u64::from(packs) * 8 > remaining(&r) {
            return Err("pack ends truncated".into());
        }
        let mut pack_ends = Vec::with_capacity(packs as usize);
        for _ in 0..packs {
            pack_ends.push(r.u64()?);
        }
        if objects as usize > MAX_OBJECTS || u64::from(objects) * 14 > remaining(&r) {
            return Err("object table truncated".into());
        }
        let mut covered = Vec::with_capacity(objects as usize);
        for _ in 0..objects {
            let len = r.u16()? as usize;
            if len > MAX_NAME {
                return Err("object name too long".into());
            }
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|_| "object name not UTF-8")?
                .to_string();
            let entries = r.u64()?;
            let count = r.u32()?;
            if u64::from(count) * 4 > remaining(&r) {
                return Err("object's pack list truncated".into());
            }
            let mut listed = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let n = r.u32()?;
                if n >= packs {
                    return Err("pack number out of range".into());
                }
                listed.push(n);
            }
            covered.push(CoveredObject {
                name,
                entries,
                packs: listed,
            });
        }
        if pages * 8 != remaining(&r) {
            return Err("page keys do not match the pages".into());
        }
        let mut keys = Vec::with_capacity(pages as usize);
        for _ in 0..pages {
            keys.push(r.u64()?);
        }
        self.packs = pack_ids;
        self.pack_ends = pack_ends;
        self.pack_count = packs;
        self.objects = covered;
        self.checked = (0..keys.len().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        self.keys = keys;
        Ok(())
    }

    fn pages(&self) -> u64 {
        self.keys.len() as u64
    }

    /// Read and check page `n`, appending its entries to `out`.
    pub fn read_page(&self, n: u64, out: &mut Vec<SegEntry>) -> Result<(), SegmentError> {
        let mut buf = [0u8; PAGE_BYTES];
        let entries = self.checked_page(n, &mut buf)?;
        for raw in entries.chunks_exact(ENTRY_BYTES) {
            out.push(self.decode_entry(raw)?);
        }
        Ok(())
    }

    /// Page `n`, checked: its entries' bytes (from memory, or read into
    /// `buf`). A page that fails its check marks the segment broken.
    fn checked_page<'a>(
        &'a self,
        n: u64,
        buf: &'a mut [u8; PAGE_BYTES],
    ) -> Result<&'a [u8], SegmentError> {
        if self.is_broken() {
            return Err(self.error("damaged earlier in this run"));
        }
        let result = self.read_checked_page(n, buf);
        if result.is_err() && !self.broken.swap(true, Ordering::Relaxed) {
            // Not used again by this run; the next one rebuilds it.
            if let Some(path) = &self.path {
                let _ = std::fs::remove_file(path);
            }
        }
        result
    }

    fn read_checked_page<'a>(
        &'a self,
        n: u64,
        buf: &'a mut [u8; PAGE_BYTES],
    ) -> Result<&'a [u8], SegmentError> {
        if n >= self.pages() {
            return Err(self.error(format!("no page {n}")));
        }
        let at = PAGE_BYTES as u64 + n * PAGE_BYTES as u64;
        let page: &[u8] = match &self.bytes {
            Bytes::File(f) => {
                f.read_exact_at(buf, at)
                    .map_err(|e| self.error(format!("reading page {n}: {e}")))?;
                buf
            }
            Bytes::Memory(data) => data
                .get(at as usize..at as usize + PAGE_BYTES)
                .ok_or_else(|| self.error(format!("no page {n}")))?,
        };
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        let done = self
            .checked
            .get(word)
            .is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0);
        let (body, sum) = page.split_at(CHECKSUM_AT);
        if !done {
            let mut stored = [0u8; 8];
            stored.copy_from_slice(sum);
            if page_checksum(&self.salt, n, body) != u64::from_le_bytes(stored) {
                return Err(self.error(format!("page {n} does not match its checksum")));
            }
            if let Some(w) = self.checked.get(word) {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
        let count = (self.entries - n * ENTRIES_PER_PAGE as u64).min(ENTRIES_PER_PAGE as u64);
        Ok(&body[..count as usize * ENTRY_BYTES])
    }

    fn decode_entry(&self, raw: &[u8]) -> Result<SegEntry, SegmentError> {
        let mut r = Cursor { data: raw, pos: 0 };
        let bad = |e: String| self.error(e);
        let token = Token(r.array().map_err(bad)?);
        let variant = r.u64().map_err(bad)?;
        let pack = r.u32().map_err(bad)?;
        let offset = r.u32().map_err(bad)?;
        let length = r.u32().map_err(bad)?;
        let last = r.u32().map_err(bad)?;
        let kind =
            BlobKind::from_u8((last >> 24) as u8).ok_or_else(|| self.error("unknown blob kind"))?;
        let object = last & 0x00ff_ffff;
        if pack >= self.pack_count || object as usize >= self.objects.len() {
            return Err(self.error("pack or object number out of range"));
        }
        Ok(SegEntry {
            id: ChunkId { token, variant },
            pack,
            offset,
            length,
            kind,
            object,
        })
    }

    /// Every entry of chunk `id`, or of any id of `token` when `id` is
    /// `None`, added to `out`.
    pub fn lookup(
        &self,
        token: &Token,
        id: Option<&ChunkId>,
        out: &mut Vec<SegEntry>,
    ) -> Result<(), SegmentError> {
        self.visit(token, |e| {
            if id.is_none_or(|id| e.id == *id) {
                out.push(e);
            }
            ControlFlow::Continue(())
        })
    }

    /// Whether an entry of chunk `id` is one that `accept` takes, looking
    /// no further than the first: what a backup asks of every chunk of
    /// every unchanged file, answered without gathering entries.
    pub fn any_of(
        &self,
        id: &ChunkId,
        mut accept: impl FnMut(&SegEntry) -> bool,
    ) -> Result<bool, SegmentError> {
        let mut found = false;
        self.visit(&id.token, |e| {
            if e.id == *id && accept(&e) {
                found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// Call `each` with the entries of `token`, in order, until it breaks.
    fn visit(
        &self,
        token: &Token,
        mut each: impl FnMut(SegEntry) -> ControlFlow<()>,
    ) -> Result<(), SegmentError> {
        let key = prefix(token);
        // The entries of `token` start in the last page whose key is
        // below it, or in the first page whose key is it.
        let first = self.keys.partition_point(|k| *k < key).saturating_sub(1) as u64;
        let mut buf = [0u8; PAGE_BYTES];
        for n in first..self.pages() {
            if n > first && self.keys[n as usize] > key {
                break;
            }
            let page = self.checked_page(n, &mut buf)?;
            let entry = |i: usize| &page[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES];
            let count = page.len() / ENTRY_BYTES;
            // Entries are sorted by token: only those of `token` are
            // decoded. A token's first eight bytes, compared as a number,
            // decide almost every step of the search; the whole token is
            // compared only where they are equal.
            let below = |raw: &[u8]| match prefix_of(raw).cmp(&key) {
                std::cmp::Ordering::Equal => raw[..32] < token.0[..],
                other => other.is_lt(),
            };
            let (mut lo, mut hi) = (0, count);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if below(entry(mid)) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            for e in (lo..count).map(entry) {
                if e[..32] != token.0[..] {
                    return Ok(());
                }
                if each(self.decode_entry(e)?).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Read the entries in order, a page at a time.
    pub fn cursor(&self) -> SegmentCursor<'_> {
        self.cursor_at_page(0)
    }

    /// Read the entries in order from the page where those of `token`
    /// would start (entries before it in that page come first).
    pub fn cursor_from(&self, token: &Token) -> SegmentCursor<'_> {
        let key = prefix(token);
        self.cursor_at_page(self.keys.partition_point(|k| *k < key).saturating_sub(1) as u64)
    }

    fn cursor_at_page(&self, page: u64) -> SegmentCursor<'_> {
        SegmentCursor {
            segment: self,
            page,
            buf: Vec::with_capacity(ENTRIES_PER_PAGE),
            pos: 0,
        }
    }
}

/// Whether the file at `path` is a segment of an older format (replaced
/// without a word, not a damaged one).
pub fn older_format(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut magic, 0))
        .is_ok_and(|()| OLDER_MAGICS.iter().any(|m| **m == magic))
}

type HeaderFields = ([u8; 32], u64, u32, u32, u64);

fn parse_header_fields(header: &[u8; HEADER_FIELDS + 16]) -> Result<HeaderFields, String> {
    let mut r = Cursor {
        data: header,
        pos: 0,
    };
    if r.take(8)? != MAGIC {
        return Err("not an index segment (bad magic)".into());
    }
    let salt = r.array()?;
    let entries = r.u64()?;
    let packs = r.u32()?;
    let objects = r.u32()?;
    let tables_len = r.u64()?;
    if entries > MAX_ENTRIES || tables_len > MAX_ENTRIES {
        return Err("impossible sizes".into());
    }
    Ok((salt, entries, packs, objects, tables_len))
}

/// The entries of a segment in order.
#[derive(Clone)]
pub struct SegmentCursor<'a> {
    segment: &'a Segment,
    page: u64,
    buf: Vec<SegEntry>,
    pos: usize,
}

impl SegmentCursor<'_> {
    /// The next entry without taking it.
    pub fn peek(&mut self) -> Result<Option<&SegEntry>, SegmentError> {
        while self.pos >= self.buf.len() {
            if self.page >= self.segment.pages() {
                return Ok(None);
            }
            self.buf.clear();
            self.pos = 0;
            self.segment.read_page(self.page, &mut self.buf)?;
            self.page += 1;
        }
        Ok(self.buf.get(self.pos))
    }

    /// Take the next entry.
    pub fn advance(&mut self) {
        self.pos += 1;
    }
}

/// Where a segment being written goes.
enum Sink {
    File { file: File, path: PathBuf },
    Memory(Vec<u8>),
}

/// Writes a segment: entries in order, then its tables.
pub struct SegmentWriter {
    sink: Sink,
    salt: [u8; 32],
    page: Vec<u8>,
    in_page: usize,
    pages: u64,
    entries: u64,
    keys: Vec<u64>,
    packs: usize,
    /// Where the entries written so far end in each pack.
    pack_ends: Vec<u64>,
    objects: usize,
    last: Option<(ChunkId, u32, u32, u32)>,
}

impl SegmentWriter {
    /// A segment written to `path` (a temporary name; the caller renames
    /// it when [`finish`](Self::finish)ed), or kept in memory when `path`
    /// is `None`. `packs` and `objects` are how many the tables will hold.
    pub fn new(path: Option<&Path>, packs: usize, objects: usize) -> std::io::Result<Self> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
        let sink = match path {
            Some(p) => {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(p)?;
                // The header's place; it is written last.
                file.write_all(&[0u8; PAGE_BYTES])?;
                Sink::File {
                    file,
                    path: p.to_path_buf(),
                }
            }
            None => Sink::Memory(vec![0u8; PAGE_BYTES]),
        };
        if objects > MAX_OBJECTS {
            return Err(std::io::Error::other(
                "too many index objects for a segment",
            ));
        }
        Ok(SegmentWriter {
            sink,
            salt,
            page: Vec::with_capacity(PAGE_BYTES),
            in_page: 0,
            pages: 0,
            entries: 0,
            keys: Vec::new(),
            packs,
            pack_ends: vec![0; packs],
            objects,
            last: None,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::File { file, .. } => file.write_all(bytes),
            Sink::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Add an entry; entries come in the segment's order (see the module's
    /// docs), numbers within the tables to come.
    pub fn push(&mut self, e: &SegEntry) -> std::io::Result<()> {
        let key = (e.id, e.pack, e.offset, e.object);
        if self.last.is_some_and(|last| last > key) {
            return Err(std::io::Error::other("segment entries out of order"));
        }
        if e.pack as usize >= self.packs || e.object as usize >= self.objects {
            return Err(std::io::Error::other("segment entry out of its tables"));
        }
        self.last = Some(key);
        let end = &mut self.pack_ends[e.pack as usize];
        *end = (*end).max(u64::from(e.offset) + u64::from(e.length));
        if self.in_page == 0 {
            self.keys.push(prefix(&e.id.token));
        }
        self.page.extend_from_slice(&e.id.token.0);
        self.page.extend_from_slice(&e.id.variant.to_le_bytes());
        self.page.extend_from_slice(&e.pack.to_le_bytes());
        self.page.extend_from_slice(&e.offset.to_le_bytes());
        self.page.extend_from_slice(&e.length.to_le_bytes());
        let last = ((e.kind as u32) << 24) | e.object;
        self.page.extend_from_slice(&last.to_le_bytes());
        self.in_page += 1;
        self.entries += 1;
        if self.in_page == ENTRIES_PER_PAGE {
            self.end_page()?;
        }
        Ok(())
    }

    fn end_page(&mut self) -> std::io::Result<()> {
        self.page.resize(CHECKSUM_AT, 0);
        let sum = page_checksum(&self.salt, self.pages, &self.page);
        let mut page = std::mem::take(&mut self.page);
        page.extend_from_slice(&sum.to_le_bytes());
        self.write(&page)?;
        page.clear();
        self.page = page;
        self.in_page = 0;
        self.pages += 1;
        Ok(())
    }

    /// Write the tables and the header. Returns the finished segment's
    /// bytes when it is kept in memory (`None` for a file, which is
    /// synced to disk).
    pub fn finish(
        mut self,
        packs: &[ObjectId],
        objects: &[CoveredObject],
    ) -> std::io::Result<Option<Vec<u8>>> {
        if packs.len() != self.packs || objects.len() != self.objects {
            return Err(std::io::Error::other(
                "segment tables differ from their sizes",
            ));
        }
        if self.in_page > 0 {
            self.end_page()?;
        }
        let mut tables = Vec::with_capacity(packs.len() * 24 + self.keys.len() * 8);
        for p in packs {
            tables.extend_from_slice(&p.0);
        }
        for end in &self.pack_ends {
            tables.extend_from_slice(&end.to_le_bytes());
        }
        for o in objects {
            if o.name.len() > MAX_NAME {
                return Err(std::io::Error::other("index object name too long"));
            }
            tables.extend_from_slice(&(o.name.len() as u16).to_le_bytes());
            tables.extend_from_slice(o.name.as_bytes());
            tables.extend_from_slice(&o.entries.to_le_bytes());
            tables.extend_from_slice(&(o.packs.len() as u32).to_le_bytes());
            for n in &o.packs {
                tables.extend_from_slice(&n.to_le_bytes());
            }
        }
        for k in &self.keys {
            tables.extend_from_slice(&k.to_le_bytes());
        }
        self.write(&tables)?;
        let mut header = Vec::with_capacity(HEADER_FIELDS + 16);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&self.salt);
        header.extend_from_slice(&self.entries.to_le_bytes());
        header.extend_from_slice(&(packs.len() as u32).to_le_bytes());
        header.extend_from_slice(&(objects.len() as u32).to_le_bytes());
        header.extend_from_slice(&(tables.len() as u64).to_le_bytes());
        let hash = header_hash(&header, &tables);
        header.extend_from_slice(&hash);
        match self.sink {
            Sink::File { file, .. } => {
                file.write_all_at(&header, 0)?;
                file.sync_all()?;
                Ok(None)
            }
            Sink::Memory(mut v) => {
                v[..header.len()].copy_from_slice(&header);
                Ok(Some(v))
            }
        }
    }

    /// The file being written, if any (to remove it on failure).
    pub fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::File { path, .. } => Some(path),
            Sink::Memory(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32, pack: u32, object: u32) -> SegEntry {
        let mut token = [0u8; 32];
        token[..4].copy_from_slice(&n.to_be_bytes());
        SegEntry {
            id: ChunkId {
                token: Token(token),
                variant: 0,
            },
            pack,
            offset: n,
            length: 7,
            kind: BlobKind::Data,
            object,
        }
    }

    pub(crate) fn tables() -> (Vec<ObjectId>, Vec<CoveredObject>) {
        let packs = vec![ObjectId([1; 16]), ObjectId([2; 16])];
        let objects = vec![CoveredObject {
            name: "aa".into(),
            entries: 3,
            packs: vec![0, 1],
        }];
        (packs, objects)
    }

    /// A segment of `n` entries, in memory.
    pub(crate) fn segment_bytes(n: u32) -> Vec<u8> {
        let (packs, objects) = tables();
        let mut w = SegmentWriter::new(None, packs.len(), objects.len()).unwrap();
        for i in 0..n {
            w.push(&entry(i, i % 2, 0)).unwrap();
        }
        w.finish(&packs, &objects).unwrap().unwrap()
    }

    #[test]
    fn entries_are_found_across_pages_and_in_order() {
        let n = 1000;
        let segment = Segment::from_bytes(segment_bytes(n)).unwrap();
        assert_eq!(segment.len(), u64::from(n));
        for i in [0, 1, 72, 73, 74, 500, 999] {
            let e = entry(i, i % 2, 0);
            let mut out = Vec::new();
            segment.lookup(&e.id.token, Some(&e.id), &mut out).unwrap();
            assert_eq!(out, vec![e]);
        }
        let absent = entry(5000, 0, 0);
        let mut out = Vec::new();
        segment.lookup(&absent.id.token, None, &mut out).unwrap();
        assert!(out.is_empty());
        let mut cursor = segment.cursor();
        let mut seen = 0;
        while let Some(e) = cursor.peek().unwrap() {
            assert_eq!(*e, entry(seen, seen % 2, 0));
            cursor.advance();
            seen += 1;
        }
        assert_eq!(seen, n);
    }

    /// Each pack's end is where the last entry in it ends (entry `i` is
    /// at offset `i`, 7 bytes long, in pack `i % 2`), read back as written.
    #[test]
    fn pack_ends_are_where_their_last_entries_end() {
        let mut segment = Segment::from_bytes(segment_bytes(1000)).unwrap();
        assert_eq!(segment.take_pack_ends(), vec![998 + 7, 999 + 7]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        std::fs::write(&path, segment_bytes(10)).unwrap();
        let mut segment = Segment::open_held_up_to(&path, 0).unwrap();
        assert_eq!(segment.take_pack_ends(), vec![8 + 7, 9 + 7]);
        assert!(!older_format(&path));
        // A segment of the first format is told from a damaged one.
        let mut old = segment_bytes(10);
        old[..8].copy_from_slice(b"OBNAMSG1");
        std::fs::write(&path, &old).unwrap();
        assert!(Segment::open(&path).is_err());
        assert!(older_format(&path));
        old[..8].copy_from_slice(b"OBNAMSGX");
        std::fs::write(&path, &old).unwrap();
        assert!(!older_format(&path));
    }

    /// A segment file is found the same whether it is read a page at a
    /// time or held whole, and a page damaged on disk is caught either
    /// way (and the file deleted).
    #[test]
    fn a_segment_file_read_by_pages_or_held_whole_gives_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let bytes = segment_bytes(1000);
        for limit in [0, IN_MEMORY_MAX] {
            std::fs::write(&path, &bytes).unwrap();
            let segment = Segment::open_held_up_to(&path, limit).unwrap();
            assert_eq!(
                matches!(segment.bytes, Bytes::Memory(_)),
                limit > 0,
                "{limit}"
            );
            for i in [0, 73, 999, 5000] {
                let e = entry(i, i % 2, 0);
                let mut out = Vec::new();
                segment.lookup(&e.id.token, None, &mut out).unwrap();
                assert_eq!(out, if i < 1000 { vec![e] } else { vec![] }, "{limit} {i}");
            }
            let mut bad = bytes.clone();
            bad[PAGE_BYTES * 3 + 17] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let segment = Segment::open_held_up_to(&path, limit).unwrap();
            let e = entry(2 * 73 + 1, 1, 0);
            assert!(segment.lookup(&e.id.token, None, &mut Vec::new()).is_err());
            assert!(segment.is_broken() && !path.exists(), "{limit}");
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_caught() {
        let good = segment_bytes(200);
        // (The header's zero padding after its hash is never read.)
        for at in [
            0,
            20,
            70,
            PAGE_BYTES + 5,
            PAGE_BYTES * 2 + 100,
            good.len() - 3,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            let Ok(segment) = Segment::from_bytes(bad) else {
                continue;
            };
            // Tables pass only if the flip was in a page: reading it fails.
            let mut cursor = segment.cursor();
            let mut failed = false;
            loop {
                match cursor.peek() {
                    Ok(Some(_)) => cursor.advance(),
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            assert!(failed, "flip at {at} was not noticed");
            assert!(segment.is_broken());
        }
        for cut in [0, 10, PAGE_BYTES, good.len() - 1] {
            assert!(Segment::from_bytes(good[..cut].to_vec()).is_err());
        }
    }

    #[test]
    fn out_of_order_entries_are_refused() {
        let (packs, objects) = tables();
        let mut w = SegmentWriter::new(None, packs.len(), objects.len()).unwrap();
        w.push(&entry(5, 0, 0)).unwrap();
        assert!(w.push(&entry(4, 0, 0)).is_err());
        assert!(w.push(&entry(6, 2, 0)).is_err());
    }
}
