//! Where each chunk of a file starts: the map from a file offset to a
//! chunk and an offset in it.
//!
//! A generation lists a file's chunks in order but not their lengths
//! (content-defined chunks differ in length), and the repository gives
//! a chunk's length only with its data. So a file's layout is learnt as
//! its chunks are read, and remembered: a read at an offset past what is
//! known reads the chunks up to it first, several at once
//! ([`Layout::plan`]), and every later read anywhere before that point
//! is a binary search. A sequential read thus learns the layout as it
//! goes, for free; a first read near the end of a large file reads the
//! chunks before it once (they land in the chunk cache too).
//!
//! A chunk that occurs more than once in a file (a sparse file's zeros
//! deduplicate to runs of one chunk) has one length: only its first
//! occurrence is read to learn it.

use std::collections::HashMap;

use plugin_api::ChunkId;

/// The known part of a file's layout.
#[derive(Debug, Default)]
pub struct Layout {
    /// `ends[i]` is the file offset just past chunk `i`, for the first
    /// `ends.len()` chunks.
    ends: Vec<u64>,
    /// The lengths of the distinct chunks placed so far.
    lengths: HashMap<ChunkId, u64>,
}

/// Where a file offset is: chunk `index`, `within` bytes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: usize,
    pub within: usize,
}

impl Layout {
    /// How many chunks' lengths are known (from the first).
    pub fn known(&self) -> usize {
        self.ends.len()
    }

    /// The file offset up to which the layout is known.
    pub fn known_end(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The chunk holding file offset `pos`, if the layout is known that far.
    pub fn locate(&self, pos: u64) -> Option<Position> {
        if pos >= self.known_end() {
            return None;
        }
        // The first chunk that ends after `pos` holds it.
        let index = self.ends.partition_point(|&end| end <= pos);
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        Some(Position {
            index,
            within: (pos - start) as usize,
        })
    }

    /// The indexes of the chunks to read next to learn more of the
    /// layout: up to `at_most` of them, after the known ones, skipping
    /// chunks whose length is known (placed earlier in the file, or
    /// planned already).
    pub fn plan(&self, chunks: &[ChunkId], at_most: usize) -> Vec<usize> {
        let mut planned: Vec<usize> = Vec::new();
        for i in self.known()..chunks.len() {
            if planned.len() == at_most {
                break;
            }
            let id = &chunks[i];
            if !self.lengths.contains_key(id) && !planned.iter().any(|&j| chunks[j] == *id) {
                planned.push(i);
            }
        }
        planned
    }

    /// Learn lengths: `fetched` gives `(index, length)` of chunks read.
    /// The layout grows over every chunk, from the first unknown one,
    /// whose length is now known: read now, or the same chunk as one
    /// placed before.
    pub fn learn(&mut self, chunks: &[ChunkId], fetched: &[(usize, u64)]) {
        for &(i, len) in fetched {
            if let Some(id) = chunks.get(i) {
                self.lengths.insert(*id, len);
            }
        }
        for id in &chunks[self.known().min(chunks.len())..] {
            let Some(&len) = self.lengths.get(id) else {
                break;
            };
            let end = self.known_end() + len;
            self.ends.push(end);
        }
    }
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
    fn an_empty_layout_locates_nothing() {
        let layout = Layout::default();
        assert_eq!(layout.locate(0), None);
        assert_eq!(layout.known_end(), 0);
    }

    #[test]
    fn offsets_map_to_chunks_by_cumulative_length() {
        let chunks = [id(1), id(2), id(3)];
        let mut layout = Layout::default();
        layout.learn(&chunks, &[(0, 10), (1, 5), (2, 7)]);
        assert_eq!(layout.known_end(), 22);
        let at = |pos| layout.locate(pos).map(|p| (p.index, p.within));
        assert_eq!(at(0), Some((0, 0)));
        assert_eq!(at(9), Some((0, 9)));
        assert_eq!(at(10), Some((1, 0)));
        assert_eq!(at(14), Some((1, 4)));
        assert_eq!(at(15), Some((2, 0)));
        assert_eq!(at(21), Some((2, 6)));
        assert_eq!(at(22), None);
    }

    #[test]
    fn learning_stops_at_the_first_unknown_length() {
        let chunks = [id(1), id(2), id(3)];
        let mut layout = Layout::default();
        // Chunk 2 was read but chunk 1 was not: only chunk 0 is placed,
        // and only chunk 1 is left to read.
        layout.learn(&chunks, &[(0, 10), (2, 7)]);
        assert_eq!(layout.known(), 1);
        assert_eq!(layout.plan(&chunks, 8), vec![1]);
        layout.learn(&chunks, &[(1, 5)]);
        assert_eq!(layout.known(), 3);
        assert!(layout.plan(&chunks, 8).is_empty());
    }

    #[test]
    fn repeated_chunks_are_read_once_and_placed_each_time() {
        // A sparse file: data, a run of one zero chunk, data.
        let chunks = [id(1), id(0), id(0), id(0), id(2), id(0)];
        let mut layout = Layout::default();
        assert_eq!(layout.plan(&chunks, 8), vec![0, 1, 4]);
        layout.learn(&chunks, &[(0, 3), (1, 100), (4, 4)]);
        // The last chunk is id(0) again: placed without a read.
        assert_eq!(layout.known(), 6);
        assert_eq!(layout.known_end(), 3 + 300 + 4 + 100);
        assert_eq!(
            layout.locate(3 + 250),
            Some(Position {
                index: 3,
                within: 50
            })
        );
        assert!(layout.plan(&chunks, 3).is_empty());
    }

    #[test]
    fn a_chunk_planned_once_is_not_planned_twice() {
        let chunks = [id(1), id(2), id(1), id(3)];
        assert_eq!(Layout::default().plan(&chunks, 8), vec![0, 1, 3]);
    }

    #[test]
    fn plans_are_bounded() {
        let chunks: Vec<ChunkId> = (0..100).map(id).collect();
        let layout = Layout::default();
        assert_eq!(layout.plan(&chunks, 4), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_far_offset_in_a_large_file_is_found_after_learning() {
        // 256 chunks of 256 KiB: 64 MiB.
        let chunks: Vec<ChunkId> = (0..=255).map(id).collect();
        let mut layout = Layout::default();
        while layout.known() < chunks.len() {
            let plan = layout.plan(&chunks, 4);
            let fetched: Vec<(usize, u64)> = plan.iter().map(|&i| (i, 256 << 10)).collect();
            layout.learn(&chunks, &fetched);
        }
        let pos = (64 << 20) - 1;
        assert_eq!(
            layout.locate(pos),
            Some(Position {
                index: 255,
                within: (256 << 10) - 1
            })
        );
    }
}
