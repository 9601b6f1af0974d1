//! Background writes: objects written one after the other on the
//! storage runtime while the caller goes on, with a callback that reports
//! the outcome exactly once.

use super::{Storage, StorageError};
use crate::fault_injection::Op;
use std::sync::atomic::Ordering;

/// The callback of a background write, called exactly once: with the
/// outcome, or with [`StorageError::Interrupted`] if the write is abandoned
/// (its task aborted when the storage closes before it ends).
struct Completion<F: FnOnce(Result<(), StorageError>)> {
    done: Option<F>,
    url: String,
    key: String,
}

impl<F: FnOnce(Result<(), StorageError>)> Completion<F> {
    fn finish(mut self, outcome: Result<(), StorageError>) {
        if let Some(done) = self.done.take() {
            done(outcome);
        }
    }
}

impl<F: FnOnce(Result<(), StorageError>)> Drop for Completion<F> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(StorageError::Interrupted {
                url: std::mem::take(&mut self.url),
                key: std::mem::take(&mut self.key),
            }));
        }
    }
}

impl Storage {
    /// Write objects one after the other, in the background: returns at
    /// once, and calls `done` with the outcome once the last is written or
    /// one failed (the rest are then not written). The crash limit counts
    /// the writes now, in order, as [`write`](Self::write) would.
    pub fn write_in_background(
        &self,
        objects: Vec<(String, bytes::Bytes)>,
        done: impl FnOnce(Result<(), StorageError>) + Send + 'static,
    ) {
        for (key, _) in &objects {
            // Counted (the crash limit) and checked now; not waited for
            // by an interrupted run (packs and their index objects).
            if let Err(e) = self.begin_write(key) {
                done(Err(e));
                return;
            }
        }
        let op = match self.op() {
            Ok(op) => op,
            Err(e) => {
                let key = objects.first().map_or("", |(k, _)| k.as_str());
                done(Err(self.fail("write", key, e)));
                return;
            }
        };
        // Drawn now, in order, so that a seed decides them as it decides
        // the faults of the calling thread's other operations.
        let faults: Vec<_> = objects
            .iter()
            .map(|(key, _)| self.faults.decide(Op::Write, key).unwrap_or_default())
            .collect();
        let url = self.url.clone();
        let backend = self.backend.clone();
        let retries = backend.retries();
        let bytes_written = self.bytes_written.clone();
        let gave_up = self.gave_up.clone();
        let gate = self.write_gate.clone();
        let completion = Completion {
            done: Some(done),
            url: url.clone(),
            key: objects.first().map_or_else(String::new, |(k, _)| k.clone()),
        };
        let task = self.handle.spawn(async move {
            for ((key, data), faults) in objects.into_iter().zip(faults) {
                let len = data.len() as u64;
                let write = super::retry::run(&op, &retries, |op| {
                    let (key, data, backend) = (key.clone(), data.clone(), backend.clone());
                    let (gate, url) = (gate.clone(), url.clone());
                    async move {
                        let _turn = gate.enter().await;
                        let put = backend.put(&op, &key, data).await;
                        if let Err(e) = &put {
                            gate.failed(e, &url);
                        }
                        put
                    }
                });
                let written = faults
                    .run_async(async {
                        write
                            .await
                            .map_err(|e| super::given_up(&gave_up, &url, "write", &key, e))
                    })
                    .await;
                if let Err(e) = written {
                    completion.finish(Err(e));
                    return;
                }
                bytes_written.fetch_add(len, Ordering::Relaxed);
            }
            completion.finish(Ok(()));
        });
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        background.retain(|task| !task.is_finished());
        background.push(task.abort_handle());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Outcomes = Arc<Mutex<Vec<Result<(), String>>>>;

    fn completion(outcomes: &Outcomes) -> Completion<impl FnOnce(Result<(), StorageError>)> {
        let outcomes = outcomes.clone();
        Completion {
            done: Some(move |r: Result<(), StorageError>| {
                outcomes.lock().unwrap().push(r.map_err(|e| e.to_string()))
            }),
            url: "s3://b/r".into(),
            key: "packs/ab".into(),
        }
    }

    #[test]
    fn a_background_write_reports_once_even_when_abandoned() {
        let outcomes = Outcomes::default();
        completion(&outcomes).finish(Ok(()));
        drop(completion(&outcomes));
        assert_eq!(
            *outcomes.lock().unwrap(),
            [
                Ok(()),
                Err("s3://b/r: not writing packs/ab: the run was interrupted".to_string())
            ]
        );
    }
}
