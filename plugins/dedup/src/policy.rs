//! The dedup policy: reuse a stored chunk, or store a new copy.
//!
//! A backup stores chunks from several threads at once. Two of them may
//! hold the same new chunk at the same moment (the names of a file with
//! several read at once, two copies of one file, the same block in two
//! images): each looked, found none, and stored its own copy, under an
//! id of its own, for good (2 to 9 % of a file stored twice, which no
//! prune gives back). So a thread that is about to store a chunk claims
//! its token first ([`InFlight`]); another that comes with the same token
//! meanwhile waits for it, and then looks again.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

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
    repo: Repository,
    /// The tokens a thread of this run is storing a chunk of.
    storing: Mutex<HashMap<Token, Arc<InFlight>>>,
}

/// One chunk being stored, which other threads with the same token wait
/// for.
#[derive(Default)]
struct InFlight {
    done: Mutex<bool>,
    finished: Condvar,
}

impl InFlight {
    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.finished.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.finished.notify_all();
    }
}

/// A claim on a token, given up when the thread is done with it, however
/// it ends (stored, found stored meanwhile, failed): the threads waiting
/// for it look again.
struct Release<'a> {
    policy: &'a Policy,
    token: Token,
    mine: Arc<InFlight>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.policy
            .storing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.token);
        self.mine.finish();
    }
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
            storing: Mutex::new(HashMap::new()),
        })
    }

    /// Store a chunk or reuse a stored copy, as the mode says.
    pub fn store(&self, req: &mut StoreChunkRequest) -> Result<()> {
        let token = req.token;
        loop {
            if let Some(id) = self.reusable(req)? {
                req.chunk_id = id;
                req.stored = false;
                return Ok(());
            }
            // Every chunk is stored again: nothing to wait for.
            if self.mode == Mode::Never {
                req.chunk_id = self.repo.put_chunk(token, &req.data)?;
                req.stored = true;
                return Ok(());
            }
            let claim = {
                let mut storing = self.storing.lock().unwrap_or_else(|e| e.into_inner());
                match storing.get(&token) {
                    Some(other) => Err(other.clone()),
                    None => {
                        let mine = Arc::new(InFlight::default());
                        storing.insert(token, mine.clone());
                        Ok(mine)
                    }
                }
            };
            match claim {
                // Another thread is storing a chunk of this token: once
                // it is done, its copy is found (or, if it failed, this
                // one claims the token).
                Err(other) => other.wait(),
                Ok(mine) => {
                    let _release = Release {
                        policy: self,
                        token,
                        mine,
                    };
                    // Look again now that the token is claimed: another
                    // thread may have stored and released it between the
                    // look above and the claim (a second copy was stored
                    // then, now and again).
                    if let Some(id) = self.reusable(req)? {
                        req.chunk_id = id;
                        req.stored = false;
                        return Ok(());
                    }
                    req.chunk_id = self.repo.put_chunk(token, &req.data)?;
                    req.stored = true;
                    return Ok(());
                }
            }
        }
    }

    /// A stored copy of the request's chunk that the mode lets it reuse.
    fn reusable(&self, req: &StoreChunkRequest) -> Result<Option<plugin_api::ChunkId>> {
        // (With the development setting `testing-weak-tokens`, the host
        // makes tokens collide: see `Repository::token`.)
        let token = req.token;
        Ok(match self.mode {
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
        })
    }
}
