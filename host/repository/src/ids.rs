//! Identifiers of repository objects, each a type of its own.
//!
//! * [`Token`]: the dedup key of a chunk, a hash of its plain data
//!   (BLAKE3 in repositories of format version 4, SHA-256 before; keyed
//!   once the repository is encrypted).
//! * [`ChunkId`]: names one stored copy of a chunk: its token plus a
//!   variant, 0 for the first copy. Two copies of one token (a deliberate
//!   second copy, or two different chunks whose tokens collide) differ in
//!   their variant, so a dedup policy can keep them apart.
//! * [`ObjectId`]: a random 128-bit name for packs, index objects, locks.
//! * [`GenerationId`]: a random 64-bit name of a generation.

use std::fmt;

use sha2::{Digest, Sha256};

/// Why a textual id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{text}' is not a valid {what}")]
pub struct BadId {
    pub text: String,
    pub what: &'static str,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom fails only if the OS has no entropy source at all.
    getrandom::fill(&mut b).expect("operating system random number generator");
    b
}

/// The dedup key of a chunk.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Token(pub [u8; 32]);

impl Token {
    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Token(Sha256::digest(data).into())
    }

    /// HMAC-SHA-256 of `data` under `key`: the token of a sealed repository.
    pub fn keyed(key: &[u8; 32], data: &[u8]) -> Self {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
            .expect("HMAC takes a key of any length");
        mac.update(data);
        Token(mac.finalize().into_bytes().into())
    }

    /// BLAKE3 of `data`: the token of a plain repository of version 4.
    pub fn blake3(data: &[u8]) -> Self {
        Token(*blake3::hash(data).as_bytes())
    }

    /// BLAKE3 of `data` in its keyed mode (a MAC) under `key`: the token
    /// of a sealed repository of version 4.
    pub fn blake3_keyed(key: &[u8; 32], data: &[u8]) -> Self {
        Token(*blake3::keyed_hash(key, data).as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", hex::encode(&self.0[..8]))
    }
}

/// One stored copy of a chunk (or of a tree object).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct ChunkId {
    pub token: Token,
    pub variant: u64,
}

impl ChunkId {
    /// The first copy of a token.
    pub fn first(token: Token) -> Self {
        ChunkId { token, variant: 0 }
    }

    /// A new copy of a token with a random, non-zero variant.
    pub fn another(token: Token) -> Self {
        let variant = u64::from_le_bytes(random_bytes::<8>()) | 1;
        ChunkId { token, variant }
    }

    /// The form used in object contexts and messages: 64 hex digits, then
    /// `.VARIANT` in hex if the variant is not 0.
    pub fn to_hex(&self) -> String {
        if self.variant == 0 {
            hex::encode(self.token.0)
        } else {
            format!("{}.{:x}", hex::encode(self.token.0), self.variant)
        }
    }

    /// Parse [`to_hex`](Self::to_hex)'s form.
    pub fn from_hex(text: &str) -> Result<Self, BadId> {
        let bad = || BadId {
            text: text.to_string(),
            what: "chunk id",
        };
        let (token, variant) = match text.split_once('.') {
            Some((t, v)) => (t, u64::from_str_radix(v, 16).map_err(|_| bad())?),
            None => (text, 0),
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(token, &mut bytes).map_err(|_| bad())?;
        Ok(ChunkId {
            token: Token(bytes),
            variant,
        })
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A random name for a pack, an index object or a lock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ObjectId(pub [u8; 16]);

impl ObjectId {
    /// A new random id.
    pub fn random() -> Self {
        ObjectId(random_bytes())
    }

    /// 32 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `text` is a name obnam gives an object of this id: 32
    /// lower-case hex digits, as [`to_hex`](Self::to_hex) writes them.
    pub fn is_name(text: &str) -> bool {
        text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// Parse 32 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, BadId> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| BadId {
            text: text.to_string(),
            what: "object id",
        })?;
        Ok(ObjectId(bytes))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The name of a generation: 16 hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GenerationId(String);

impl GenerationId {
    /// A new random id.
    pub fn random() -> Self {
        GenerationId(hex::encode(random_bytes::<8>()))
    }

    /// Check and wrap a textual id.
    pub fn parse(text: &str) -> Result<Self, BadId> {
        if text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            Ok(GenerationId(text.to_string()))
        } else {
            Err(BadId {
                text: text.to_string(),
                what: "generation id",
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_round_trip_through_hex() {
        let first = ChunkId::first(Token::of(b"hello"));
        assert_eq!(ChunkId::from_hex(&first.to_hex()), Ok(first));
        assert_eq!(first.to_hex().len(), 64);
        let other = ChunkId::another(first.token);
        assert_ne!(other, first);
        assert_eq!(ChunkId::from_hex(&other.to_hex()), Ok(other));
        assert!(ChunkId::from_hex("xyz").is_err());
    }

    #[test]
    fn generation_ids_are_checked() {
        let id = GenerationId::random();
        assert_eq!(GenerationId::parse(id.as_str()), Ok(id));
        assert!(GenerationId::parse("../../etc").is_err());
        assert!(GenerationId::parse("ABCDEF0123456789").is_err());
    }
}
