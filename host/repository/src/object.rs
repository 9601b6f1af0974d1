//! Encoding of stored objects: the data-filter tags in front of each
//! object's (possibly transformed) bytes.
//!
//! Every object except the bootstrap `config` and the key slots passes
//! through the repository's data filters (compression, encryption: plugins
//! on the `repository-data` filter hook). On write each filter may
//! transform the bytes and, if it did, its tag is recorded; on read the tags
//! are undone in reverse. The stored form of an object is:
//!
//! ```text
//! u8 number of tags
//! per tag: u8 length, then that many bytes of ASCII tag name
//! the payload
//! ```
//!
//! A repository may name one filter its *seal* (the encryption plugin's
//! `encrypt`, recorded in the config when the repository is created). The
//! seal runs last and wraps the whole of the inner encoding, tags included,
//! so that nothing about the inner filters shows outside it and a tampered
//! inner tag list cannot pass unnoticed. In such a repository every object
//! is stored as a one-tag header naming the seal, then the sealed bytes of
//! `inner header + payload`; an object that is not sealed is refused.
//!
//! Nothing read from a repository is used before it is verified (format
//! 3): an object named by its content (a chunk, a tree) is checked against
//! its id by the caller, which knows how ids are made; every other object
//! carries a checksum of its plain bytes, bound to its name, which
//! [`strip_checksum`] checks (see [`add_checksum`]). Decoded objects are
//! also held to the size limits of the format ([`check_decoded_len`]), so
//! that a filter that believed a hostile length claim is still caught.
//!
//! The engine knows filters only through [`ObjectFilter`]; the host's
//! service layer implements it with the hook registry.

use sha2::{Digest, Sha256};

use super::error::{RepoError, RepoResult};

/// Bytes of the checksum that ends the plain bytes of every object not
/// named by its content (format 3).
pub const CHECKSUM_LEN: usize = 32;

/// The checksum of an object's plain bytes: SHA-256 of a domain string,
/// the object's context (its name) and the bytes. The name is part of it
/// so that an object copied or moved to another name is found out too.
fn checksum(context: &str, data: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = Sha256::new();
    h.update(b"obnam object checksum\0");
    h.update(context.as_bytes());
    h.update(b"\0");
    h.update(data);
    h.finalize().into()
}

/// Append the checksum of `data`, stored under `context`, to it.
pub fn add_checksum(context: &str, data: &mut Vec<u8>) {
    let sum = checksum(context, data);
    data.extend_from_slice(&sum);
}

/// Check and remove the checksum that [`add_checksum`] appended.
pub fn strip_checksum(context: &str, mut data: Vec<u8>) -> RepoResult<Vec<u8>> {
    let end = check_checksum(context, &data)?;
    data.truncate(end);
    Ok(data)
}

/// Check the checksum that [`add_checksum`] appended to `data`; where
/// the data before it ends.
pub fn check_checksum(context: &str, data: &[u8]) -> RepoResult<usize> {
    let Some(end) = data.len().checked_sub(CHECKSUM_LEN) else {
        return Err(RepoError::corrupt(
            context,
            "it is too short to hold its checksum",
        ));
    };
    if checksum(context, &data[..end]) != data[end..] {
        return Err(RepoError::corrupt(
            context,
            "its content does not match its checksum (damaged or altered)",
        ));
    }
    Ok(end)
}

/// Refuse decoded bytes longer than the format allows for the object
/// named by `context` (with `extra` bytes of checksum).
pub fn check_decoded_len(context: &str, len: usize, extra: usize) -> RepoResult<()> {
    let limit = crate::limits::max_decoded_len(context) + extra;
    if len > limit {
        return Err(RepoError::corrupt(
            context,
            format!("it decodes to {len} bytes, more than the format allows ({limit})"),
        ));
    }
    Ok(())
}

/// What the engine asks of its keeper when it opens a repository: the
/// repository's seal, if any, and its key slots.
#[derive(Debug, Clone)]
pub struct UnlockRequest {
    /// The repository URL.
    pub url: String,
    /// The repository id.
    pub repository_id: String,
    /// Whether the repository is being created by this open.
    pub creating: bool,
    /// The run only pretends to create it: the filters check that they
    /// could, and their answer is not used ([`crate::keys::check_creation`]).
    pub pretending: bool,
    /// The seal recorded in the config (`None`: not sealed, or being created).
    pub seal: Option<serde_json::Value>,
    /// The key slots stored in the repository: id and text.
    pub key_slots: Vec<(String, String)>,
}

/// The answer to an [`UnlockRequest`].
#[derive(Debug, Clone, Default)]
pub struct Unlocked {
    /// For a repository being created: the seal to record (an object with
    /// at least a `filter` member naming the sealing filter's tag).
    pub seal: Option<serde_json::Value>,
    /// Key slots to store: id and text.
    pub new_key_slots: Vec<(String, String)>,
    /// The key for chunk tokens (keyed HMAC-SHA-256); required once sealed.
    pub token_key: Option<[u8; 32]>,
}

/// Bytes a data filter made, in the buffer it made them in: a plugin's
/// buffer (an `RVec` from another library, which could only be turned
/// into a `Vec` of the host's by copying it) is used where it is. Each
/// object of an initial backup went through one such copy per filter
/// that changed it (a compressed chunk once, an encrypted one twice), and
/// each object read back as many, and a `memmove` of its bytes to drop
/// its header.
pub struct FilterOutput(Box<dyn FilterBuffer>);

/// A buffer a [`FilterOutput`] can hold.
pub trait FilterBuffer: Send + Sync + 'static {
    /// The bytes.
    fn bytes(&self) -> &[u8];
    /// The bytes as a `Vec`: the buffer itself where it is one, else a
    /// copy.
    fn into_vec(self: Box<Self>) -> Vec<u8>;
}

impl FilterBuffer for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn into_vec(self: Box<Self>) -> Vec<u8> {
        *self
    }
}

impl FilterOutput {
    /// The bytes of `buffer`, kept in it.
    pub fn new(buffer: impl FilterBuffer) -> Self {
        FilterOutput(Box::new(buffer))
    }

    /// The bytes as a `Vec` (see [`FilterBuffer::into_vec`]).
    pub fn into_vec(self) -> Vec<u8> {
        self.0.into_vec()
    }
}

impl From<Vec<u8>> for FilterOutput {
    fn from(bytes: Vec<u8>) -> Self {
        FilterOutput::new(bytes)
    }
}

impl std::ops::Deref for FilterOutput {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// An object's data as the filters left it, written or read: the data
/// itself where none changed it (a chunk that does not compress is copied
/// only into its pack), else what the last one made.
pub enum Encoded<'d> {
    Unchanged(&'d [u8]),
    Changed(FilterOutput),
}

impl std::ops::Deref for Encoded<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Encoded::Unchanged(bytes) => bytes,
            Encoded::Changed(output) => output,
        }
    }
}

/// The data filters, as the repository engine sees them.
pub trait ObjectFilter: Send + Sync {
    /// Transform `data` for storage with every filter except `skip` (the
    /// seal, which runs separately); returns the bytes (the data itself
    /// when no filter changed them) and the tags of the filters that changed them, in the
    /// order they ran. `context` names the object (`chunk/ID`, `tree/ID`,
    /// `index/ID`, ...).
    fn encode<'d>(
        &self,
        context: &str,
        data: &'d [u8],
        skip: Option<&str>,
    ) -> Result<(Encoded<'d>, Vec<String>), String>;

    /// Run only the filter tagged `tag` on `data`; `None` if it left the
    /// data unchanged.
    fn encode_with(
        &self,
        tag: &str,
        context: &str,
        data: &[u8],
    ) -> Result<Option<FilterOutput>, String>;

    /// Undo the filters named by `tags` (at least one), last first.
    fn decode(
        &self,
        context: &str,
        data: &[u8],
        tags: &[String],
    ) -> Result<FilterOutput, DecodeError>;

    /// Whether a loaded filter has the tag `tag`.
    fn provides(&self, tag: &str) -> bool;

    /// The tags of the loaded filters: a tag that none provides but that
    /// one damaged byte could have made of one of these is damage if the
    /// object checks with this one in its place ([`header_repairs`]).
    fn tags(&self) -> Vec<String> {
        Vec::new()
    }

    /// The filters among `tags` that do not vouch for their decode (that
    /// their errors, and so their output, are about the data), in words
    /// (`the filter 'x' of plugin 'p'`); `None` if every one does. What
    /// such a filter gave back is not known to be what was written: a
    /// check of it that fails (a checksum, an id) is not taken for
    /// damage ([`after_filters`]).
    fn unvouched(&self, tags: &[String]) -> Option<String> {
        let _ = tags;
        None
    }

    /// Called once when a repository is opened or created, before any
    /// filtered object is read or written: unlock a sealed repository, or
    /// choose a seal for a new one.
    fn unlock(&self, request: &UnlockRequest) -> Result<Unlocked, String>;
}

/// Why [`ObjectFilter::decode`] could not undo the filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The stored bytes are damaged: a filter said so (they do not
    /// decompress, or fail authentication). The object is damaged
    /// ([`RepoError::Undecodable`]), as if its checksum failed.
    Damaged(String),
    /// The filter could not work (not loaded, a panic, an error it does
    /// not say is about the data): the run's problem
    /// ([`RepoError::Filter`]), not the object's.
    Failed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Damaged(message) | DecodeError::Failed(message) => f.write_str(message),
        }
    }
}

/// No filters at all: for tests of the engine alone.
pub struct NoFilters;

impl ObjectFilter for NoFilters {
    fn encode<'d>(
        &self,
        _: &str,
        data: &'d [u8],
        _: Option<&str>,
    ) -> Result<(Encoded<'d>, Vec<String>), String> {
        Ok((Encoded::Unchanged(data), Vec::new()))
    }

    fn encode_with(&self, tag: &str, _: &str, _: &[u8]) -> Result<Option<FilterOutput>, String> {
        Err(missing_filter_message("the repository", tag))
    }

    fn decode(
        &self,
        context: &str,
        data: &[u8],
        tags: &[String],
    ) -> Result<FilterOutput, DecodeError> {
        match tags.first() {
            None => Ok(data.to_vec().into()),
            Some(tag) => Err(DecodeError::Failed(missing_filter_message(
                &format!("object {context}"),
                tag,
            ))),
        }
    }

    fn provides(&self, _: &str) -> bool {
        false
    }

    fn unlock(&self, _: &UnlockRequest) -> Result<Unlocked, String> {
        Ok(Unlocked::default())
    }
}

/// The message for data that needs a filter no loaded plugin provides.
pub fn missing_filter_message(what: &str, tag: &str) -> String {
    format!("{what} needs the '{tag}' filter; no loaded plugin provides it")
}

fn encode_header(context: &str, tags: &[String]) -> RepoResult<Vec<u8>> {
    let mut header = Vec::with_capacity(1 + tags.iter().map(|t| t.len() + 1).sum::<usize>());
    let count = u8::try_from(tags.len())
        .map_err(|_| RepoError::Filter(format!("{context}: too many data filters")))?;
    header.push(count);
    for tag in tags {
        let len = u8::try_from(tag.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| RepoError::Filter(format!("{context}: bad filter tag '{tag}'")))?;
        header.push(len);
        header.extend_from_slice(tag.as_bytes());
    }
    Ok(header)
}

/// Encode an object for storage: returns the tag header and the payload,
/// kept apart so that a pack writer can append both without a copy.
/// `seal` names the repository's sealing filter, if it has one.
pub fn seal<'d>(
    filter: &dyn ObjectFilter,
    seal: Option<&str>,
    context: &str,
    data: &'d [u8],
) -> RepoResult<(Vec<u8>, Encoded<'d>)> {
    let (payload, tags) = filter
        .encode(context, data, seal)
        .map_err(RepoError::Filter)?;
    let header = encode_header(context, &tags)?;
    let Some(seal) = seal else {
        return Ok((header, payload));
    };
    let mut inner = header;
    inner.extend_from_slice(&payload);
    drop(payload);
    let sealed = filter
        .encode_with(seal, context, &inner)
        .map_err(RepoError::Filter)?
        .ok_or_else(|| {
            RepoError::Filter(format!(
                "the '{seal}' filter left object {context} unsealed; refusing to store it"
            ))
        })?;
    Ok((
        encode_header(context, &[seal.to_string()])?,
        Encoded::Changed(sealed),
    ))
}

/// Encode an object as one buffer.
pub fn seal_whole(
    filter: &dyn ObjectFilter,
    seal_tag: Option<&str>,
    context: &str,
    data: &[u8],
) -> RepoResult<Vec<u8>> {
    let (mut header, payload) = seal(filter, seal_tag, context, data)?;
    header.extend_from_slice(&payload);
    Ok(header)
}

/// Decode a stored object. In a sealed repository the object must be
/// sealed: anything else is refused as corrupt, so that an object put in
/// by someone without the key is never taken for good.
pub fn open(
    filter: &dyn ObjectFilter,
    seal: Option<&str>,
    context: &str,
    stored: Vec<u8>,
) -> RepoResult<Vec<u8>> {
    open_tagged(filter, seal, context, stored).map(|(plain, _)| plain)
}

/// [`open`], and the tags of the filters undone (the seal's first).
pub fn open_tagged(
    filter: &dyn ObjectFilter,
    seal: Option<&str>,
    context: &str,
    stored: Vec<u8>,
) -> RepoResult<(Vec<u8>, Vec<String>)> {
    let (start, tags) = match open_borrowed_tagged(filter, seal, context, &stored)? {
        // No filter: the payload is the end of `stored`.
        (Encoded::Unchanged(plain), tags) => (stored.len() - plain.len(), tags),
        (Encoded::Changed(plain), tags) => return Ok((plain.into_vec(), tags)),
    };
    let mut plain = stored;
    plain.drain(..start);
    Ok((plain, tags))
}

/// `checked`, a check of what the filters `tags` gave back, unless it
/// found damage after a filter that does not vouch for its decode: then
/// the object may be sound, and the filter wrong (a plugin's decode that
/// does not undo its encode, or a key it was given wrong), and the run
/// stops naming the filter ([`RepoError::Filter`]) rather than take the
/// object for damaged: a damaged record is left out, and the user told
/// to forget it.
pub fn after_filters<T>(
    filter: &dyn ObjectFilter,
    tags: &[String],
    checked: RepoResult<T>,
) -> RepoResult<T> {
    match checked {
        Err(e) if e.is_damaged_object() => match filter.unvouched(tags) {
            Some(filters) => Err(RepoError::Filter(format!(
                "{e}, after {filters} undid its part: if that plugin's decode does not undo \
                 its encode, the object is sound; the run stops rather than take it for damaged"
            ))),
            None => Err(e),
        },
        other => other,
    }
}

/// [`open`] of bytes that stay where they are (a blob in a pack read
/// whole, which `fsck --verify-data` and a prune only check): the payload
/// itself where no filter changed it, not a copy, else what the filters
/// made of it.
pub fn open_borrowed<'s>(
    filter: &dyn ObjectFilter,
    seal: Option<&str>,
    context: &str,
    stored: &'s [u8],
) -> RepoResult<Encoded<'s>> {
    open_borrowed_tagged(filter, seal, context, stored).map(|(plain, _)| plain)
}

/// [`open_borrowed`], and the tags of the filters undone (the seal's
/// first). What is found wrong after a filter that does not vouch for
/// its decode is not damage ([`after_filters`]).
pub fn open_borrowed_tagged<'s>(
    filter: &dyn ObjectFilter,
    seal: Option<&str>,
    context: &str,
    stored: &'s [u8],
) -> RepoResult<(Encoded<'s>, Vec<String>)> {
    let (tags, start) =
        parse_header(stored).map_err(|reason| RepoError::corrupt(context, reason))?;
    let (plain, undone) = match seal {
        None if tags.is_empty() => (Encoded::Unchanged(&stored[start..]), tags),
        None => {
            let plain = decode(filter, context, &stored[start..], &tags)?;
            (Encoded::Changed(plain), tags)
        }
        Some(seal) => {
            if tags.len() != 1 || tags[0] != seal {
                return Err(RepoError::corrupt(
                    context,
                    format!("it is not sealed with the repository's '{seal}' filter"),
                ));
            }
            let inner = decode(filter, context, &stored[start..], &tags)?;
            let mut undone = tags;
            let header = parse_header(&inner).map_err(|reason| RepoError::corrupt(context, reason));
            let (tags, start) = after_filters(filter, &undone, header)?;
            let plain = if tags.is_empty() {
                inner[start..].to_vec().into()
            } else {
                let plain = decode(filter, context, &inner[start..], &tags)?;
                undone.extend(tags);
                plain
            };
            (Encoded::Changed(plain), undone)
        }
    };
    after_filters(
        filter,
        &undone,
        check_decoded_len(context, plain.len(), CHECKSUM_LEN),
    )?;
    Ok((plain, undone))
}

/// Undo the filters `tags` on an object's bytes. A tag that no loaded
/// filter provides is the run's problem ([`RepoError::Filter`]: that
/// plugin is needed), and is asked first; a loaded filter that says the
/// bytes are damaged (they do not decompress, or fail authentication)
/// makes the object damaged ([`RepoError::Undecodable`]), and one that
/// fails otherwise is the run's problem again ([`DecodeError`]), so that
/// a reader of many objects can tell the two apart.
fn decode(
    filter: &dyn ObjectFilter,
    context: &str,
    data: &[u8],
    tags: &[String],
) -> RepoResult<FilterOutput> {
    let missing: Vec<&String> = tags.iter().filter(|tag| !filter.provides(tag)).collect();
    match missing.as_slice() {
        [] => {}
        [tag] => {
            return Err(RepoError::Filter(missing_filter_message(
                &format!("object {context}"),
                tag,
            )))
        }
        // All of them: the first alone may be a loaded filter's tag
        // damaged, beside the plugin that is missing.
        [first @ .., last] => {
            let first: Vec<String> = first.iter().map(|t| format!("'{t}'")).collect();
            return Err(RepoError::Filter(format!(
                "object {context} needs the {} and '{last}' filters; no loaded plugin \
                 provides them",
                first.join(", ")
            )));
        }
    }
    filter.decode(context, data, tags).map_err(|e| match e {
        DecodeError::Damaged(message) => RepoError::Undecodable {
            object: context.to_string(),
            message,
        },
        DecodeError::Failed(message) => RepoError::Filter(message),
    })
}

/// The longest filter tag: a stored header gives each tag's length in
/// one byte.
pub const MAX_TAG_LEN: usize = 255;

/// What is wrong with `tag` as a filter's tag, if anything, said of it
/// (`is 0 bytes long, ...`): a tag is 1 to 255 bytes of printable ASCII,
/// what the host lets a plugin register, and always did (a stricter rule
/// read the repositories written with a tag it refused as damaged).
pub fn tag_problem(tag: &[u8]) -> Option<String> {
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Some(format!(
            "is {} bytes long, not 1 to {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    if tag.iter().any(|&b| !b.is_ascii_graphic() && b != b' ') {
        return Some("is not printable ASCII text".to_string());
    }
    None
}

/// Where one damaged byte of an object's filter header may have made it
/// unreadable, or made a loaded filter's tag into one that no loaded
/// filter provides: the header as it would be with that byte undone, for
/// each way one byte could have done it: its count byte (raised or
/// lowered: 0 for an object stored as it is, whose payload's first bytes
/// then read as a tag, or 0 for an object with tags, whose header then
/// reads as its payload); any tag's length byte (the tag stops short,
/// `zs`, or runs on into the payload, `zstdq`, or past its end); any
/// tag's byte (the same length and one byte other, `zsta` or `zs\xf4d`
/// for `zstd`). Each comes with what was read and undone, in words (`a
/// tag reads 'zsta', ..., and with 'zstd' in its place`), and names only
/// loaded filters once undone. Only a candidate with which the object
/// checks proves damage (see `Codec`): a plugin missing whose tag is
/// close to a loaded one's is not taken for damage.
pub fn header_repairs(filter: &dyn ObjectFilter, stored: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Some(&count_read) = stored.first() else {
        return Vec::new();
    };
    let known = |fixed: &[u8]| {
        parse_header(fixed).is_ok_and(|(tags, _)| tags.iter().all(|t| filter.provides(t)))
    };
    let mut repairs = Vec::new();
    // The count byte, whatever the header reads as: counts beyond a few
    // are not what any writer made.
    for count in 0..=MAX_REPAIRED_COUNT {
        let mut fixed = stored.to_vec();
        fixed[0] = count;
        if count != count_read && known(&fixed) {
            repairs.push((
                format!("its count of tags reads {count_read}, and with {count}"),
                fixed,
            ));
        }
    }
    let tags = raw_tags(stored);
    if tags.iter().all(|&(_, tag)| {
        tag.and_then(|t| std::str::from_utf8(t).ok())
            .is_some_and(|t| filter.provides(t))
    }) {
        // A header that reads, naming loaded filters only: only its count
        // can be what is wrong (and the loaded filters are not listed,
        // which costs a copy of every tag across the plugin boundary).
        return repairs;
    }
    let loaded = filter.tags();
    for &(pos, tag) in &tags {
        let len_read = stored[pos];
        // Its length byte: a loaded tag's bytes follow it.
        for t in &loaded {
            let l = t.as_bytes();
            let Ok(len) = u8::try_from(l.len()) else {
                continue;
            };
            if len != len_read && stored.get(pos + 1..pos + 1 + l.len()) == Some(l) {
                let mut fixed = stored.to_vec();
                fixed[pos] = len;
                if known(&fixed) {
                    repairs.push((
                        format!("a tag's length reads {len_read}, and with {len} ('{t}')"),
                        fixed,
                    ));
                }
            }
        }
        // Its bytes: a loaded tag's but for one, whatever that one is (a
        // byte that is no text's, `zs\xf4d`, as well).
        let Some(read) = tag else {
            continue;
        };
        if std::str::from_utf8(read).is_ok_and(|r| filter.provides(r)) {
            continue;
        }
        for t in &loaded {
            let l = t.as_bytes();
            let one_other =
                l.len() == read.len() && l.iter().zip(read).filter(|(a, b)| a != b).count() == 1;
            if one_other {
                let mut fixed = stored.to_vec();
                fixed[pos + 1..pos + 1 + l.len()].copy_from_slice(l);
                if known(&fixed) {
                    repairs.push((
                        format!(
                            "a tag reads '{}', which no loaded plugin provides, and with \
                             '{t}' in its place",
                            tag_as_read(read)
                        ),
                        fixed,
                    ));
                }
            }
        }
    }
    repairs
}

/// A damaged tag's bytes as text: printable ASCII as it is, any other
/// byte as `<f4>`. (Not escaped as names are: the message it goes into is
/// escaped once more where it is shown, and `zs\xf4d` came out as
/// `zs\\xf4d`.)
fn tag_as_read(tag: &[u8]) -> String {
    tag.iter()
        .map(|&b| match b {
            b' '..=b'~' => char::from(b).to_string(),
            _ => format!("<{b:02x}>"),
        })
        .collect()
}

/// The most tags a header is taken to have had when its count byte is
/// undone (obnam writes two at most, a third-party filter or two more).
const MAX_REPAIRED_COUNT: u8 = 8;

/// The tags of a header as its bytes read, whatever they hold: for each
/// tag its length byte's position, and its bytes where the object holds
/// that many (the walk stops at a length byte past the end).
fn raw_tags(stored: &[u8]) -> Vec<(usize, Option<&[u8]>)> {
    let count = stored.first().copied().unwrap_or(0);
    let mut tags = Vec::new();
    let mut pos = 1;
    for _ in 0..count {
        let Some(&len) = stored.get(pos) else {
            break;
        };
        let tag = stored.get(pos + 1..pos + 1 + usize::from(len));
        tags.push((pos, tag));
        if tag.is_none() {
            break;
        }
        pos += 1 + usize::from(len);
    }
    tags
}

/// The tags of an object's header, and where its payload starts. A tag
/// that is not one a plugin may register ([`tag_problem`]) is damage to
/// the header, not a plugin's tag.
fn parse_header(stored: &[u8]) -> Result<(Vec<String>, usize), String> {
    let count = *stored.first().ok_or("it is empty")? as usize;
    let mut pos = 1;
    let mut tags = Vec::with_capacity(count);
    for _ in 0..count {
        let len = *stored.get(pos).ok_or("its filter header is truncated")? as usize;
        let tag = stored
            .get(pos + 1..pos + 1 + len)
            .ok_or("its filter header is truncated")?;
        if let Some(problem) = tag_problem(tag) {
            return Err(format!(
                "its filter header is damaged: a tag that {problem}"
            ));
        }
        let tag = std::str::from_utf8(tag).map_err(|_| "a filter tag is not text")?;
        tags.push(tag.to_string());
        pos += 1 + len;
    }
    Ok((tags, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upper-cases on write with two tags; "seal" reverses the bytes and
    /// checks the context on read, as an AEAD's associated data would.
    struct Upper;

    impl ObjectFilter for Upper {
        fn encode<'d>(
            &self,
            _: &str,
            data: &'d [u8],
            _: Option<&str>,
        ) -> Result<(Encoded<'d>, Vec<String>), String> {
            Ok((
                Encoded::Changed(data.to_ascii_uppercase().into()),
                vec!["upper".into(), "x".into()],
            ))
        }
        fn encode_with(
            &self,
            tag: &str,
            context: &str,
            data: &[u8],
        ) -> Result<Option<FilterOutput>, String> {
            assert_eq!(tag, "seal");
            let mut data = data.to_vec();
            data.reverse();
            data.extend_from_slice(context.as_bytes());
            Ok(Some(data.into()))
        }
        fn decode(
            &self,
            context: &str,
            data: &[u8],
            tags: &[String],
        ) -> Result<FilterOutput, DecodeError> {
            if tags == ["seal"] {
                let mut data = data
                    .strip_suffix(context.as_bytes())
                    .ok_or_else(|| DecodeError::Damaged("wrong context".into()))?
                    .to_vec();
                data.reverse();
                return Ok(data.into());
            }
            assert_eq!(tags, ["upper", "x"]);
            Ok(data.to_ascii_lowercase().into())
        }
        fn provides(&self, _: &str) -> bool {
            true
        }
        fn unlock(&self, _: &UnlockRequest) -> Result<Unlocked, String> {
            Ok(Unlocked::default())
        }
    }

    #[test]
    fn tags_round_trip() {
        let stored = seal_whole(&Upper, None, "c", b"hello").unwrap();
        assert_eq!(stored, b"\x02\x05upper\x01xHELLO");
        assert_eq!(open(&Upper, None, "c", stored).unwrap(), b"hello");
        let plain = seal_whole(&NoFilters, None, "c", b"abc").unwrap();
        assert_eq!(plain, b"\x00abc");
        assert_eq!(open(&NoFilters, None, "c", plain).unwrap(), b"abc");
    }

    #[test]
    fn a_seal_wraps_the_inner_tags_and_is_required() {
        let stored = seal_whole(&Upper, Some("seal"), "c", b"hi").unwrap();
        // Only the seal's tag shows; the inner header is inside it.
        assert_eq!(stored, b"\x01\x04sealIHx\x01reppu\x05\x02c");
        assert_eq!(
            open(&Upper, Some("seal"), "c", stored.clone()).unwrap(),
            b"hi"
        );
        // Another object's context does not open it.
        assert!(open(&Upper, Some("seal"), "d", stored).is_err());
        // An unsealed object in a sealed repository is refused.
        let plain = seal_whole(&Upper, None, "c", b"hi").unwrap();
        let err = open(&Upper, Some("seal"), "c", plain).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object c is corrupt: it is not sealed with the repository's 'seal' filter"
        );
    }

    #[test]
    fn missing_filter_and_corrupt_header_are_named() {
        let stored = seal_whole(&Upper, None, "chunk/1", b"x").unwrap();
        let err = open(&NoFilters, None, "chunk/1", stored).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object chunk/1 needs the 'upper' and 'x' filters; no loaded plugin provides them"
        );
        let err = open(&NoFilters, None, "index/2", vec![3, 9, b'a']).unwrap_err();
        assert_eq!(
            err.to_string(),
            "object index/2 is corrupt: its filter header is truncated"
        );
        assert!(open(&NoFilters, None, "x", Vec::new()).is_err());
    }

    /// A tag that no plugin may register is damage to the header; the
    /// repairs offered for an unknown tag are those one byte could undo.
    #[test]
    fn tags_are_checked_and_near_misses_offered_for_proof() {
        for good in [&b"zstd"[..], b"XOR-Test 2", b"{\"kind\"", &[b'a'; 255]] {
            assert_eq!(tag_problem(good), None, "{good:?}");
        }
        for bad in [&b""[..], b"tag \xc3\xa9", b"z\x01", &[b'a'; 256]] {
            assert!(tag_problem(bad).is_some(), "{bad:?}");
        }

        struct Zstd;
        impl ObjectFilter for Zstd {
            fn encode<'d>(
                &self,
                _: &str,
                d: &'d [u8],
                _: Option<&str>,
            ) -> Result<(Encoded<'d>, Vec<String>), String> {
                Ok((Encoded::Unchanged(d), Vec::new()))
            }
            fn encode_with(
                &self,
                _: &str,
                _: &str,
                _: &[u8],
            ) -> Result<Option<FilterOutput>, String> {
                Err("none".into())
            }
            fn decode(&self, _: &str, d: &[u8], _: &[String]) -> Result<FilterOutput, DecodeError> {
                Ok(d.to_vec().into())
            }
            fn provides(&self, tag: &str) -> bool {
                tag == "zstd"
            }
            fn tags(&self) -> Vec<String> {
                vec!["zstd".into()]
            }
            fn unlock(&self, _: &UnlockRequest) -> Result<Unlocked, String> {
                Ok(Unlocked::default())
            }
        }
        // What the count of tags undone would give is offered too; the
        // repairs of a tag (its bytes, its length) are looked at here.
        let repairs = |stored: &[u8]| -> Vec<(String, Vec<u8>)> {
            header_repairs(&Zstd, stored)
                .into_iter()
                .filter(|(what, _)| !what.starts_with("its count of tags"))
                .collect()
        };
        let sound = b"\x01\x04zstdpayload";
        assert_eq!(repairs(sound), vec![]);
        for (damaged, said) in [
            (
                &b"\x01\x04zstapayload"[..],
                "a tag reads 'zsta', which no loaded plugin provides, and with 'zstd' in its place",
            ),
            (
                b"\x01\x03zstdpayload",
                "a tag's length reads 3, and with 4 ('zstd')",
            ),
            (
                b"\x01\x05zstdpayload",
                "a tag's length reads 5, and with 4 ('zstd')",
            ),
            // Running on into bytes that are no tag's: the header does not
            // read at all.
            (
                b"\x01\x06zstd\x9a\x01payload",
                "a tag's length reads 6, and with 4 ('zstd')",
            ),
        ] {
            let found = repairs(damaged);
            assert_eq!(found.len(), 1, "{damaged:?}");
            assert_eq!(found[0].0, said);
            assert_eq!(found[0].1[..6], sound[..6], "{damaged:?}");
        }
        // Offered, but only the object's check proves it (see `Codec`).
        assert_eq!(repairs(b"\x01\x09zstd-dictpayload").len(), 1);
        assert_eq!(repairs(b"\x01\x03lz4payload"), vec![]);
        // A count changed in front of text (a lock's JSON, stored as it
        // is): its first byte reads as a long tag; undone, the count is 0.
        let lock = b"\x01{\"kind\":\"client\",\"host\":\"h\",\"pid\":7,\"created\":1,\"refreshed\":1,\"client\":\"c\",\"boot_id\":\"x\",\"pid_ns\":4026531836,\"more\":\"padding to past the 123 bytes a tag would take\"}";
        let e = open(&Zstd, None, "locks/x", lock.to_vec()).unwrap_err();
        assert!(!e.is_damaged_object(), "{e}");
        let counted = header_repairs(&Zstd, lock);
        assert_eq!(counted.len(), 1, "{counted:?}");
        assert_eq!(counted[0].0, "its count of tags reads 1, and with 0");
        let counted = header_repairs(&Zstd, b"\x01\x01qpayload");
        assert_eq!(counted.len(), 1, "{counted:?}");
        assert_eq!(counted[0].1, b"\x00\x01qpayload");
        // The count of a compressed object changed from 1 to 2 or to 0.
        for damaged in [&b"\x02\x04zstd\x9apayload"[..], b"\x00\x04zstdpayload"] {
            let counted = header_repairs(&Zstd, damaged);
            assert!(
                counted
                    .iter()
                    .any(|(what, fixed)| what.starts_with("its count of tags reads")
                        && fixed[..6] == sound[..6]),
                "{damaged:?}: {counted:?}"
            );
        }
        // A missing plugin's tag, damage to the count or a tag that is no
        // tag: nothing to undo.
        let missing = open(&Zstd, None, "chunk/1", b"\x01\x03lz4data".to_vec()).unwrap_err();
        assert!(!missing.is_damaged_object(), "{missing}");
        assert_eq!(
            missing.to_string(),
            "object chunk/1 needs the 'lz4' filter; no loaded plugin provides it"
        );
        // Two missing: both named (the first may be a loaded one's tag
        // damaged, the plugin missing the other's).
        let two = b"\x02\x04zsud\x08xor-testdata".to_vec();
        let missing = open(&Zstd, None, "chunk/1", two).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "object chunk/1 needs the 'zsud' and 'xor-test' filters; no loaded plugin provides \
             them"
        );
        // Not even a tag's form: damage to the header.
        for header in [
            &b"\x01\x02z\x01data"[..],
            b"\x01\x00data",
            b"\x02\x04zstd\x03\xff\xfe\xfd",
        ] {
            let e = open(&Zstd, None, "chunk/1", header.to_vec()).unwrap_err();
            assert!(e.is_damaged_object(), "{e}");
            assert!(e.to_string().contains("its filter header is"), "{e}");
        }
    }

    /// A header that reads and names loaded filters only costs no list
    /// of the loaded filters (across the plugin boundary, per object):
    /// only its count can be what is wrong, and the count lowered is
    /// still found.
    #[test]
    fn a_sound_header_is_probed_without_listing_the_filters() {
        struct Unlisted;
        impl ObjectFilter for Unlisted {
            fn encode<'d>(
                &self,
                _: &str,
                d: &'d [u8],
                _: Option<&str>,
            ) -> Result<(Encoded<'d>, Vec<String>), String> {
                Ok((Encoded::Unchanged(d), Vec::new()))
            }
            fn encode_with(
                &self,
                _: &str,
                _: &str,
                _: &[u8],
            ) -> Result<Option<FilterOutput>, String> {
                Err("none".into())
            }
            fn decode(&self, _: &str, d: &[u8], _: &[String]) -> Result<FilterOutput, DecodeError> {
                Ok(d.to_vec().into())
            }
            fn provides(&self, tag: &str) -> bool {
                tag == "zstd"
            }
            fn tags(&self) -> Vec<String> {
                panic!("the loaded filters were listed for a sound header")
            }
            fn unlock(&self, _: &UnlockRequest) -> Result<Unlocked, String> {
                Ok(Unlocked::default())
            }
        }
        for sound in [
            &b"\x01\x04zstd\x28\xb5\x2f\xfdpayload"[..],
            b"\x00plain text stored as it is, long enough to read as a tag",
            b"\x00",
        ] {
            // Only other counts, which the object's check then refuses.
            for (what, _) in header_repairs(&Unlisted, sound) {
                assert!(what.starts_with("its count of tags"), "{sound:?}: {what}");
            }
        }
        let lowered = header_repairs(&Unlisted, b"\x00\x04zstdpayload");
        assert_eq!(lowered.len(), 1, "{lowered:?}");
        assert_eq!(lowered[0].1, b"\x01\x04zstdpayload");
    }
}
