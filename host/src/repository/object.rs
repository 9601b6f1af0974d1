//! Encoding of stored objects: the data-filter tags in front of each
//! object's (possibly transformed) bytes.
//!
//! Every object except the bootstrap `config` passes through the
//! repository's data filters (compression, encryption: plugins on the
//! `repository-data` filter hook). On write each filter may transform the
//! bytes and, if it did, its tag is recorded; on read the tags are undone
//! in reverse. The stored form of an object is:
//!
//! ```text
//! u8 number of tags
//! per tag: u8 length, then that many bytes of ASCII tag name
//! the payload
//! ```
//!
//! The engine knows filters only through [`ObjectFilter`]; the host's
//! service layer implements it with the hook registry.

use super::error::{RepoError, RepoResult};

/// The data filters, as the repository engine sees them.
pub trait ObjectFilter: Send + Sync {
    /// Transform `data` for storage; returns the bytes and the tags of the
    /// filters that changed them, in the order they ran. `context` names
    /// the object (`chunk/ID`, `tree/ID`, `index/ID`, ...).
    fn encode(&self, context: &str, data: Vec<u8>) -> Result<(Vec<u8>, Vec<String>), String>;

    /// Undo the filters named by `tags`, last first.
    fn decode(&self, context: &str, data: Vec<u8>, tags: &[String]) -> Result<Vec<u8>, String>;
}

/// No filters at all: for tests of the engine alone.
pub struct NoFilters;

impl ObjectFilter for NoFilters {
    fn encode(&self, _: &str, data: Vec<u8>) -> Result<(Vec<u8>, Vec<String>), String> {
        Ok((data, Vec::new()))
    }

    fn decode(&self, context: &str, data: Vec<u8>, tags: &[String]) -> Result<Vec<u8>, String> {
        match tags.first() {
            None => Ok(data),
            Some(tag) => Err(format!(
                "object {context} needs the '{tag}' filter; no loaded plugin provides it"
            )),
        }
    }
}

/// Encode an object for storage: returns the tag header and the payload,
/// kept apart so that a pack writer can append both without a copy.
pub fn seal(
    filter: &dyn ObjectFilter,
    context: &str,
    data: Vec<u8>,
) -> RepoResult<(Vec<u8>, Vec<u8>)> {
    let (payload, tags) = filter.encode(context, data).map_err(RepoError::Filter)?;
    let mut header = Vec::with_capacity(1 + tags.iter().map(|t| t.len() + 1).sum::<usize>());
    let count = u8::try_from(tags.len())
        .map_err(|_| RepoError::Filter(format!("{context}: too many data filters")))?;
    header.push(count);
    for tag in &tags {
        let len = u8::try_from(tag.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| RepoError::Filter(format!("{context}: bad filter tag '{tag}'")))?;
        header.push(len);
        header.extend_from_slice(tag.as_bytes());
    }
    Ok((header, payload))
}

/// Encode an object as one buffer.
pub fn seal_whole(filter: &dyn ObjectFilter, context: &str, data: Vec<u8>) -> RepoResult<Vec<u8>> {
    let (mut header, payload) = seal(filter, context, data)?;
    header.extend_from_slice(&payload);
    Ok(header)
}

/// Decode a stored object.
pub fn open(filter: &dyn ObjectFilter, context: &str, stored: Vec<u8>) -> RepoResult<Vec<u8>> {
    let (tags, start) =
        parse_header(&stored).map_err(|reason| RepoError::corrupt(context, reason))?;
    let mut payload = stored;
    payload.drain(..start);
    filter
        .decode(context, payload, &tags)
        .map_err(RepoError::Filter)
}

fn parse_header(stored: &[u8]) -> Result<(Vec<String>, usize), String> {
    let count = *stored.first().ok_or("it is empty")? as usize;
    let mut pos = 1;
    let mut tags = Vec::with_capacity(count);
    for _ in 0..count {
        let len = *stored.get(pos).ok_or("its filter header is truncated")? as usize;
        let tag = stored
            .get(pos + 1..pos + 1 + len)
            .ok_or("its filter header is truncated")?;
        let tag = std::str::from_utf8(tag).map_err(|_| "a filter tag is not text")?;
        tags.push(tag.to_string());
        pos += 1 + len;
    }
    Ok((tags, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;

    impl ObjectFilter for Upper {
        fn encode(&self, _: &str, data: Vec<u8>) -> Result<(Vec<u8>, Vec<String>), String> {
            Ok((data.to_ascii_uppercase(), vec!["upper".into(), "x".into()]))
        }
        fn decode(&self, _: &str, data: Vec<u8>, tags: &[String]) -> Result<Vec<u8>, String> {
            assert_eq!(tags, ["upper", "x"]);
            Ok(data.to_ascii_lowercase())
        }
    }

    #[test]
    fn tags_round_trip() {
        let stored = seal_whole(&Upper, "c", b"hello".to_vec()).unwrap();
        assert_eq!(stored, b"\x02\x05upper\x01xHELLO");
        assert_eq!(open(&Upper, "c", stored).unwrap(), b"hello");
        let plain = seal_whole(&NoFilters, "c", b"abc".to_vec()).unwrap();
        assert_eq!(plain, b"\x00abc");
        assert_eq!(open(&NoFilters, "c", plain).unwrap(), b"abc");
    }

    #[test]
    fn missing_filter_and_corrupt_header_are_named() {
        let stored = seal_whole(&Upper, "chunk/1", b"x".to_vec()).unwrap();
        let err = open(&NoFilters, "chunk/1", stored).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object chunk/1 needs the 'upper' filter; no loaded plugin provides it"
        );
        let err = open(&NoFilters, "index/2", vec![3, 9, b'a']).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object index/2 is corrupt: its filter header is truncated"
        );
        assert!(open(&NoFilters, "x", Vec::new()).is_err());
    }
}
