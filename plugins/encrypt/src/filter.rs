//! The `encrypt` filter on the `repository-data` hook.
//!
//! The associated data of every object is its repository id and its
//! context (kind and id, as `chunk/ID`, `index/ID`, `generations/C/G`...),
//! so that an object swapped with another, or copied in from another
//! repository, fails authentication instead of being taken for good.

use plugin_api::{Context, DataFilter, Error, Result};

use crate::{RepoState, Shared};

/// The filter; its state is set when the repository is opened.
pub struct Encryption {
    pub state: Shared,
}

fn associated_data(repository_id: &str, context: &str) -> Vec<u8> {
    format!("obnam object\0{repository_id}\0{context}").into_bytes()
}

impl DataFilter for Encryption {
    fn encode(&self, _: &Context<'_>, context: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.state.get() {
            Some(RepoState::Sealed(s)) => s
                .cipher
                .seal(
                    &s.master.object_key(),
                    &associated_data(&s.repository_id, context),
                    data,
                )
                .map(Some)
                .map_err(|e| Error::msg(format!("cannot encrypt object {context}: {e}"))),
            // Not encrypted: leave the data alone.
            Some(RepoState::Plain) | None => Ok(None),
        }
    }

    fn decode(&self, _: &Context<'_>, context: &str, data: &[u8]) -> Result<Vec<u8>> {
        match self.state.get() {
            Some(RepoState::Sealed(s)) => s
                .cipher
                .open(
                    &s.master.object_key(),
                    &associated_data(&s.repository_id, context),
                    data,
                )
                .map_err(|e| Error::msg(format!("object {context} cannot be decrypted: {e}"))),
            Some(RepoState::Plain) | None => Err(Error::msg(format!(
                "object {context} is encrypted, but its repository is not; it does not belong there"
            ))),
        }
    }

    /// Every error of `decode` is about the bytes: they fail
    /// authentication, or are encrypted where nothing is.
    fn decode_errors_are_damage(&self) -> bool {
        true
    }
}
