//! Cutting file data into chunks: content-defined (FastCDC 2020) or fixed size.

use fastcdc::v2020::{
    FastCDC, AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
};
use plugin_api::payloads::SplitRequest;
use plugin_api::{Context, Result};

/// How chunk boundaries are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunker {
    ContentDefined { min: usize, avg: usize, max: usize },
    Fixed { size: usize },
}

/// A content-defined chunk size. The host refused a value out of the
/// setting's range or odd ([`Setting::multiple_of`](plugin_api::Setting::multiple_of)),
/// wherever it was written; this is FastCDC's own limit, kept for a host
/// that did not check.
fn size(ctx: &Context<'_>, name: &str, low: usize, high: usize) -> Result<usize> {
    let n = ctx.bytesize(name)?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n < low || n > high || n % 2 != 0 {
        return Err(ctx.setting_error(
            name,
            &format!("'{n}' is out of range: give an even number of bytes from {low} to {high}"),
        ));
    }
    Ok(n)
}

impl Chunker {
    /// The chunker the settings ask for.
    pub fn from_settings(ctx: &Context<'_>) -> Result<Self> {
        match ctx.string("chunking")?.as_deref() {
            Some("fixed") => {
                let n = ctx.bytesize("chunk-size")?;
                if n == 0 || n > 64 << 20 {
                    // As above: the host's range refuses it first.
                    return Err(ctx.setting_error(
                        "chunk-size",
                        &format!("'{n}' is out of range: give 1 to 64MiB"),
                    ));
                }
                Ok(Chunker::Fixed { size: n as usize })
            }
            _ => {
                let min = size(ctx, "chunk-min-size", MINIMUM_MIN, MINIMUM_MAX)?;
                let avg = size(ctx, "chunk-avg-size", AVERAGE_MIN, AVERAGE_MAX)?;
                let max = size(ctx, "chunk-max-size", MAXIMUM_MIN, MAXIMUM_MAX)?;
                if !(min <= avg && avg <= max) {
                    // Two values that do not fit together: the error is
                    // about the larger one that should be the smaller, and
                    // says where the other came from.
                    let (name, other, n, m) = if min > avg {
                        ("chunk-min-size", "chunk-avg-size", min, avg)
                    } else {
                        ("chunk-avg-size", "chunk-max-size", avg, max)
                    };
                    let from = ctx.setting_origin(other)?;
                    return Err(ctx.setting_error(
                        name,
                        &format!(
                            "'{n}' is more than --{other} {m} (from {from}): chunk sizes must \
                             grow, --chunk-min-size <= --chunk-avg-size <= --chunk-max-size"
                        ),
                    ));
                }
                Ok(Chunker::ContentDefined { min, avg, max })
            }
        }
    }

    /// Answer a split request: the lengths of the complete chunks at the
    /// start of its data (all of it at end of file).
    pub fn split(&self, req: &mut SplitRequest) {
        req.lengths.clear();
        for len in self.lengths(&req.data, req.eof) {
            req.lengths.push(len as u32);
        }
    }

    fn lengths(&self, data: &[u8], eof: bool) -> Vec<usize> {
        let mut out = Vec::new();
        match *self {
            Chunker::Fixed { size } => {
                let mut rest = data.len();
                while rest >= size {
                    out.push(size);
                    rest -= size;
                }
                if eof && rest > 0 {
                    out.push(rest);
                }
            }
            Chunker::ContentDefined { min, avg, max } => {
                for chunk in FastCDC::new(data, min, avg, max) {
                    out.push(chunk.length);
                }
                // The last chunk ends where the data does, which is a real
                // boundary only at the end of the file.
                if !eof {
                    out.pop();
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn fixed_chunks_cover_the_data() {
        let c = Chunker::Fixed { size: 100 };
        assert_eq!(c.lengths(&data(250), true), vec![100, 100, 50]);
        assert_eq!(c.lengths(&data(250), false), vec![100, 100]);
        assert!(c.lengths(&[], true).is_empty());
    }

    #[test]
    fn streaming_gives_the_same_chunks_as_one_pass() {
        let c = Chunker::ContentDefined {
            min: 1024,
            avg: 4096,
            max: 16384,
        };
        let all = data(300_000);
        let whole = c.lengths(&all, true);
        assert_eq!(whole.iter().sum::<usize>(), all.len());
        // Feed it in pieces of 40 KiB, carrying the unfinished tail over.
        let mut got = Vec::new();
        let mut start = 0;
        let mut end = 0;
        while start < all.len() {
            end = (end + 40_000).min(all.len());
            let eof = end == all.len();
            for len in c.lengths(&all[start..end], eof) {
                got.push(len);
                start += len;
            }
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn an_insertion_changes_few_chunks() {
        let c = Chunker::ContentDefined {
            min: 1024,
            avg: 4096,
            max: 16384,
        };
        let a = data(1_000_000);
        let mut b = a.clone();
        b.insert(5000, 42);
        let cut = |d: &[u8]| {
            let mut pos = 0;
            c.lengths(d, true)
                .into_iter()
                .map(|l| {
                    let s = d[pos..pos + l].to_vec();
                    pos += l;
                    s
                })
                .collect::<std::collections::HashSet<_>>()
        };
        let (ca, cb) = (cut(&a), cut(&b));
        assert!(
            cb.difference(&ca).count() <= 2,
            "{} new chunks",
            cb.difference(&ca).count()
        );
    }
}
