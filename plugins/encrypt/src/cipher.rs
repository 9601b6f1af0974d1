//! The authenticated ciphers, and the form of an encrypted blob.
//!
//! Both ciphers come from the RustCrypto crates. A blob is
//!
//! ```text
//! u8 cipher id (1 = XChaCha20-Poly1305, 2 = AES-256-GCM)
//! nonce (24 or 12 random bytes)
//! ciphertext with its 16-byte tag
//! ```
//!
//! The associated data is given by the caller: for objects it binds the
//! repository id and the object's kind and id, so that an object moved or
//! copied to another name fails authentication.
//!
//! Nonces are random. For XChaCha20's 192-bit nonces that is safe for any
//! number of objects; for AES-GCM's 96-bit nonces it is safe up to about
//! 2^32 objects under one key, which is why XChaCha20-Poly1305 is the default.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;

/// Bytes of the authentication tag.
const TAG_LEN: usize = 16;

/// An authenticated cipher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    XChaCha20Poly1305,
    Aes256Gcm,
}

impl Cipher {
    /// Every cipher, for help and errors.
    pub const NAMES: &'static str = "xchacha20-poly1305, aes-256-gcm";

    /// The cipher named `name` in settings and key slots.
    pub fn from_name(name: &str) -> Option<Cipher> {
        match name {
            "xchacha20-poly1305" => Some(Cipher::XChaCha20Poly1305),
            "aes-256-gcm" => Some(Cipher::Aes256Gcm),
            _ => None,
        }
    }

    /// The cipher's name.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }

    fn id(self) -> u8 {
        match self {
            Cipher::XChaCha20Poly1305 => 1,
            Cipher::Aes256Gcm => 2,
        }
    }

    fn nonce_len(self) -> usize {
        match self {
            Cipher::XChaCha20Poly1305 => 24,
            Cipher::Aes256Gcm => 12,
        }
    }

    /// Encrypt `plain` under `key` with associated data `ad`.
    pub fn seal(self, key: &[u8; 32], ad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..self.nonce_len()];
        getrandom::fill(nonce).map_err(|e| format!("no random numbers: {e}"))?;
        let payload = Payload {
            msg: plain,
            aad: ad,
        };
        let sealed = match self {
            Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new(key.into())
                .encrypt(chacha20poly1305::XNonce::from_slice(nonce), payload),
            Cipher::Aes256Gcm => {
                Aes256Gcm::new(key.into()).encrypt(aes_gcm::Nonce::from_slice(nonce), payload)
            }
        }
        .map_err(|_| "encryption failed".to_string())?;
        let mut out = Vec::with_capacity(1 + nonce.len() + sealed.len());
        out.push(self.id());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypt and authenticate a blob made by [`seal`](Self::seal) with
    /// the same cipher, key and associated data.
    pub fn open(self, key: &[u8; 32], ad: &[u8], blob: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (&id, rest) = blob.split_first().ok_or(OpenError::Truncated)?;
        if id != self.id() {
            return Err(OpenError::WrongCipher(id));
        }
        if rest.len() < self.nonce_len() + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        let (nonce, sealed) = rest.split_at(self.nonce_len());
        let payload = Payload {
            msg: sealed,
            aad: ad,
        };
        match self {
            Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new(key.into())
                .decrypt(chacha20poly1305::XNonce::from_slice(nonce), payload),
            Cipher::Aes256Gcm => {
                Aes256Gcm::new(key.into()).decrypt(aes_gcm::Nonce::from_slice(nonce), payload)
            }
        }
        .map_err(|_| OpenError::Forged)
    }
}

/// Why a blob did not decrypt.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Too short to hold a nonce and a tag.
    Truncated,
    /// Made with another cipher than the repository's.
    WrongCipher(u8),
    /// Authentication failed: wrong key, changed bytes, or another object.
    Forged,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Truncated => write!(f, "it is truncated"),
            OpenError::WrongCipher(id) => write!(
                f,
                "it names cipher {id}, not the repository's (tampered or damaged)"
            ),
            OpenError::Forged => write!(
                f,
                "it fails authentication (tampered, damaged, or moved from another name)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ciphers_round_trip_and_detect_tampering() {
        let key = [7u8; 32];
        for cipher in [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm] {
            let blob = cipher.seal(&key, b"chunk/1", b"secret").unwrap();
            assert_eq!(blob.len(), 1 + cipher.nonce_len() + 6 + TAG_LEN);
            assert!(!blob.windows(6).any(|w| w == b"secret"));
            assert_eq!(cipher.open(&key, b"chunk/1", &blob).unwrap(), b"secret");
            // Another object's associated data, another key, a flipped bit,
            // a truncation: each is refused.
            assert_eq!(cipher.open(&key, b"chunk/2", &blob), Err(OpenError::Forged));
            assert_eq!(
                cipher.open(&[8; 32], b"chunk/1", &blob),
                Err(OpenError::Forged)
            );
            for i in 0..blob.len() {
                let mut bad = blob.clone();
                bad[i] ^= 1;
                assert!(cipher.open(&key, b"chunk/1", &bad).is_err(), "byte {i}");
            }
            assert_eq!(
                cipher.open(&key, b"chunk/1", &blob[..10]),
                Err(OpenError::Truncated)
            );
            assert!(cipher
                .open(&key, b"chunk/1", &blob[..blob.len() - 1])
                .is_err());
        }
        let blob = Cipher::Aes256Gcm.seal(&key, b"", b"x").unwrap();
        assert_eq!(
            Cipher::XChaCha20Poly1305.open(&key, b"", &blob),
            Err(OpenError::WrongCipher(2))
        );
    }

    #[test]
    fn names_round_trip() {
        for c in [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm] {
            assert_eq!(Cipher::from_name(c.name()), Some(c));
        }
        assert_eq!(Cipher::from_name("rot13"), None);
    }
}
