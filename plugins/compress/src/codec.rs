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
//! varint     the original length in bytes (unsigned LEB128), at most
//!            what the format allows the object to decode to
//!            (`plugin_api::limits::max_decoded_len`: 64 MiB for a chunk,
//!            256 MiB for a tree, an index object or a pack trailer, 1 MiB
//!            for a record)
//! bytes      the compressed data: one zstd frame (tag `zstd`) or a raw
//!            DEFLATE stream, RFC 1951, without zlib or gzip framing (tag
//!            `deflate`)
//! ```
//!
//! The length comes first so that decoding allocates exactly once, exactly
//! as much as it needs, and can refuse an absurd claim before allocating
//! anything (a "decompression bomb": a few stored bytes that claim, and
//! may really inflate to, gigabytes). Decoding refuses a claim over the
//! object's limit, and a claim more than the compressed bytes could ever
//! give (every zstd block of at most 128 KiB takes at least 4 bytes; DEFLATE
//! gives at most 258 bytes for 2 bits), so that what it allocates is
//! bounded by the limit and by a fixed multiple of the stored size. It
//! decompresses into that one buffer and never grows it: the codecs stop
//! with an error as soon as the data would give more. It checks that the
//! data decompresses to exactly the length claimed and that nothing
//! follows the compressed stream (for zstd: exactly one frame, whose
//! declared content size, if any, is the claim).
//!
//! The zstd frame is decoded in one call into that buffer, which serves as
//! the decoder's window: a frame's window size (which a streaming decoder
//! would allocate, up to 2 GiB) costs nothing here, so no window is ever
//! refused: zstd at any level (22, or long-distance matching with 128 MiB
//! windows) decodes as long as its content fits the claim.
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

use plugin_api::limits::max_decoded_len;

/// The most that one byte of a zstd frame can decompress to: a block gives
/// at most 128 KiB and takes at least 4 bytes (a 3-byte header and the
/// byte of an RLE block; a compressed block takes more).
pub(crate) const ZSTD_MAX_RATIO: usize = (128 << 10) / 4;

/// The most that one byte of a raw DEFLATE stream can decompress to: a
/// match gives at most 258 bytes and takes at least 2 bits (one-symbol
/// Huffman codes for its length and its distance).
pub(crate) const DEFLATE_MAX_RATIO: usize = 258 * 4;

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

    /// The level used when `compress-level` is not set. For zstd, level
    /// 1 rather than zstd's own default of 3: on the benchmark corpus it
    /// made the repository 0.1% larger (853.3 against 852.5 MB) for about
    /// a fifth less processor time in the whole backup (docs/performance.md).
    pub fn default_level(self) -> i32 {
        match self {
            Codec::Zstd => 1,
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

/// Compress `data`, the object named by `context`, with `codec` at
/// `level` (which must be in [`Codec::levels`]). Returns `None` when it is
/// not worth it: the data is too small or does not shrink by 1%; and when
/// the data is larger than the format allows for its kind of object, since
/// [`decompress`] would refuse it (it is stored as it is, and whatever
/// reads it judges its size).
pub fn compress(codec: Codec, level: i32, context: &str, data: &[u8]) -> Option<Vec<u8>> {
    // An unchecked level could make a codec panic; the settings never
    // let one through, but storing the data as it is is always correct.
    if data.len() < MIN_LEN
        || data.len() > max_decoded_len(context)
        || !codec.levels().contains(&level)
    {
        return None;
    }
    if looks_incompressible(data) {
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

/// Objects at least this large are probed before they are compressed.
pub const PROBE_MIN_LEN: usize = 64 << 10;
/// The probe compresses this many pieces of the data ...
const PROBE_PIECES: usize = 4;
/// ... of this many bytes each, spread over it.
const PROBE_PIECE_LEN: usize = 4 << 10;

/// Whether `data` (a chunk of a file, usually) is not worth compressing,
/// judged from a sample: four 4 KiB pieces spread over it (from the
/// middle of each quarter), compressed
/// together with zstd at its fastest level. If they do not shrink by 3%,
/// the data is most likely already compressed media, an archive,
/// encrypted or random, and compressing all of it would cost its time
/// (zstd still reads it all, at 1-2 GB/s per core) to save nothing. A
/// sample costs about 6% of compressing the whole at the default level,
/// and only objects of [`PROBE_MIN_LEN`] or more are probed. The one
/// kind of data this misses is one whose bytes look random piece by
/// piece but repeat over longer distances within the object; storing it
/// as it is stays correct, and deduplication still finds repeats of whole
/// chunks.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < PROBE_MIN_LEN {
        return false;
    }
    ZSTD_PROBE.with_borrow_mut(|probe| {
        let probe = probe.get_or_insert_with(|| Probe {
            compressor: zstd::bulk::Compressor::new(1).ok(),
            sample: Vec::with_capacity(PROBE_PIECES * PROBE_PIECE_LEN),
            // 97% of the sample: what must hold its compressed form.
            out: vec![0; PROBE_PIECES * PROBE_PIECE_LEN * 97 / 100],
        });
        let Some(compressor) = probe.compressor.as_mut() else {
            return false;
        };
        probe.sample.clear();
        // From the middle of each quarter, not its start: data made of
        // records with a header at round offsets (random bytes every
        // 256 KiB, say, and text after them) fooled a probe that sampled
        // only the headers, and was stored 64 times its compressed size.
        let quarter = data.len() / PROBE_PIECES;
        for i in 0..PROBE_PIECES {
            let start = quarter * i + quarter / 2 - PROBE_PIECE_LEN / 2;
            probe
                .sample
                .extend_from_slice(&data[start..start + PROBE_PIECE_LEN]);
        }
        // Fails when the output does not fit: the sample did not shrink.
        compressor
            .compress_to_buffer(&probe.sample, &mut probe.out[..])
            .is_err()
    })
}

/// The buffers and the compressor of [`looks_incompressible`], kept per
/// thread: it runs for every chunk a backup stores.
struct Probe {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    sample: Vec<u8>,
    out: Vec<u8>,
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
    let limit = max_decoded_len(context);
    if len > limit as u64 {
        return Err(bad(format!(
            "it claims {len} bytes of data, more than the limit of {limit} bytes ({}) \
             for {}",
            mib(limit),
            kind_of(context)
        )));
    }
    let len = len as usize;
    let body = &stored[start..];
    if body.is_empty() {
        return Err(bad("nothing follows its length field".into()));
    }
    let ratio = match codec {
        Codec::Zstd => ZSTD_MAX_RATIO,
        Codec::Deflate => DEFLATE_MAX_RATIO,
    };
    if len > body.len().saturating_mul(ratio) {
        return Err(bad(format!(
            "it claims {len} bytes of data, more than its {} bytes of compressed data \
             can give",
            body.len()
        )));
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

/// A size in MiB, for messages.
fn mib(n: usize) -> String {
    format!("{} MiB", n >> 20)
}

/// What kind of object `context` names, for messages.
fn kind_of(context: &str) -> &'static str {
    match context.split('/').next().unwrap_or("") {
        "chunk" => "a file chunk",
        "tree" => "a tree object",
        "pack" => "a pack trailer",
        "index" => "an index object",
        _ => "a record",
    }
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
    /// This thread's zstd compressor and buffers for [`looks_incompressible`].
    static ZSTD_PROBE: RefCell<Option<Probe>> = const { RefCell::new(None) };
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
        // Exactly one frame, which says it gives what the object claims:
        // checked before allocating for the claim.
        let frame = zstd::zstd_safe::find_frame_compressed_size(body)
            .map_err(|_| "it is not a complete zstd frame".to_string())?;
        if frame != body.len() {
            return Err(format!(
                "{} bytes of garbage follow the zstd frame",
                body.len() - frame
            ));
        }
        match zstd::zstd_safe::get_frame_content_size(body) {
            Ok(None) => {}
            Ok(Some(declared)) if declared == len as u64 => {}
            Ok(Some(declared)) => {
                return Err(format!(
                    "its zstd frame declares {declared} bytes, not the {len} it claims"
                ))
            }
            Err(_) => return Err("it is not a zstd frame".into()),
        }
        // Decoded into this buffer, never grown: zstd stops with an error
        // as soon as the frame would give more.
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
        // Decoded into this buffer, never grown: decompress_vec writes only
        // into its spare capacity and stops when it is full.
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
pub(crate) fn write_varint(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Read a varint written by [`write_varint`]: the value and the number of
/// bytes it took.
pub(crate) fn read_varint(data: &[u8]) -> Result<(u64, usize), &'static str> {
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
pub(crate) mod tests {
    use super::*;
    use crate::test_alloc::largest_allocation;
    use plugin_api::limits::{MAX_CHUNK_LEN, MAX_INDEX_LEN, MAX_RECORD_LEN, MAX_TREE_LEN};

    /// Text that compresses well: numbered lines of words.
    pub(crate) fn text(n: usize) -> Vec<u8> {
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
    fn the_probe_tells_media_from_text() {
        let n = 256 << 10;
        assert!(looks_incompressible(&noise(n)));
        assert!(!looks_incompressible(&text(n)));
        assert!(!looks_incompressible(&vec![0; n]));
        // Half random, half text: compressing it saves, so it is compressed.
        let mut mixed = noise(n / 2);
        mixed.extend(text(n / 2));
        assert!(!looks_incompressible(&mixed));
        for codec in Codec::ALL {
            let stored = compress(codec, codec.default_level(), "chunk/x", &mixed).unwrap();
            assert_eq!(decompress(codec, "chunk/x", &stored).unwrap(), mixed);
            assert_eq!(
                compress(codec, codec.default_level(), "chunk/x", &noise(n)),
                None
            );
        }
        // Small objects are never probed (they are compressed or not on
        // their own merits).
        assert!(!looks_incompressible(&noise(PROBE_MIN_LEN - 1)));
        assert!(looks_incompressible(&noise(PROBE_MIN_LEN)));
        // Records with a random header at round offsets (each quarter's
        // start) and text after it: compressed (the probe sampled only
        // the headers, and such data was stored 64 times its size).
        for len in [1 << 20, 256 << 10, 4 << 20] {
            let record = len / 4;
            let mut records = Vec::new();
            for _ in 0..4 {
                records.extend(noise(4 << 10));
                records.extend(vec![b'A'; record - (4 << 10)]);
            }
            assert!(!looks_incompressible(&records), "{len}");
        }
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
                    let Some(stored) = compress(codec, level, "chunk/x", &data) else {
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
        assert_eq!(compress(Codec::Deflate, 10, "chunk/x", &data), None);
        assert_eq!(compress(Codec::Deflate, -1, "chunk/x", &data), None);
        assert_eq!(compress(Codec::Zstd, 23, "chunk/x", &data), None);
    }

    #[test]
    fn deflate_level_zero_never_shrinks_and_so_is_not_kept() {
        assert_eq!(compress(Codec::Deflate, 0, "chunk/x", &text(100_000)), None);
    }

    #[test]
    fn the_stored_form_starts_with_the_length() {
        let data = text(300);
        let stored = compress(Codec::Zstd, 3, "chunk/x", &data).unwrap();
        // 300 = 0b10_0101100: 0xac, 0x02; then a zstd frame's magic number.
        assert_eq!(&stored[..6], &[0xac, 0x02, 0x28, 0xb5, 0x2f, 0xfd]);
        let stored = compress(Codec::Deflate, 6, "chunk/x", &data).unwrap();
        assert_eq!(&stored[..2], &[0xac, 0x02]);
    }

    #[test]
    fn incompressible_and_tiny_data_is_left_alone() {
        for codec in Codec::ALL {
            for n in [MIN_LEN, 1000, 1 << 20] {
                assert_eq!(
                    compress(codec, codec.default_level(), "chunk/x", &noise(n)),
                    None
                );
            }
            // Below the minimum, even data that would shrink.
            assert_eq!(
                compress(codec, codec.default_level(), "chunk/x", &[0; MIN_LEN - 1]),
                None
            );
            assert_eq!(compress(codec, codec.default_level(), "chunk/x", &[]), None);
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
            // Below the probe's size: this is about the 1% rule alone.
            let n = PROBE_MIN_LEN - 1;
            let overhead = 1 + codec.tag().len();
            let (mut kept, mut dropped) = (0, 0);
            for tail in (0..4000).step_by(50) {
                let mut data = noise(n - tail);
                data.extend(std::iter::repeat_n(b'a', tail));
                let worth = unlimited(codec, &data) + overhead + n / 100 <= n;
                match compress(codec, codec.default_level(), "chunk/x", &data) {
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
            let stored = compress(codec, codec.default_level(), "chunk/x", &data).unwrap();
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
        let zstd = compress(Codec::Zstd, 3, "chunk/x", &data).unwrap();
        assert!(decompress(Codec::Deflate, "chunk/d", &zstd).is_err());
        let deflate = compress(Codec::Deflate, 6, "chunk/x", &data).unwrap();
        assert!(decompress(Codec::Zstd, "chunk/d", &deflate).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 30, usize::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, n);
            assert_eq!(read_varint(&buf), Ok((n as u64, buf.len())), "{n}");
        }
    }

    #[test]
    fn contexts_follow_level_changes_on_one_thread() {
        let data = text(200_000);
        let fast = compress(Codec::Zstd, -5, "chunk/x", &data).unwrap();
        let small = compress(Codec::Zstd, 19, "chunk/x", &data).unwrap();
        assert!(small.len() < fast.len(), "{} {}", small.len(), fast.len());
        let fast2 = compress(Codec::Zstd, -5, "chunk/x", &data).unwrap();
        assert_eq!(fast, fast2);
        let d1 = compress(Codec::Deflate, 1, "chunk/x", &data).unwrap();
        let d9 = compress(Codec::Deflate, 9, "chunk/x", &data).unwrap();
        assert!(d9.len() < d1.len());
        assert_eq!(compress(Codec::Deflate, 1, "chunk/x", &data).unwrap(), d1);
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
                        let stored = compress(codec, level, "chunk/x", data).unwrap();
                        assert_eq!(&decompress(codec, "c", &stored).unwrap(), data);
                    }
                });
            }
        });
    }

    /// A zstd frame (RFC 8878) made by hand, of `len` zero bytes in RLE
    /// blocks of 128 KiB (4 bytes each: 1 GiB takes 32 KiB). `declared`
    /// is the content size its header states (`None`: none), and
    /// `window_log` its window size, from 10 to 41 (zstd decodes up to 31).
    pub(crate) fn rle_frame(len: usize, declared: Option<u64>, window_log: u8) -> Vec<u8> {
        const BLOCK: usize = 128 << 10;
        let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
        // Frame header descriptor: an 8-byte content size or none; not
        // single-segment, so a window descriptor follows; no checksum, no
        // dictionary.
        out.push(if declared.is_some() { 0xc0 } else { 0x00 });
        out.push((window_log - 10) << 3);
        if let Some(n) = declared {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let mut left = len;
        loop {
            let n = left.min(BLOCK);
            left -= n;
            let last = u32::from(left == 0);
            // Block header: last flag, type 1 (RLE), size; then the byte.
            let header = last | (1 << 1) | ((n as u32) << 3);
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.push(0);
            if left == 0 {
                return out;
            }
        }
    }

    /// The stored form: `claim` as a varint, then `body`.
    pub(crate) fn claiming(claim: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, claim as usize);
        out.extend_from_slice(body);
        out
    }

    /// Room for an error message and the codecs' own small buffers.
    const SLACK: usize = 64 << 10;

    #[test]
    fn hand_made_frames_are_what_zstd_reads() {
        let frame = rle_frame(300_000, Some(300_000), 17);
        assert_eq!(
            zstd::bulk::decompress(&frame, 300_000).unwrap(),
            vec![0; 300_000]
        );
        let stored = claiming(300_000, &frame);
        assert_eq!(
            decompress(Codec::Zstd, "chunk/x", &stored).unwrap(),
            vec![0; 300_000]
        );
    }

    #[test]
    fn a_claim_over_the_limit_of_its_kind_of_object_is_refused_before_allocating() {
        for (context, limit, kind) in [
            ("chunk/ab", MAX_CHUNK_LEN, "a file chunk"),
            ("tree/ab", MAX_TREE_LEN, "a tree object"),
            ("pack/ab", MAX_INDEX_LEN, "a pack trailer"),
            ("index/ab", MAX_INDEX_LEN, "an index object"),
            ("generations/c/g", MAX_RECORD_LEN, "a record"),
            ("clients/c", MAX_RECORD_LEN, "a record"),
        ] {
            let claim = limit as u64 + 1;
            // A body that really gives that much: the limit is what stops it.
            let frame = rle_frame(claim as usize, Some(claim), 17);
            let (result, largest) =
                largest_allocation(|| decompress(Codec::Zstd, context, &claiming(claim, &frame)));
            let err = result.unwrap_err();
            assert!(
                err.starts_with(&format!("object {context} cannot be decompressed")),
                "{err}"
            );
            assert!(
                err.contains(&format!(
                    "claims {claim} bytes of data, more than the limit of {limit} bytes ({} MiB) for {kind}",
                    limit >> 20
                )),
                "{err}"
            );
            assert!(largest < SLACK, "{context}: allocated {largest}");
            for codec in Codec::ALL {
                let err = decompress(codec, context, &claiming(claim, b"x")).unwrap_err();
                assert!(err.contains("more than the limit"), "{err}");
            }
        }
    }

    #[test]
    fn a_zstd_bomb_within_the_limit_costs_no_more_than_its_claim() {
        let gib = 1u64 << 30;
        // Its frame says 1 GiB: refused from the frame header.
        let frame = rle_frame(gib as usize, Some(gib), 17);
        let (result, largest) =
            largest_allocation(|| decompress(Codec::Zstd, "chunk/x", &claiming(1 << 20, &frame)));
        let err = result.unwrap_err();
        assert!(
            err.contains("declares 1073741824 bytes, not the 1048576 it claims"),
            "{err}"
        );
        assert!(largest < SLACK, "allocated {largest}");
        // Its frame does not say: zstd stops when the claim is full.
        let frame = rle_frame(gib as usize, None, 17);
        let (result, largest) =
            largest_allocation(|| decompress(Codec::Zstd, "chunk/x", &claiming(1 << 20, &frame)));
        let err = result.unwrap_err();
        assert!(err.contains("longer than the 1048576 bytes"), "{err}");
        assert!(largest <= (1 << 20) + SLACK, "allocated {largest}");
    }

    #[test]
    fn a_claim_more_than_the_compressed_bytes_can_give_is_refused_before_allocating() {
        for codec in Codec::ALL {
            let (result, largest) = largest_allocation(|| {
                decompress(
                    codec,
                    "chunk/x",
                    &claiming(MAX_CHUNK_LEN as u64, b"0123456789"),
                )
            });
            let err = result.unwrap_err();
            assert!(
                err.contains(&format!(
                    "claims {MAX_CHUNK_LEN} bytes of data, more than its 10 bytes of compressed data can give"
                )),
                "{codec:?}: {err}"
            );
            assert!(largest < SLACK, "{codec:?}: allocated {largest}");
        }
        // The bound is the format's: the most compressible data, at every
        // level, stays within it.
        let zeros = vec![0u8; 4 << 20];
        for (codec, levels) in [(Codec::Zstd, &[1, 3, 19][..]), (Codec::Deflate, &[1, 6, 9])] {
            for &level in levels {
                let stored = compress(codec, level, "chunk/x", &zeros).unwrap();
                assert_eq!(
                    decompress(codec, "chunk/x", &stored).unwrap(),
                    zeros,
                    "{codec:?} {level}"
                );
            }
        }
        // A hand-made frame of nothing but 4-byte RLE blocks is the
        // densest zstd there is, and is not refused.
        let frame = rle_frame(4 << 20, Some(4 << 20), 17);
        assert_eq!(
            decompress(Codec::Zstd, "chunk/x", &claiming(4 << 20, &frame)).unwrap(),
            zeros
        );
    }

    #[test]
    fn a_deflate_bomb_within_the_limit_costs_no_more_than_its_claim() {
        let mut c = Compress::new(Compression::new(9), false);
        let mut body = Vec::with_capacity(1 << 20);
        let zeros = vec![0u8; 64 << 20];
        c.compress_vec(&zeros, &mut body, FlushCompress::Finish)
            .unwrap();
        drop(zeros);
        let (result, largest) =
            largest_allocation(|| decompress(Codec::Deflate, "chunk/x", &claiming(1 << 20, &body)));
        let err = result.unwrap_err();
        assert!(err.contains("longer than the 1048576 bytes"), "{err}");
        assert!(largest <= (1 << 20) + SLACK, "allocated {largest}");
    }

    #[test]
    fn huge_zstd_windows_cost_nothing_and_every_zstd_obnam_could_write_is_read() {
        // A frame that demands a 2 GiB window (a streaming decoder would
        // allocate it) for 1000 bytes: decoded into the 1000-byte buffer.
        let frame = rle_frame(1000, Some(1000), 31);
        let (result, largest) =
            largest_allocation(|| decompress(Codec::Zstd, "chunk/x", &claiming(1000, &frame)));
        assert_eq!(result.unwrap(), vec![0; 1000]);
        assert!(largest < SLACK, "allocated {largest}");
        // Beyond what zstd itself accepts: refused, not allocated.
        let frame = rle_frame(1000, Some(1000), 41);
        let err = decompress(Codec::Zstd, "chunk/x", &claiming(1000, &frame)).unwrap_err();
        assert!(err.contains("object chunk/x"), "{err}");
        // zstd's largest level, and long-distance matching with a 128 MiB
        // window (obnam uses neither by default): read back.
        let data = text(256 << 10);
        let stored = compress(Codec::Zstd, 22, "chunk/x", &data).unwrap();
        assert_eq!(decompress(Codec::Zstd, "chunk/x", &stored).unwrap(), data);
        let mut long = zstd::bulk::Compressor::new(3).unwrap();
        long.set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(
            true,
        ))
        .unwrap();
        long.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
            .unwrap();
        let frame = long.compress(&data).unwrap();
        let stored = claiming(data.len() as u64, &frame);
        assert_eq!(decompress(Codec::Zstd, "chunk/x", &stored).unwrap(), data);
    }

    #[test]
    fn the_writer_never_compresses_what_the_reader_would_refuse() {
        for codec in Codec::ALL {
            let level = codec.default_level();
            let record = text(MAX_RECORD_LEN);
            let stored = compress(codec, level, "generations/c/g", &record).unwrap();
            assert_eq!(
                decompress(codec, "generations/c/g", &stored).unwrap(),
                record
            );
            let over = text(MAX_RECORD_LEN + 1);
            assert_eq!(compress(codec, level, "generations/c/g", &over), None);
            // The same bytes are a small chunk.
            assert!(compress(codec, level, "chunk/x", &over).is_some());
        }
        let zeros = vec![0u8; MAX_CHUNK_LEN + 1];
        assert_eq!(compress(Codec::Zstd, 1, "chunk/x", &zeros), None);
        let stored = compress(Codec::Zstd, 1, "chunk/x", &zeros[1..]).unwrap();
        assert_eq!(
            decompress(Codec::Zstd, "chunk/x", &stored).unwrap().len(),
            MAX_CHUNK_LEN
        );
    }

    #[test]
    fn concatenated_frames_are_refused() {
        let data = text(10_000);
        let frame = zstd::bulk::compress(&data[..5000], 3).unwrap();
        let mut two = frame.clone();
        two.extend_from_slice(&zstd::bulk::compress(&data[5000..], 3).unwrap());
        let err = decompress(Codec::Zstd, "chunk/x", &claiming(10_000, &two)).unwrap_err();
        assert!(err.contains("garbage follow the zstd frame"), "{err}");
    }
}
