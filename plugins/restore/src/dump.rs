//! `obnam dump [--generation G] PATH`: something of a generation on
//! standard output, for piping into other tools, without restoring it.
//!
//! A regular file gives its content. Anything else (a directory with
//! everything below it, a symlink, a device) gives a tar stream, GNU
//! format, named as `tar -C PARENT -c NAME` would name it (so `obnam
//! dump /home/alice | tar x` makes `./alice`; a dump of `/` names
//! everything from the root, without the leading `/`). The stream keeps
//! what tar can keep:
//!
//! * owners by number and name, modes (setuid, sticky and all), symlink
//!   targets, FIFOs and device nodes;
//! * modification times to the nanosecond, and times before 1970 (in a
//!   PAX `mtime` record where the header cannot hold them);
//! * extended attributes (PAX `SCHILY.xattr.*` records: extract with
//!   `tar --xattrs --xattrs-include='*'`), and POSIX ACLs also as GNU
//!   tar writes them (`SCHILY.acl.access` and `SCHILY.acl.default`, in
//!   the text form with numeric ids: extract with `tar --acls`), since GNU
//!   tar restores ACLs only from those;
//! * hard links within the dumped tree, as tar links to the first name;
//! * holes: a file with block-aligned runs of zeros is stored as a GNU
//!   sparse file, so that `tar x` makes it sparse again.
//!
//! Sockets cannot be in a tar stream: they are left out, with a warning.
//!
//! Every file's size and checksum are checked before its header is
//! written: a file whose content does not read back as it was backed up
//! ends the dump with an error (exit code 1), never with a silently
//! wrong stream.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, BufWriter, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use plugin_api::checksum::ContentCheck;
use tar::{EntryType, Header};

use plugin_api::{ChunkId, Context, Entry, EntryKind, Repository, Result};

use crate::fetch;
use crate::format;
use crate::names::{self, escape};
use crate::select;
use crate::sparse;

/// Files up to this size keep their data from the first read (which
/// checks them and finds their holes) for the second (which writes them).
const KEEP_FIRST_READ: u64 = 16 << 20;

/// Standard output through the host, as an `io::Write`.
struct Stdout<'a, 'c>(&'a Context<'c>);

impl Write for Stdout<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .output(buf)
            .map_err(|e| io::Error::other(e.message().to_string()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the first read of a file found: its data ranges (file offsets,
/// whole blocks of [`sparse::BLOCK`], holes left out) and, for a small
/// file, its content.
struct Scanned {
    ranges: Vec<Range<u64>>,
    /// Each chunk's length, in order: the second read skips the chunks
    /// that lie wholly in a hole without fetching them.
    lengths: Vec<u64>,
    content: Option<Vec<u8>>,
}

impl Scanned {
    fn data_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }
}

/// Read a file's chunks once: check its size and checksum, and find its
/// holes.
fn scan(repo: &Repository, shown: &str, entry: &Entry) -> Result<Scanned> {
    let keep = entry.size <= KEEP_FIRST_READ;
    let mut content = Vec::new();
    let mut ranges: Vec<Range<u64>> = Vec::new();
    let mut lengths = Vec::with_capacity(entry.chunks.len());
    let mut check = ContentCheck::new(&entry.checksum);
    let mut offset = 0u64;
    fetch::for_each_chunk(repo, &entry.chunks, |chunk| {
        if chunk.zero {
            check.update_zeros(chunk.data.len() as u64);
        } else {
            check.update(&chunk.data);
        }
        if keep {
            content.extend_from_slice(&chunk.data);
        }
        lengths.push(chunk.data.len() as u64);
        let here = if chunk.zero {
            Vec::new()
        } else {
            sparse::write_ranges(offset, &chunk.data)
        };
        for r in here {
            // Whole blocks: GNU tar reads each range's data from a
            // 512-byte boundary of the stream, so a range that ends
            // within a block would shift every range after it. A chunk
            // may start within a block (a backup records the zeros at
            // the edges of a sparse file's data as chunks of their own).
            let start = (offset + r.start as u64) / sparse::BLOCK * sparse::BLOCK;
            let end = (offset + r.end as u64)
                .div_ceil(sparse::BLOCK)
                .saturating_mul(sparse::BLOCK)
                .min(entry.size);
            match ranges.last_mut() {
                Some(last) if last.end >= start => last.end = last.end.max(end),
                _ => ranges.push(start..end),
            }
        }
        offset += chunk.data.len() as u64;
        Ok(())
    })
    .map_err(|e| plugin_api::Error::msg(format!("{shown}: {e}")))?;
    if offset != entry.size {
        plugin_api::bail!(
            "{shown}: its chunks hold {offset} bytes, but it was backed up with {}",
            entry.size
        );
    }
    check
        .finish()
        .map_err(|e| plugin_api::Error::msg(format!("{shown}: {e}")))?;
    Ok(Scanned {
        ranges,
        lengths,
        content: keep.then_some(content),
    })
}

/// A number in a 12-byte GNU header field: octal, or base-256 when it
/// does not fit.
fn numeric12(value: u64) -> [u8; 12] {
    let mut field = [0u8; 12];
    if value < 0o777_7777_7777 {
        let text = format!("{value:011o}");
        field[..11].copy_from_slice(text.as_bytes());
    } else {
        field[0] = 0x80;
        field[4..].copy_from_slice(&value.to_be_bytes());
    }
    field
}

/// The sparse map of a file: its data ranges, and a last empty one at
/// its end when it ends in a hole (as GNU tar writes it).
fn sparse_map(ranges: &[Range<u64>], size: u64) -> Vec<(u64, u64)> {
    let mut map: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end - r.start)).collect();
    if ranges.last().is_none_or(|r| r.end < size) {
        map.push((size, 0));
    }
    map
}

/// Fill a GNU sparse header (type `S`) for `map`, and return the
/// extension blocks that must follow it (for more than 4 ranges).
fn sparse_header(header: &mut Header, map: &[(u64, u64)], size: u64) -> Vec<u8> {
    header.set_entry_type(EntryType::GNUSparse);
    // Every header of the stream is made by `header_for`, as GNU.
    let Some(gnu) = header.as_gnu_mut() else {
        return Vec::new();
    };
    gnu.realsize = numeric12(size);
    let (first, rest) = map.split_at(map.len().min(4));
    for (slot, (offset, len)) in gnu.sparse.iter_mut().zip(first) {
        slot.offset = numeric12(*offset);
        slot.numbytes = numeric12(*len);
    }
    let mut blocks = Vec::new();
    gnu.isextended = [u8::from(!rest.is_empty())];
    let mut groups = rest.chunks(21).peekable();
    while let Some(group) = groups.next() {
        let mut ext = tar::GnuExtSparseHeader::new();
        for (slot, (offset, len)) in ext.sparse.iter_mut().zip(group) {
            slot.offset = numeric12(*offset);
            slot.numbytes = numeric12(*len);
        }
        ext.isextended = [u8::from(groups.peek().is_some())];
        blocks.extend_from_slice(ext.as_bytes());
    }
    blocks
}

/// A file's tar data: the sparse extension blocks, then the bytes of its
/// data ranges, read chunk by chunk (the second read).
struct FileData<'r> {
    repo: &'r Repository,
    chunks: &'r [ChunkId],
    /// The chunks' lengths, from the first read.
    lengths: Vec<u64>,
    /// File offsets to write, in order.
    ranges: Vec<Range<u64>>,
    /// The first range not wholly before the next chunk.
    next_range: usize,
    next_chunk: usize,
    /// File offset of the next chunk.
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl FileData<'_> {
    /// Put the next chunk's bytes that are in the data ranges into `buf`.
    fn refill(&mut self) -> io::Result<bool> {
        while self.next_chunk < self.chunks.len() {
            let (id, len) = (self.chunks[self.next_chunk], self.lengths[self.next_chunk]);
            self.next_chunk += 1;
            let (start, end) = (self.offset, self.offset + len);
            self.offset = end;
            while self
                .ranges
                .get(self.next_range)
                .is_some_and(|r| r.end <= start)
            {
                self.next_range += 1;
            }
            // A chunk wholly in a hole is not read again.
            if self
                .ranges
                .get(self.next_range)
                .is_none_or(|r| r.start >= end)
            {
                continue;
            }
            let data = self
                .repo
                .get_chunk_data(id)
                .map_err(|e| io::Error::other(e.message().to_string()))?;
            if data.len() as u64 != len {
                return Err(io::Error::other(format!(
                    "chunk {} read back with another length",
                    self.next_chunk - 1
                )));
            }
            self.buf.clear();
            self.pos = 0;
            for r in self.ranges[self.next_range..]
                .iter()
                .take_while(|r| r.start < end)
            {
                let (s, e) = (r.start.max(start), r.end.min(end));
                self.buf
                    .extend_from_slice(&data[(s - start) as usize..(e - start) as usize]);
            }
            return Ok(true);
        }
        Ok(false)
    }
}

impl Read for FileData<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() && !self.refill()? {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes the tar stream.
struct TarDump<'a, 'c> {
    repo: Repository,
    tar: tar::Builder<BufWriter<Stdout<'a, 'c>>>,
    /// The tar name of the first dumped name of each hard-linked file,
    /// and its entry (without its chunks: see [`Entry::same_object`]).
    links: HashMap<(u64, u64, u64), (PathBuf, Entry)>,
}

/// A tar header with an entry's metadata, and the PAX records it needs.
fn header_for(entry: &Entry, kind: EntryType, shown: &str) -> (Header, Vec<(String, Vec<u8>)>) {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(entry.mode & 0o7777);
    h.set_uid(entry.uid.into());
    h.set_gid(entry.gid.into());
    // Names longer than the header holds are left to the numbers.
    let _ = h.set_username(&entry.user);
    let _ = h.set_groupname(&entry.group);
    h.set_mtime(entry.mtime.max(0) as u64);
    h.set_size(0);
    let mut pax = Vec::new();
    if entry.mtime_ns != 0 || entry.mtime < 0 {
        pax.push((
            "mtime".to_string(),
            pax_time(entry.mtime, entry.mtime_ns).into_bytes(),
        ));
    }
    for (name, value) in &entry.xattrs {
        let acl = match name.as_slice() {
            b"system.posix_acl_access" => Some("SCHILY.acl.access"),
            b"system.posix_acl_default" => Some("SCHILY.acl.default"),
            _ => None,
        };
        if let Some(key) = acl {
            match acl_text(value) {
                Some(text) => pax.push((key.to_string(), text.into_bytes())),
                None => plugin_api::tracing::warn!(
                    "the ACL of {shown} is not in the form Linux stores ACLs in: only its \
                     extended attribute is in the tar stream"
                ),
            }
        }
        match std::str::from_utf8(name) {
            // A record's key ends at its first '=': tar would set the
            // attribute named by what comes before, to the rest and the
            // value (`user.a=b` of value `v` came out as `user.a` of
            // value `b=v`).
            Ok(text) if text.contains('=') => plugin_api::tracing::warn!(
                "{shown}: its extended attribute {} is left out of the tar stream: a name with \
                 '=' in it cannot be in one (tar would make another attribute of it)",
                escape(name)
            ),
            Ok(name) => pax.push((format!("SCHILY.xattr.{name}"), value.clone())),
            Err(_) => plugin_api::tracing::warn!(
                "{shown}: its extended attribute {} is left out of the tar stream: a name that \
                 is not UTF-8 cannot be in one",
                escape(name)
            ),
        }
    }
    (h, pax)
}

/// A POSIX ACL as Linux stores it in `system.posix_acl_access` or
/// `system.posix_acl_default` (a little-endian header of version 2, then
/// entries of tag, permissions and id, 2 + 2 + 4 bytes), in the text form
/// GNU tar writes (`user::rw-`, one entry a line), with numeric ids, which
/// name the same owners wherever the stream is read. `None` if the bytes
/// are not such an ACL (they come from the repository: anything).
pub fn acl_text(value: &[u8]) -> Option<String> {
    let (header, entries) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*header) != 2 || entries.len() % 8 != 0 {
        return None;
    }
    let mut text = String::new();
    for entry in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let qualified = |kind: &str| format!("{kind}:{id}");
        let who = match tag {
            0x01 => "user:".to_string(),
            0x02 => qualified("user"),
            0x04 => "group:".to_string(),
            0x08 => qualified("group"),
            0x10 => "mask:".to_string(),
            0x20 => "other:".to_string(),
            _ => return None,
        };
        if perm & !7 != 0 {
            return None;
        }
        let bit = |mask: u16, c: char| if perm & mask != 0 { c } else { '-' };
        text.push_str(&format!(
            "{who}:{}{}{}\n",
            bit(4, 'r'),
            bit(2, 'w'),
            bit(1, 'x')
        ));
    }
    Some(text)
}

/// A time as a PAX decimal: seconds and nanoseconds since 1970, which
/// may be negative (`-1.5` is half a second before `-1`).
pub fn pax_time(secs: i64, nanos: u32) -> String {
    let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    let sign = if total < 0 { "-" } else { "" };
    let abs = total.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

impl TarDump<'_, '_> {
    fn pax(&mut self, records: &[(String, Vec<u8>)]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    /// Add one object; `name` is its name in the stream.
    fn add(&mut self, name: PathBuf, shown: &str, entry: &Entry) -> Result<()> {
        let kind = match entry.kind {
            EntryKind::Dir => EntryType::Directory,
            EntryKind::File => EntryType::Regular,
            EntryKind::Symlink => EntryType::Symlink,
            EntryKind::Fifo => EntryType::Fifo,
            EntryKind::CharDevice => EntryType::Char,
            EntryKind::BlockDevice => EntryType::Block,
            EntryKind::Socket => {
                plugin_api::tracing::warn!("{shown}: a socket cannot be in a tar stream; left out");
                return Ok(());
            }
        };
        let (mut h, pax) = header_for(entry, kind, shown);
        // A FIFO, device node or symlink can have several names too.
        // A name whose object the generation records otherwise than the
        // first name's (rewritten between the two in the backup) is an
        // object of its own, as restore makes it.
        if entry.kind != EntryKind::Dir && entry.nlink > 1 {
            match self.links.get(&entry.object_key()) {
                Some((first, recorded)) if recorded.same_object(entry) => {
                    let first = first.clone();
                    h.set_entry_type(EntryType::Link);
                    self.pax(&pax)?;
                    self.tar.append_link(&mut h, &name, &first)?;
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    // What `same_object` compares: not the chunks, nor
                    // the extended attributes.
                    let recorded = Entry {
                        chunks: Vec::new(),
                        xattrs: Vec::new(),
                        ..entry.clone()
                    };
                    self.links
                        .insert(entry.object_key(), (name.clone(), recorded));
                }
            }
        }
        match entry.kind {
            EntryKind::Symlink => {
                self.pax(&pax)?;
                self.tar
                    .append_link(&mut h, &name, names::as_path(&entry.target))?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                let (major, minor) = format::major_minor(entry.rdev);
                h.set_device_major(major as u32)?;
                h.set_device_minor(minor as u32)?;
                self.pax(&pax)?;
                self.tar.append_data(&mut h, &name, io::empty())?;
            }
            EntryKind::File => self.add_file(h, pax, name, shown, entry)?,
            _ => {
                self.pax(&pax)?;
                self.tar.append_data(&mut h, &name, io::empty())?;
            }
        }
        Ok(())
    }

    fn add_file(
        &mut self,
        mut h: Header,
        pax: Vec<(String, Vec<u8>)>,
        name: PathBuf,
        shown: &str,
        entry: &Entry,
    ) -> Result<()> {
        let scanned = scan(&self.repo, shown, entry)?;
        let data = scanned.data_bytes();
        let holes = data < entry.size;
        self.pax(&pax)?;
        if !holes {
            h.set_size(entry.size);
            if let Some(content) = &scanned.content {
                self.tar.append_data(&mut h, &name, content.as_slice())?;
                return Ok(());
            }
        } else {
            h.set_size(data);
        }
        let prefix = if holes {
            sparse_header(&mut h, &sparse_map(&scanned.ranges, entry.size), entry.size)
        } else {
            Vec::new()
        };
        let body = FileData {
            repo: &self.repo,
            chunks: &entry.chunks,
            lengths: scanned.lengths,
            next_range: 0,
            ranges: if holes {
                scanned.ranges
            } else {
                std::iter::once(0..entry.size).collect()
            },
            next_chunk: 0,
            offset: 0,
            buf: Vec::new(),
            pos: 0,
        };
        // The extension blocks are whole 512-byte blocks right after the
        // header, as GNU tar reads them; the size field counts only data.
        self.tar
            .append_data(&mut h, &name, prefix.as_slice().chain(body))?;
        Ok(())
    }
}

/// The name in the stream of `path`, below a dump of `top` whose own name
/// in the stream is `top_name`.
fn stream_name(top: &[u8], top_name: &[u8], path: &[u8]) -> PathBuf {
    let rest = &path[top.len()..];
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    let mut name = top_name.to_vec();
    if !name.is_empty() && !rest.is_empty() {
        name.push(b'/');
    }
    name.extend_from_slice(rest);
    PathBuf::from(OsString::from_vec(name))
}

/// `obnam dump PATH`.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let [arg] = args.as_slice() else {
        plugin_api::bail!("dump needs exactly one PATH (an absolute path in the generation)");
    };
    let bytes = arg.as_encoded_bytes();
    // pp:PATH is PATH, as for ls and restore; a pattern cannot name one path.
    if patterns::is_pattern(bytes) {
        plugin_api::bail!(
            "dump takes one PATH, not a pattern ('{}'): see 'obnam ls PATTERN' for the paths \
             it selects",
            escape(bytes)
        );
    }
    let arg = match bytes.strip_prefix(b"pp:") {
        Some(rest) => OsString::from_vec(rest.to_vec()),
        None => arg.clone(),
    };
    let parts = names::parse_absolute(&arg).map_err(plugin_api::Error::msg)?;
    // `PATH/` names a folder, as for ls and restore.
    let folder = plugin_api::live_paths::names_folder(&arg);
    let path = names::from_parts(&parts);
    let repo = ctx.repository(false)?;
    let client = select::client(ctx)?;
    select::hold_for_reading(&repo, &client, "dump");
    let gen = select::generation(ctx, &repo, &client)?;
    let dumped = dump_generation(ctx, &repo, &client, &gen.id, (parts, folder), path);
    select::unless_removed_meanwhile(&repo, &client, &gen.id, "dump", dumped)
}

/// Dump `path` (`parts`) of generation `id` (see [`run`]).
fn dump_generation(
    ctx: &Context<'_>,
    repo: &Repository,
    client: &str,
    id: &str,
    (parts, folder): (Vec<Vec<u8>>, bool),
    path: Vec<u8>,
) -> Result<()> {
    let reader = repo.open_generation(client, id)?;
    if folder {
        crate::path_args::folder_as_written(&reader, &parts, id)?;
    }
    let top = if path == b"/" {
        None
    } else {
        match reader.lookup(names::as_path(&path))? {
            Some(entry) => Some(entry),
            None => plugin_api::bail!("{} is not in generation {}", escape(&path), id),
        }
    };
    if top.as_ref().is_some_and(|e| e.kind == EntryKind::Socket) {
        // Alone, it would be an empty stream that reads as success.
        plugin_api::bail!(
            "{} is a socket, which a tar stream cannot hold: nothing to dump",
            escape(&path)
        );
    }
    // A tar stream or a file's bytes on a terminal is noise that may
    // leave it in a strange state.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        plugin_api::bail!(
            "dump writes {} to standard output, which is a terminal: redirect it to a file \
             or a pipe ('obnam dump PATH > FILE', '... | tar -x')",
            if top.as_ref().is_some_and(|e| e.kind == EntryKind::File) {
                "the file's bytes"
            } else {
                "a tar stream"
            }
        );
    }
    let mut out = BufWriter::with_capacity(1 << 20, Stdout(ctx));
    if let Some(entry) = top.as_ref().filter(|e| e.kind == EntryKind::File) {
        let mut check = ContentCheck::new(&entry.checksum);
        fetch::for_each_chunk(repo, &entry.chunks, |chunk| {
            if chunk.zero {
                check.update_zeros(chunk.data.len() as u64);
            } else {
                check.update(&chunk.data);
            }
            out.write_all(&chunk.data).map_err(|e| e.to_string())
        })
        .map_err(|e| plugin_api::Error::msg(format!("{}: {e}", escape(&path))))?;
        out.flush()?;
        check
            .finish()
            .map_err(|e| plugin_api::Error::msg(format!("{}: {e}", escape(&path))))?;
        return Ok(());
    }
    let top_name: Vec<u8> = parts.last().cloned().unwrap_or_default();
    let mut dump = TarDump {
        repo: repo.clone(),
        tar: tar::Builder::new(out),
        links: HashMap::new(),
    };
    // Parents before their contents, in name order.
    let mut stack: Vec<(Vec<u8>, Option<Entry>)> = vec![(path.clone(), top)];
    while let Some((here, entry)) = stack.pop() {
        let shown = escape(&here);
        let is_dir = entry.as_ref().is_none_or(|e| e.kind == EntryKind::Dir);
        if let Some(entry) = &entry {
            dump.add(stream_name(&path, &top_name, &here), &shown, entry)?;
        }
        if is_dir {
            let children = reader.list_dir(names::as_path(&here))?.unwrap_or_default();
            for child in children.into_iter().rev() {
                if let Err(why) = names::check_name(&child.name) {
                    plugin_api::tracing::warn!(
                        "{}: left out: {why}",
                        names::show_child(&here, &child.name)
                    );
                    continue;
                }
                stack.push((names::join(&here, &child.name), Some(child)));
            }
        }
    }
    let mut out = dump.tar.into_inner()?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_their_fields() {
        assert_eq!(&numeric12(8), b"00000000010\0");
        let big = numeric12(1 << 40);
        assert_eq!(big[0], 0x80);
        assert_eq!(u64::from_be_bytes(big[4..].try_into().unwrap()), 1 << 40);
    }

    #[test]
    fn acls_read_as_gnu_tar_writes_them() {
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 6u16, u32::MAX),
            (0x02, 7, 1000),
            (0x04, 4, u32::MAX),
            (0x08, 5, 50),
            (0x10, 7, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        assert_eq!(
            acl_text(&acl).unwrap(),
            "user::rw-\nuser:1000:rwx\ngroup::r--\ngroup:50:r-x\nmask::rwx\nother::---\n"
        );
        // Not an ACL: a wrong version, a torn entry, an unknown tag, stray
        // permission bits.
        assert_eq!(acl_text(&acl[..acl.len() - 1]), None);
        assert_eq!(acl_text(b"\x01\0\0\0"), None);
        let mut bad = acl.clone();
        bad[4] = 0x40;
        assert_eq!(acl_text(&bad), None);
        bad = acl.clone();
        bad[6] = 8;
        assert_eq!(acl_text(&bad), None);
        // Random bytes never panic.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 61)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = acl_text(&bytes);
        }
    }

    #[test]
    fn pax_times_before_1970() {
        assert_eq!(pax_time(5, 7), "5.000000007");
        assert_eq!(pax_time(-236_000_000, 987_654_321), "-235999999.012345679");
        assert_eq!(pax_time(-1, 0), "-1.000000000");
    }

    #[test]
    fn sparse_maps_end_at_the_size() {
        let one = |r: Range<u64>| std::iter::once(r).collect::<Vec<_>>();
        assert_eq!(sparse_map(&one(0..4096), 8192), vec![(0, 4096), (8192, 0)]);
        assert_eq!(sparse_map(&one(4096..8192), 8192), vec![(4096, 4096)]);
        assert_eq!(sparse_map(&[], 100), vec![(100, 0)]);
    }

    #[test]
    fn many_ranges_need_extension_blocks() {
        let map: Vec<(u64, u64)> = (0..30).map(|i| (i * 8192, 4096)).collect();
        let mut h = Header::new_gnu();
        let blocks = sparse_header(&mut h, &map, 30 * 8192);
        // 4 in the header, 21 in the first block, 5 in the second.
        assert_eq!(blocks.len(), 1024);
        assert_eq!(blocks[504], 1);
        assert_eq!(blocks[512 + 504], 0);
        assert_eq!(h.as_gnu().unwrap().isextended, [1]);
    }

    #[test]
    fn stream_names_start_at_the_dumped_name() {
        assert_eq!(
            stream_name(b"/home/a", b"a", b"/home/a"),
            PathBuf::from("a")
        );
        assert_eq!(
            stream_name(b"/home/a", b"a", b"/home/a/x/y"),
            PathBuf::from("a/x/y")
        );
        assert_eq!(
            stream_name(b"/", b"", b"/etc/passwd"),
            PathBuf::from("etc/passwd")
        );
    }
}
