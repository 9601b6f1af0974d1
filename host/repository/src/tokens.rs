//! The tokens of one repository: how the dedup key of some data is made.
//!
//! A token is the SHA-256 of the data, or in a sealed repository its
//! HMAC-SHA-256 under the repository's token key, so that stored ids
//! reveal nothing about content to anyone without it. This module adds
//! [`Repository::token`] to the repository.

use super::ids::Token;
use super::Repository;

/// How tokens are made in one repository.
pub(crate) struct Tokens {
    /// The key of tokens in a sealed repository.
    key: Option<[u8; 32]>,
    /// Development: chunk tokens keep only their first byte.
    weak: bool,
}

impl Tokens {
    pub fn new(key: Option<[u8; 32]>, weak: bool) -> Self {
        Tokens { key, weak }
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
        match &self.key {
            Some(key) => Token::keyed(key, data),
            None => Token::of(data),
        }
    }
}

impl Repository {
    /// The dedup token of some data: its SHA-256, or in a sealed
    /// repository its HMAC-SHA-256 under the repository's token key, so
    /// that stored ids reveal nothing about content to anyone without it.
    ///
    /// This is the token of file chunks; with the development setting
    /// `testing-weak-tokens` it keeps only its first byte.
    pub fn token(&self, data: &[u8]) -> Token {
        self.tokens.chunk(data)
    }
}
