//! Writing a file's content so that holes stay holes.
//!
//! A backup stores a sparse file as ordinary data: its holes read as runs
//! of zero bytes, which deduplicate to almost nothing. Restore recreates the
//! holes by never writing an all-zero block: the content is cut at
//! [`BLOCK`]-aligned file offsets, zero blocks are skipped (the file is
//! new, so unwritten ranges read as zeros), and the file's length is set at
//! the end, which also makes a trailing hole. Any file with aligned zero
//! blocks thus comes back sparse, as `cp --sparse=always` would make it;
//! its content is the same.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// The unit of hole detection: a typical file-system block.
pub const BLOCK: u64 = 4096;

/// Whether every byte of `data` is zero.
pub fn is_zero(data: &[u8]) -> bool {
    // OR-folding fixed-size pieces lets the compiler vectorise the loop;
    // stopping early at the first non-zero piece keeps ordinary data cheap.
    let mut pieces = data.chunks_exact(64);
    for piece in &mut pieces {
        if piece.iter().fold(0u8, |acc, b| acc | b) != 0 {
            return false;
        }
    }
    pieces.remainder().iter().all(|b| *b == 0)
}

/// The ranges of `data` (which starts at file offset `offset`) that must be
/// written: `data` is cut at block-aligned file offsets, all-zero pieces are
/// left out, and adjacent pieces to write are merged.
pub fn write_ranges(offset: u64, data: &[u8]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut start = 0usize;
    while start < data.len() {
        let pos = offset + start as u64;
        let to_boundary = (BLOCK - pos % BLOCK) as usize;
        let end = (start + to_boundary).min(data.len());
        if !is_zero(&data[start..end]) {
            match ranges.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => ranges.push(start..end),
            }
        }
        start = end;
    }
    ranges
}

/// Writes a new file's content in order, skipping zero blocks.
pub struct SparseWriter<'a> {
    file: &'a File,
    offset: u64,
    /// The file's length so far: the end of the last range written.
    written_end: u64,
}

impl<'a> SparseWriter<'a> {
    /// A writer at the start of `file`, which must be new and empty.
    pub fn new(file: &'a File) -> Self {
        SparseWriter {
            file,
            offset: 0,
            written_end: 0,
        }
    }

    /// Bytes of content given so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// Append `data` to the content.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        for range in write_ranges(self.offset, data) {
            let at = self.offset + range.start as u64;
            let end = self.offset + range.end as u64;
            self.file.write_all_at(&data[range], at)?;
            self.written_end = end;
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Skip `len` bytes known to be zero.
    pub fn skip_zeros(&mut self, len: u64) {
        self.offset += len;
    }

    /// Set the file's length to the content's, making any trailing hole.
    pub fn finish(self) -> io::Result<u64> {
        if self.written_end != self.offset {
            self.file.set_len(self.offset)?;
        }
        Ok(self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 4096]));
        assert!(is_zero(&[0; 100]));
        let mut data = vec![0u8; 4096];
        data[4095] = 1;
        assert!(!is_zero(&data));
        data[4095] = 0;
        data[7] = 1;
        assert!(!is_zero(&data));
    }

    #[test]
    fn ranges_skip_aligned_zero_blocks() {
        let mut data = vec![0u8; 3 * 4096];
        data[10] = 1;
        data[2 * 4096 + 5] = 1;
        assert_eq!(write_ranges(0, &data), vec![0..4096, 8192..12288]);
    }

    #[test]
    fn ranges_merge_adjacent_data() {
        let data = vec![7u8; 3 * 4096 + 100];
        assert_eq!(write_ranges(0, &data), vec![0..data.len()]);
    }

    #[test]
    fn ranges_follow_file_offsets_not_buffer_offsets() {
        // The buffer starts 100 bytes before a block boundary: its first
        // piece is 100 bytes long.
        let mut data = vec![0u8; 100 + 4096];
        data[50] = 1;
        assert_eq!(write_ranges(4096 - 100, &data), vec![0..100]);
        let mut data = vec![0u8; 100 + 4096];
        data[150] = 1;
        assert_eq!(write_ranges(4096 - 100, &data), vec![100..4196]);
    }

    #[test]
    fn all_zero_data_writes_nothing() {
        assert!(write_ranges(123, &[0u8; 100_000]).is_empty());
    }

    #[test]
    fn holes_stay_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        let mut w = SparseWriter::new(&file);
        w.write(b"start").unwrap();
        w.write(&vec![0u8; 8 << 20]).unwrap();
        w.skip_zeros(8 << 20);
        w.write(b"middle").unwrap();
        w.write(&vec![0u8; 8 << 20]).unwrap();
        let len = w.finish().unwrap();
        drop(file);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, len);
        assert_eq!(len, 5 + (24 << 20) + 6);
        assert_eq!(&data[..5], b"start");
        assert_eq!(&data[5 + (16 << 20)..5 + (16 << 20) + 6], b"middle");
        assert!(is_zero(&data[5..5 + (16 << 20)]));
        let meta = std::fs::metadata(&path).unwrap();
        // Two data blocks (maybe a few more on odd file systems), not 24 MiB.
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
    }
}
