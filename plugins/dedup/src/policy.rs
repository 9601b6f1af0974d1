//! The dedup policy: reuse a stored chunk, or store a new copy.

use plugin_api::payloads::StoreChunkRequest;
use plugin_api::{Context, Repository, Result};

/// The `deduplicate` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reuse any stored chunk with the same token.
    Fatalist,
    /// Reuse a stored chunk only if its bytes are the same.
    Verify,
    /// Store every chunk again.
    Never,
}

/// The policy of this run.
pub struct Policy {
    mode: Mode,
    repo: Repository,
}

impl Policy {
    /// The policy the settings ask for, on the run's repository.
    pub fn from_settings(ctx: &Context<'_>) -> Result<Self> {
        let mode = match ctx.string("deduplicate")?.as_deref() {
            Some("never") => Mode::Never,
            Some("verify") => Mode::Verify,
            _ => Mode::Fatalist,
        };
        Ok(Policy {
            mode,
            repo: ctx.repository(false)?,
        })
    }

    /// Store a chunk or reuse a stored copy, as the mode says.
    pub fn store(&self, req: &mut StoreChunkRequest) -> Result<()> {
        // (With the development setting `testing-weak-tokens`, the host
        // makes tokens collide: see `Repository::token`.)
        let token = req.token;
        let reuse = match self.mode {
            Mode::Never => None,
            Mode::Fatalist => self.repo.find_chunks(token).first().copied(),
            Mode::Verify => {
                let mut same = None;
                for id in self.repo.find_chunks(token) {
                    if self.repo.get_chunk(id)? == req.data.as_slice() {
                        same = Some(id);
                        break;
                    }
                }
                same
            }
        };
        match reuse {
            Some(id) => {
                req.chunk_id = id;
                req.stored = false;
            }
            None => {
                req.chunk_id = self.repo.put_chunk(token, &req.data)?;
                req.stored = true;
            }
        }
        Ok(())
    }
}
