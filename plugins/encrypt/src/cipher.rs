//! The authenticated ciphers, and the form of an encrypted blob.
//!
//! A blob is
//!
//! ```text
//! u8 cipher id (1 = XChaCha20-Poly1305, 2 = AES-256-GCM, 3 = XAES-256-GCM)
//! nonce (24, 12 or 24 random bytes)
//! ciphertext with its 16-byte tag
//! ```
//!
//! The associated data is given by the caller: for objects it binds the
//! repository id and the object's kind and id, so that an object moved or
//! copied to another name fails authentication.
//!
//! Nonces are random. For XChaCha20's and XAES-256-GCM's 192-bit nonces
//! that is safe for any number of objects; for AES-GCM's 96-bit nonces it
//! is safe up to about 2^32 objects under one key.
//!
//! XAES-256-GCM (<https://c2sp.org/XAES-256-GCM>) is AES-256-GCM with a
//! key of its own for each blob, derived from the key and the first 12
//! bytes of the nonce by a NIST SP 800-108 counter-mode KDF over AES-256
//! CMAC (three AES blocks per blob); the other 12 bytes are the GCM nonce.
//! It runs at AES-GCM's speed and has XChaCha20's nonces: it is what a new
//! encrypted repository uses where the processor has AES instructions
//! ([`Cipher::for_this_processor`]), XChaCha20-Poly1305 elsewhere (where
//! software AES is slow).
//!
//! The AEADs are *ring*'s (assembly, chosen at run time for the
//! processor): ChaCha20-Poly1305 at 2.7 GB/s and AES-256-GCM at 8.8 GB/s
//! on one core of the benchmark machine, against 1.5 GB/s for either in
//! the RustCrypto crates this module used before (whose AES runs that
//! slowly unless the whole program is compiled for AES-NI). XChaCha20 is
//! built as its specification (draft-irtf-cfrg-xchacha) defines it: the
//! HChaCha20 of the key and the nonce's first 16 bytes is the key of an
//! IETF ChaCha20-Poly1305 whose nonce is four zero bytes and the last 8.
//! The blobs are the same bytes either way (a test checks both ciphers
//! against the RustCrypto implementations, in both directions).
//! XAES-256-GCM's key derivation uses the `aes` crate's block cipher (AES
//! instructions chosen at run time); a test checks it against the
//! specification's test vectors.

use aes::cipher::{BlockEncrypt, KeyInit};
use chacha20::cipher::consts::U10;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use zeroize::Zeroize;

/// Bytes of the authentication tag.
const TAG_LEN: usize = 16;

/// An authenticated cipher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    XChaCha20Poly1305,
    Aes256Gcm,
    XAes256Gcm,
}

impl Cipher {
    /// Every cipher, for help and errors.
    pub const NAMES: &'static str = "xaes-256-gcm, xchacha20-poly1305, aes-256-gcm";

    /// Every cipher.
    #[cfg(test)]
    pub const ALL: [Cipher; 3] = [
        Cipher::XChaCha20Poly1305,
        Cipher::Aes256Gcm,
        Cipher::XAes256Gcm,
    ];

    /// The cipher named `name` in settings and key slots.
    pub fn from_name(name: &str) -> Option<Cipher> {
        match name {
            "xchacha20-poly1305" => Some(Cipher::XChaCha20Poly1305),
            "aes-256-gcm" => Some(Cipher::Aes256Gcm),
            "xaes-256-gcm" => Some(Cipher::XAes256Gcm),
            _ => None,
        }
    }

    /// The cipher's name.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::XAes256Gcm => "xaes-256-gcm",
        }
    }

    /// The faster of the two ciphers with 192-bit nonces on this
    /// processor: XAES-256-GCM where it has instructions for AES and for
    /// GCM's carry-less multiplication (3 times XChaCha20-Poly1305's speed
    /// there), XChaCha20-Poly1305 elsewhere (several times AES's speed in
    /// software).
    pub fn for_this_processor() -> Cipher {
        #[cfg(target_arch = "x86_64")]
        let aes = std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq");
        #[cfg(target_arch = "aarch64")]
        let aes = std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull");
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let aes = false;
        if aes {
            Cipher::XAes256Gcm
        } else {
            Cipher::XChaCha20Poly1305
        }
    }

    fn id(self) -> u8 {
        match self {
            Cipher::XChaCha20Poly1305 => 1,
            Cipher::Aes256Gcm => 2,
            Cipher::XAes256Gcm => 3,
        }
    }

    fn nonce_len(self) -> usize {
        match self {
            Cipher::XChaCha20Poly1305 | Cipher::XAes256Gcm => 24,
            Cipher::Aes256Gcm => 12,
        }
    }

    /// The AEAD key and 96-bit nonce that seal and open a blob with
    /// `nonce` (of [`nonce_len`](Self::nonce_len) bytes) under `key`.
    fn aead(self, key: &[u8; 32], nonce: &[u8]) -> (LessSafeKey, Nonce) {
        let (key, nonce) = match self {
            Cipher::XChaCha20Poly1305 => {
                let (first, last) = nonce.split_at(16);
                let mut subkey = chacha20::hchacha::<U10>(key.into(), first.into());
                let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey);
                subkey.zeroize();
                let mut short = [0u8; 12];
                short[4..].copy_from_slice(last);
                (unbound, short)
            }
            Cipher::Aes256Gcm => {
                let mut short = [0u8; 12];
                short.copy_from_slice(nonce);
                (UnboundKey::new(&AES_256_GCM, key), short)
            }
            Cipher::XAes256Gcm => {
                let (first, last) = nonce.split_at(12);
                let mut subkey = xaes_key(key, first);
                let unbound = UnboundKey::new(&AES_256_GCM, &subkey);
                subkey.zeroize();
                let mut short = [0u8; 12];
                short.copy_from_slice(last);
                (unbound, short)
            }
        };
        // A 32-byte key is what every algorithm here takes: this cannot fail.
        let key = key.unwrap_or_else(|_| unreachable!("a 32-byte key is refused"));
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(nonce))
    }

    /// Encrypt `plain` under `key` with associated data `ad`.
    pub fn seal(self, key: &[u8; 32], ad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..self.nonce_len()];
        getrandom::fill(nonce).map_err(|e| format!("no random numbers: {e}"))?;
        self.seal_with_nonce(key, ad, plain, nonce)
    }

    /// [`seal`](Self::seal) with the given nonce (of
    /// [`nonce_len`](Self::nonce_len) bytes), which must never have been
    /// used with `key` before.
    fn seal_with_nonce(
        self,
        key: &[u8; 32],
        ad: &[u8],
        plain: &[u8],
        nonce: &[u8],
    ) -> Result<Vec<u8>, String> {
        let header = 1 + nonce.len();
        // The plain text is copied once, into the blob, and encrypted there.
        let mut out = Vec::with_capacity(header + plain.len() + TAG_LEN);
        out.push(self.id());
        out.extend_from_slice(nonce);
        out.extend_from_slice(plain);
        let (aead, nonce) = self.aead(key, nonce);
        let tag = aead
            .seal_in_place_separate_tag(nonce, Aad::from(ad), &mut out[header..])
            .map_err(|_| "encryption failed".to_string())?;
        out.extend_from_slice(tag.as_ref());
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
        let (aead, nonce) = self.aead(key, nonce);
        let mut out = sealed.to_vec();
        let plain = aead
            .open_in_place(nonce, Aad::from(ad), &mut out)
            .map_err(|_| OpenError::Forged)?
            .len();
        out.truncate(plain);
        Ok(out)
    }
}

/// XAES-256-GCM's key for a blob: the SP 800-108 counter-mode KDF with
/// AES-256 CMAC under `key`, of label `X` and the 12 bytes `context` (the
/// nonce's first half), two blocks of output. As CMAC of one whole block
/// is the AES of that block XORed with the subkey K1 (AES of zeros,
/// doubled in GF(2^128)), each output block costs one AES.
fn xaes_key(key: &[u8; 32], context: &[u8]) -> [u8; 32] {
    let aes = aes::Aes256::new(key.into());
    let encrypt = |block: u128| -> [u8; 16] {
        let mut block = aes::Block::from(block.to_be_bytes());
        aes.encrypt_block(&mut block);
        block.into()
    };
    let l = u128::from_be_bytes(encrypt(0));
    // Doubling: shift left one bit, and reduce by x^128 + x^7 + x^2 + x + 1
    // if a bit fell off.
    let k1 = (l << 1) ^ if l >> 127 == 1 { 0x87 } else { 0 };
    let mut out = [0u8; 32];
    for (counter, half) in [1u8, 2].into_iter().zip(out.chunks_exact_mut(16)) {
        let mut message = [0u8; 16];
        message[..4].copy_from_slice(&[0, counter, b'X', 0]);
        message[4..].copy_from_slice(context);
        half.copy_from_slice(&encrypt(u128::from_be_bytes(message) ^ k1));
    }
    out
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
    fn every_cipher_round_trips_and_detects_tampering() {
        let key = [7u8; 32];
        for cipher in Cipher::ALL {
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
        for c in Cipher::ALL {
            assert_eq!(Cipher::from_name(c.name()), Some(c));
        }
        let ids: std::collections::BTreeSet<u8> = Cipher::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), Cipher::ALL.len());
        assert_eq!(Cipher::from_name("rot13"), None);
    }

    /// XAES-256-GCM as its specification's test vectors
    /// (<https://c2sp.org/XAES-256-GCM>) have it: the derived key, and the
    /// cipher text and tag without and with associated data.
    #[test]
    fn xaes_256_gcm_is_that_of_its_specification() {
        let nonce = b"ABCDEFGHIJKLMNOPQRSTUVWX";
        assert_eq!(
            hex::encode(xaes_key(&[1; 32], &nonce[..12])),
            "c8612c9ed53fe43e8e005b828a1631a0bbcb6ab2f46514ec4f439fcfd0fa969b"
        );
        for (key, ad, sealed) in [
            (
                [1u8; 32],
                &b""[..],
                "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
            ),
            (
                [3u8; 32],
                &b"c2sp.org/XAES-256-GCM"[..],
                "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
            ),
        ] {
            let cipher = Cipher::XAes256Gcm;
            let blob = cipher
                .seal_with_nonce(&key, ad, b"XAES-256-GCM", nonce)
                .unwrap();
            assert_eq!(blob[0], 3);
            assert_eq!(&blob[1..25], nonce);
            assert_eq!(hex::encode(&blob[25..]), sealed);
            assert_eq!(cipher.open(&key, ad, &blob).unwrap(), b"XAES-256-GCM");
        }
    }

    /// The blobs are those of the RustCrypto implementations that made
    /// every encrypted repository before (so those still open, and what
    /// is written now opens with them): sealed here, opened there, and
    /// the other way, for sizes around the algorithms' block sizes.
    #[test]
    fn blobs_are_those_of_the_rustcrypto_ciphers() {
        use aes_gcm::Aes256Gcm;
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::XChaCha20Poly1305;

        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let ad = b"obnam object\0repo\0chunk/1";
        let reference_open = |cipher: Cipher, blob: &[u8]| {
            let nonce_len = cipher.nonce_len();
            let (nonce, sealed) = blob[1..].split_at(nonce_len);
            let payload = Payload {
                msg: sealed,
                aad: ad,
            };
            match cipher {
                Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new((&key).into())
                    .decrypt(chacha20poly1305::XNonce::from_slice(nonce), payload),
                Cipher::Aes256Gcm => Aes256Gcm::new((&key).into())
                    .decrypt(aes_gcm::Nonce::from_slice(nonce), payload),
                Cipher::XAes256Gcm => unreachable!("checked against its test vectors"),
            }
            .unwrap()
        };
        let reference_seal = |cipher: Cipher, nonce: &[u8], plain: &[u8]| {
            let payload = Payload {
                msg: plain,
                aad: ad,
            };
            let sealed = match cipher {
                Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new((&key).into())
                    .encrypt(chacha20poly1305::XNonce::from_slice(nonce), payload),
                Cipher::Aes256Gcm => Aes256Gcm::new((&key).into())
                    .encrypt(aes_gcm::Nonce::from_slice(nonce), payload),
                Cipher::XAes256Gcm => unreachable!("checked against its test vectors"),
            }
            .unwrap();
            [&[cipher.id()], nonce, &sealed].concat()
        };
        for cipher in [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm] {
            for len in [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1000, 4096, 70_001] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
                let blob = cipher.seal(&key, ad, &plain).unwrap();
                assert_eq!(reference_open(cipher, &blob), plain, "{cipher:?} {len}");
                let nonce: Vec<u8> = (0..cipher.nonce_len())
                    .map(|i| (i * 5 + len) as u8)
                    .collect();
                let theirs = reference_seal(cipher, &nonce, &plain);
                assert_eq!(
                    cipher.open(&key, ad, &theirs).unwrap(),
                    plain,
                    "{cipher:?} {len}"
                );
            }
        }
    }
}
