//! The two codecs and the stored form they share.
//!
//! This is where bytes are actually compressed and decompressed, kept apart
//! from settings and hooks so that the format can be tested on its own. The
//! format is the compress plugin's promise to every later obnam: once an
//! object is stored with the tag `zstd` or `deflate`, these functions must
//! read it back, whatever the settings of the run that reads it.
//!
//! The payload of a compressed object (after the host's filter header) is:
//!
//! ```text
//! varint     the original length in bytes (unsigned LEB128, at most 1 GiB)
//! bytes      the compressed data: one zstd frame (tag `zstd`) or a raw
//!            DEFLATE stream, RFC 1951, without zlib or gzip framing (tag
//!            `deflate`)
//! ```
//!
//! The length comes first so that decoding allocates exactly once, exactly
//! as much as it needs, and can refuse an absurd claim before allocating
//! anything. Decoding checks that the data decompresses to exactly that
//! length and that nothing follows the compressed stream.
//!
//! Compressing is worth it only when it saves something: [`compress`]
//! returns `None` unless the stored object (this payload plus the host's
//! tag header) is at least 1% smaller than the original, so that data that
//! does not shrink (already compressed media, encrypted files, random
//! bytes) is stored as it is and costs nothing to read back. The output
//! buffer is limited to that size, so a codec gives up as soon as it is
//! clear that the data will not shrink enough.
//!
//! The backup runs many worker threads, each calling the filters; each
//! thread keeps its own compression and decompression contexts
//! (thread-local), so that a context is not set up again for every chunk
//! and threads never wait for each other.

use std::cell::RefCell;
use std::io::Cursor;
use std::ops::RangeInclusive;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The largest original length a compressed object may claim. Larger
/// objects are stored as they are; a claim beyond this is refused on read.
pub const MAX_LEN: usize = 1 << 30;

/// Objects smaller than this are stored as they are: the codec's header
/// alone would eat what they could save.
pub const MIN_LEN: usize = 64;

/// A compression method, named in stored objects by its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Deflate,
}

impl Codec {
    /// Every codec, in the order the filters are added.
    pub const ALL: [Codec; 2] = [Codec::Zstd, Codec::Deflate];

    /// The filter tag recorded in stored objects. Never change it: objects
    /// written with it must stay readable.
    pub fn tag(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Deflate => "deflate",
        }
    }

    /// The level used when `compress-level` is not set.
    pub fn default_level(self) -> i32 {
        match self {
            Codec::Zstd => zstd::DEFAULT_COMPRESSION_LEVEL,
            Codec::Deflate => 6,
        }
    }

    /// The levels the codec accepts: zstd from its negative fast levels to
    /// 22 (0 also means zstd's default), deflate 0 (no compression) to 9.
    pub fn levels(self) -> RangeInclusive<i32> {
        match self {
            Codec::Zstd => zstd::compression_level_range(),
            Codec::Deflate => 0..=9,
        }
    }
}

/// How many bytes the stored object must be smaller than the original for
/// compression to be kept: 1% of it (rounded up), and at least one byte,
/// after counting the tag the host records (a length byte and the tag).
fn budget(codec: Codec, original: usize) -> usize {
    let overhead = 1 + codec.tag().len();
    original.saturating_sub(original.div_ceil(100).max(1) + overhead)
}

/// Compress `data` with `codec` at `level` (which must be in
/// [`Codec::levels`]). Returns `None` when it is not worth it: the data is
/// too small, too large, or does not shrink by 1%.
pub fn compress(codec: Codec, level: i32, data: &[u8]) -> Option<Vec<u8>> {
    // An unchecked level could make a codec panic; the settings never
    // let one through, but storing the data as it is is always correct.
    if data.len() < MIN_LEN || data.len() > MAX_LEN || !codec.levels().contains(&level) {
        return None;
    }
    let budget = budget(codec, data.len());
    let mut out = Vec::with_capacity(budget);
    write_varint(&mut out, data.len());
    if out.len() >= budget {
        return None;
    }
    // Any failure, including running out of room, leaves the data as it
    // is: storing it uncompressed is always correct.
    let fits = match codec {
        Codec::Zstd => zstd_compress(level, data, &mut out),
        Codec::Deflate => deflate_compress(level, data, &mut out),
    };
    (fits && out.len() <= budget).then_some(out)
}

/// Undo [`compress`]. `context` names the object in error messages.
pub fn decompress(codec: Codec, context: &str, stored: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |why: String| {
        format!(
            "object {context} cannot be decompressed ({} data): {why}",
            codec.tag()
        )
    };
    let (len, start) = read_varint(stored).map_err(|why| bad(why.into()))?;
    if len > MAX_LEN as u64 {
        return Err(bad(format!(
            "it claims {len} bytes of data, more than the limit of {MAX_LEN}"
        )));
    }
    let len = len as usize;
    let body = &stored[start..];
    if body.is_empty() {
        return Err(bad("nothing follows its length field".into()));
    }
    let out = match codec {
        Codec::Zstd => zstd_decompress(body, len),
        Codec::Deflate => deflate_decompress(body, len),
    }
    .map_err(bad)?;
    if out.len() != len {
        return Err(bad(format!(
            "it gives {} bytes, not the {len} it claims",
            out.len()
        )));
    }
    Ok(out)
}

thread_local! {
    /// This thread's zstd compressor, with the level it was made for.
    static ZSTD_COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    /// This thread's deflate compressor, with the level it was made for.
    static DEFLATE_COMPRESSOR: RefCell<Option<(i32, Compress)>> = const { RefCell::new(None) };
    static DEFLATE_DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Append a zstd frame of `data` to `out`, within its capacity.
fn zstd_compress(level: i32, data: &[u8], out: &mut Vec<u8>) -> bool {
    ZSTD_COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let Some((_, compressor)) = slot.as_mut() else {
            return false;
        };
        let start = out.len();
        let mut cursor = Cursor::new(std::mem::take(out));
        cursor.set_position(start as u64);
        let result = compressor.compress_to_buffer(data, &mut cursor);
        *out = cursor.into_inner();
        result.is_ok()
    })
}

fn zstd_decompress(body: &[u8], len: usize) -> Result<Vec<u8>, String> {
    ZSTD_DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => d,
            None => slot.insert(
                zstd::bulk::Decompressor::new().map_err(|e| format!("cannot set up zstd: {e}"))?,
            ),
        };
        let mut out = Vec::with_capacity(len);
        decompressor
            .decompress_to_buffer(body, &mut out)
            .map_err(|e| format!("{e} (or it is longer than the {len} bytes it claims)"))?;
        Ok(out)
    })
}

/// Append a raw DEFLATE stream of `data` to `out`, within its capacity.
fn deflate_compress(level: i32, data: &[u8], out: &mut Vec<u8>) -> bool {
    DEFLATE_COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some((l, c)) if *l == level => {
                c.reset();
                c
            }
            _ => {
                let c = Compress::new(Compression::new(level as u32), false);
                &mut slot.insert((level, c)).1
            }
        };
        // With a full output buffer the stream is simply not finished.
        matches!(
            compressor.compress_vec(data, out, FlushCompress::Finish),
            Ok(Status::StreamEnd)
        ) && compressor.total_in() == data.len() as u64
    })
}

fn deflate_decompress(body: &[u8], len: usize) -> Result<Vec<u8>, String> {
    DEFLATE_DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => {
                d.reset(false);
                d
            }
            None => slot.insert(Decompress::new(false)),
        };
        let mut out = Vec::with_capacity(len);
        let status = decompressor
            .decompress_vec(body, &mut out, FlushDecompress::Finish)
            .map_err(|e| e.to_string())?;
        if status != Status::StreamEnd {
            return Err(if out.len() == len {
                format!("it is longer than the {len} bytes it claims, or truncated")
            } else {
                format!("it is truncated: it ends after {} bytes", out.len())
            });
        }
        let used = decompressor.total_in() as usize;
        if used != body.len() {
            return Err(format!(
                "{} bytes of garbage follow the compressed data",
                body.len() - used
            ));
        }
        Ok(out)
    })
}

/// Append `n` as unsigned LEB128: seven bits a byte, low bits first, the
/// high bit set on every byte but the last.
fn write_varint(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Read a varint written by [`write_varint`]: the value and the number of
/// bytes it took.
fn read_varint(data: &[u8]) -> Result<(u64, usize), &'static str> {
    let mut n: u64 = 0;
    for (i, &byte) in data.iter().enumerate() {
        if i == 10 || (i == 9 && byte > 1) {
            return Err("its length field is too long");
        }
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((n, i + 1));
        }
    }
    Err("it is truncated in its length field")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that compresses well: numbered lines of words.
    fn text(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < n {
            out.extend_from_slice(format!("line {i}: the quick brown fox jumps\n").as_bytes());
            i += 1;
        }
        out.truncate(n);
        out
    }

    /// Bytes that do not compress (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn both_codecs_round_trip_at_every_size_and_some_levels() {
        for codec in Codec::ALL {
            let levels = codec.levels();
            for level in [
                *levels.start(),
                (-5).max(*levels.start()),
                0,
                1,
                codec.default_level(),
                *levels.end(),
            ] {
                for n in [MIN_LEN, 100, 1000, 65_536, 1 << 20] {
                    let data = text(n);
                    let Some(stored) = compress(codec, level, &data) else {
                        // zstd's fastest levels barely compress, small
                        // objects may not gain 1%, and deflate 0 only stores.
                        let may_fail =
                            n < 1000 || level < -5 || (codec, level) == (Codec::Deflate, 0);
                        assert!(may_fail, "{codec:?} {level} {n}: did not shrink");
                        continue;
                    };
                    assert!(stored.len() < data.len(), "{codec:?} {level} {n}");
                    let back = decompress(codec, "chunk/x", &stored).unwrap();
                    assert_eq!(back, data, "{codec:?} {level} {n}");
                }
            }
        }
    }

    #[test]
    fn levels_out_of_range_compress_nothing_rather_than_panic() {
        let data = text(10_000);
        assert_eq!(compress(Codec::Deflate, 10, &data), None);
        assert_eq!(compress(Codec::Deflate, -1, &data), None);
        assert_eq!(compress(Codec::Zstd, 23, &data), None);
    }

    #[test]
    fn deflate_level_zero_never_shrinks_and_so_is_not_kept() {
        assert_eq!(compress(Codec::Deflate, 0, &text(100_000)), None);
    }

    #[test]
    fn the_stored_form_starts_with_the_length() {
        let data = text(300);
        let stored = compress(Codec::Zstd, 3, &data).unwrap();
        // 300 = 0b10_0101100: 0xac, 0x02; then a zstd frame's magic number.
        assert_eq!(&stored[..6], &[0xac, 0x02, 0x28, 0xb5, 0x2f, 0xfd]);
        let stored = compress(Codec::Deflate, 6, &data).unwrap();
        assert_eq!(&stored[..2], &[0xac, 0x02]);
    }

    #[test]
    fn incompressible_and_tiny_data_is_left_alone() {
        for codec in Codec::ALL {
            for n in [MIN_LEN, 1000, 1 << 20] {
                assert_eq!(compress(codec, codec.default_level(), &noise(n)), None);
            }
            // Below the minimum, even data that would shrink.
            assert_eq!(
                compress(codec, codec.default_level(), &[0; MIN_LEN - 1]),
                None
            );
            assert_eq!(compress(codec, codec.default_level(), &[]), None);
        }
    }

    /// The codec's output without a size limit, with the length in front.
    fn unlimited(codec: Codec, data: &[u8]) -> usize {
        let mut prefix = Vec::new();
        write_varint(&mut prefix, data.len());
        let body = match codec {
            Codec::Zstd => zstd::bulk::compress(data, codec.default_level()).unwrap(),
            Codec::Deflate => {
                let mut c = Compress::new(Compression::new(6), false);
                let mut out = Vec::with_capacity(data.len() * 2);
                c.compress_vec(data, &mut out, FlushCompress::Finish)
                    .unwrap();
                out
            }
        };
        prefix.len() + body.len()
    }

    #[test]
    fn data_that_saves_less_than_one_percent_is_left_alone() {
        // Noise with a longer and longer compressible tail: the first few
        // save too little, the later ones enough. Compression is kept
        // exactly when the stored object (with its 1 + tag-length bytes
        // of tag header) is at least 1% smaller.
        for codec in Codec::ALL {
            let n = 100_000;
            let overhead = 1 + codec.tag().len();
            let (mut kept, mut dropped) = (0, 0);
            for tail in (0..4000).step_by(50) {
                let mut data = noise(n - tail);
                data.extend(std::iter::repeat_n(b'a', tail));
                let worth = unlimited(codec, &data) + overhead + n / 100 <= n;
                match compress(codec, codec.default_level(), &data) {
                    Some(stored) => {
                        assert!(worth, "{codec:?} tail {tail}: kept {}", stored.len());
                        assert_eq!(stored.len(), unlimited(codec, &data));
                        assert_eq!(decompress(codec, "c", &stored).unwrap(), data);
                        kept += 1;
                    }
                    None => {
                        assert!(!worth, "{codec:?} tail {tail}: dropped");
                        dropped += 1;
                    }
                }
            }
            assert!(
                kept > 0 && dropped > 0,
                "{codec:?}: {kept} kept, {dropped} dropped"
            );
        }
    }

    #[test]
    fn garbage_is_refused_with_the_object_named() {
        for codec in Codec::ALL {
            let tag = codec.tag();
            for (garbage, why) in [
                (&b""[..], "truncated in its length field"),
                (&b"\x80\x80"[..], "truncated in its length field"),
                (
                    &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"[..],
                    "too long",
                ),
                (&b"\xff\xff\xff\xff\x0f"[..], "more than the limit"),
                (&b"\x10not compressed at all"[..], ""),
                (&b"\x00"[..], "nothing follows"),
                (&b"\x05"[..], "nothing follows"),
            ] {
                let err = decompress(codec, "tree/abc", garbage).unwrap_err();
                assert!(
                    err.starts_with(&format!(
                        "object tree/abc cannot be decompressed ({tag} data): "
                    )) && err.contains(why),
                    "{codec:?} {garbage:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn truncated_extended_or_mislabelled_data_is_refused() {
        let data = text(10_000);
        for codec in Codec::ALL {
            let stored = compress(codec, codec.default_level(), &data).unwrap();
            let len_bytes = 2; // 10_000 needs two varint bytes
            for cut in [len_bytes, len_bytes + 1, stored.len() / 2, stored.len() - 1] {
                let err = decompress(codec, "chunk/c", &stored[..cut]).unwrap_err();
                assert!(err.contains("object chunk/c"), "{codec:?} {cut}: {err}");
            }
            let mut longer = stored.clone();
            longer.extend_from_slice(b"trailing");
            assert!(decompress(codec, "chunk/c", &longer).is_err(), "{codec:?}");
            // A length that lies, either way.
            for claim in [9_999, 10_001, 20_000] {
                let mut lie = Vec::new();
                write_varint(&mut lie, claim);
                lie.extend_from_slice(&stored[len_bytes..]);
                let err = decompress(codec, "chunk/c", &lie).unwrap_err();
                assert!(err.contains("object chunk/c"), "{codec:?} {claim}: {err}");
            }
            // Flipped bits in the body: refused or, if the codec cannot
            // tell, at least never a panic (the chunk's checksum catches it).
            for i in len_bytes..stored.len() {
                let mut bent = stored.clone();
                bent[i] ^= 0x55;
                let _ = decompress(codec, "chunk/c", &bent);
            }
        }
        let zstd = compress(Codec::Zstd, 3, &data).unwrap();
        assert!(decompress(Codec::Deflate, "chunk/d", &zstd).is_err());
        let deflate = compress(Codec::Deflate, 6, &data).unwrap();
        assert!(decompress(Codec::Zstd, "chunk/d", &deflate).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, MAX_LEN, usize::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, n);
            assert_eq!(read_varint(&buf), Ok((n as u64, buf.len())), "{n}");
        }
    }

    #[test]
    fn contexts_follow_level_changes_on_one_thread() {
        let data = text(200_000);
        let fast = compress(Codec::Zstd, -5, &data).unwrap();
        let small = compress(Codec::Zstd, 19, &data).unwrap();
        assert!(small.len() < fast.len(), "{} {}", small.len(), fast.len());
        let fast2 = compress(Codec::Zstd, -5, &data).unwrap();
        assert_eq!(fast, fast2);
        let d1 = compress(Codec::Deflate, 1, &data).unwrap();
        let d9 = compress(Codec::Deflate, 9, &data).unwrap();
        assert!(d9.len() < d1.len());
        assert_eq!(compress(Codec::Deflate, 1, &data).unwrap(), d1);
    }

    #[test]
    fn many_threads_at_once() {
        let inputs: Vec<Vec<u8>> = (0..8).map(|i| text(50_000 + i * 1000)).collect();
        std::thread::scope(|s| {
            for (i, data) in inputs.iter().enumerate() {
                s.spawn(move || {
                    let codec = Codec::ALL[i % 2];
                    for round in 0..20 {
                        let level = if round % 2 == 0 { 1 } else { 3 };
                        let stored = compress(codec, level, data).unwrap();
                        assert_eq!(&decompress(codec, "c", &stored).unwrap(), data);
                    }
                });
            }
        });
    }
}
