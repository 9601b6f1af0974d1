//! The dedup policy: reuse a stored chunk, or store a new copy.

use plugin_api::payloads::StoreChunkRequest;
use plugin_api::{Context, Repository, Result, Token};

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
    weak_tokens: bool,
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
            weak_tokens: ctx.boolean("testing-weak-tokens")?,
            repo: ctx.repository(false)?,
        })
    }

    /// Store a chunk or reuse a stored copy, as the mode says.
    pub fn store(&self, req: &mut StoreChunkRequest) -> Result<()> {
        let token = if self.weak_tokens {
            weaken(req.token)
        } else {
            req.token
        };
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

/// Keep only the first byte of a token: a development aid that makes
/// different chunks collide.
fn weaken(token: Token) -> Token {
    let mut bytes = [0u8; 32];
    bytes[0] = token.0[0];
    Token(bytes)
}
