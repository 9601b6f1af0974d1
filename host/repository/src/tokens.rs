//! The tokens of one repository: how the dedup key of some data is made.
//!
//! A token is a hash of the data: BLAKE3 in repositories of format
//! version 4, SHA-256 in older ones (the config's `tokens` member says
//! which; see [`TokenFunction`]). In a sealed repository it is keyed (the
//! keyed mode of BLAKE3, HMAC-SHA-256) with the repository's token key, so
//! that stored ids reveal nothing about content to anyone without it. This
//! module adds [`Repository::token`] to the repository.

use super::config::RepoConfig;
use super::ids::Token;
use super::Repository;

/// The hash a repository's tokens are made with, fixed when it is
/// created: changing it would make every stored chunk look new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFunction {
    /// SHA-256 (HMAC-SHA-256 when sealed): format versions 1 to 3.
    Sha256,
    /// BLAKE3 (its keyed mode when sealed): format version 4, 3 to 4 times
    /// as fast per core on the data a backup hashes.
    Blake3,
}

impl TokenFunction {
    /// The name a version 4 config records.
    pub const BLAKE3: &'static str = "blake3";

    /// The function `config` names (checked when it was parsed).
    pub fn of(config: &RepoConfig) -> Self {
        match config.tokens.as_deref() {
            Some(Self::BLAKE3) => TokenFunction::Blake3,
            _ => TokenFunction::Sha256,
        }
    }
}

/// How tokens are made in one repository.
pub(crate) struct Tokens {
    function: TokenFunction,
    /// The key of tokens in a sealed repository.
    key: Option<[u8; 32]>,
    /// Development: chunk tokens keep only their first byte.
    weak: bool,
}

impl Tokens {
    pub fn new(function: TokenFunction, key: Option<[u8; 32]>, weak: bool) -> Self {
        Tokens {
            function,
            key,
            weak,
        }
    }

    /// The token of a file chunk (weakened with the development setting
    /// `testing-weak-tokens`).
    pub fn chunk(&self, data: &[u8]) -> Token {
        let token = self.strong(data);
        if !self.weak {
            return token;
        }
        let mut weak = [0u8; 32];
        weak[0] = token.0[0];
        Token(weak)
    }

    /// The token of trees and client names, never weakened.
    pub fn strong(&self, data: &[u8]) -> Token {
        match (self.function, &self.key) {
            (TokenFunction::Blake3, Some(key)) => Token::blake3_keyed(key, data),
            (TokenFunction::Blake3, None) => Token::blake3(data),
            (TokenFunction::Sha256, Some(key)) => Token::keyed(key, data),
            (TokenFunction::Sha256, None) => Token::of(data),
        }
    }
}

impl Repository {
    /// The dedup token of some data: its hash with the repository's
    /// [`TokenFunction`], keyed in a sealed repository with the
    /// repository's token key, so that stored ids reveal nothing about
    /// content to anyone without it.
    ///
    /// This is the token of file chunks; with the development setting
    /// `testing-weak-tokens` it keeps only its first byte.
    pub fn token(&self, data: &[u8]) -> Token {
        self.tokens.chunk(data)
    }
}
