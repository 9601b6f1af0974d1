//! Whole packs read from a remote store, kept for a while.
//!
//! On a local folder a blob is read with a ranged read, which costs little.
//! Across a network each request costs a round trip, and a restore reads
//! thousands of small blobs that lie next to each other in a few packs
//! (they were written in the order they are read back). So on a remote
//! store the engine reads the whole pack once, with one request, and
//! serves the blobs of the next reads from memory.
//!
//! A pack is kept as the pieces it arrived in (an OpenDAL `Buffer`), not
//! copied into one block of 8 MiB: blobs are copied out of the pieces.
//! Large blocks allocated and freed over and over made the C allocator
//! keep much more memory than the cache holds.
//!
//! Several threads (restore workers) asking for the same pack at once
//! share one fetch. The cache holds at most [`CAPACITY`] packs and drops
//! the one used least recently.
//!
//! It is not `quick_cache`, which splits its capacity among shards (four
//! per core) and puts new entries in a cold queue of 3% of it: for a few
//! packs of 8 MiB each, a new pack would fit in neither unless tuned away,
//! and its one-fetch-per-key guard would still not bound the fetches
//! running at once ([`FETCHES`]), which this cache must.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use opendal::Buffer;

use super::ids::ObjectId;
use super::storage::StorageError;

/// Packs kept at most (with 8 MiB packs, 64 MiB).
pub const CAPACITY: usize = 8;

/// Packs fetched at once at most: each fetch holds a pack's worth of
/// memory twice for a moment. Measured restoring 1.1 GB from Garage on
/// the same machine: 2 at once took 3.57 s (median of 3), 4 took 3.26 s,
/// 6 no less.
pub const FETCHES: usize = 4;

type Slot = Arc<OnceLock<Result<Buffer, StorageError>>>;

/// Recently read packs, by id.
#[derive(Default)]
pub struct PackCache {
    inner: Mutex<Inner>,
    /// Fetches running now, bounded by [`FETCHES`].
    fetching: Mutex<usize>,
    fetched: std::sync::Condvar,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<ObjectId, Slot>,
    /// Least recently used first.
    order: VecDeque<ObjectId>,
}

impl Inner {
    fn touch(&mut self, id: ObjectId) {
        if let Some(at) = self.order.iter().position(|p| *p == id) {
            self.order.remove(at);
        }
        self.order.push_back(id);
        while self.order.len() > CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.slots.remove(&old);
            }
        }
    }
}

impl PackCache {
    /// Run `fetch` once fewer than [`FETCHES`] others are running.
    fn bounded<T>(&self, fetch: impl FnOnce() -> T) -> T {
        let mut running = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= FETCHES {
            running = self
                .fetched
                .wait(running)
                .unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        drop(running);
        let out = fetch();
        *self.fetching.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.fetched.notify_one();
        out
    }

    /// The bytes of pack `id`, fetched with `fetch` unless they are here
    /// or another thread is fetching them already. A failed fetch is not
    /// kept: the next read tries again.
    pub fn get(
        &self,
        id: ObjectId,
        fetch: impl FnOnce() -> Result<Buffer, StorageError>,
    ) -> Result<Buffer, StorageError> {
        let slot = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let slot = inner.slots.entry(id).or_default().clone();
            inner.touch(id);
            slot
        };
        let result = slot.get_or_init(|| self.bounded(fetch)).clone();
        if result.is_err() {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.slots.get(&id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                inner.slots.remove(&id);
                inner.order.retain(|p| *p != id);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 16])
    }

    #[test]
    fn packs_are_fetched_once_and_the_oldest_dropped() {
        let cache = PackCache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = |n: u8| {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok(Buffer::from(vec![n; 4]))
        };
        for round in 0..3 {
            for n in 0..CAPACITY as u8 {
                assert_eq!(
                    cache.get(id(n), || fetch(n)).unwrap().to_vec()[0],
                    n,
                    "round {round}"
                );
            }
        }
        assert_eq!(fetches.load(Ordering::SeqCst), CAPACITY);
        // One more pack pushes out the least recently used (pack 0).
        cache.get(id(200), || fetch(200)).unwrap();
        cache.get(id(0), || fetch(0)).unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), CAPACITY + 2);
    }

    #[test]
    fn a_failed_fetch_is_tried_again() {
        let cache = PackCache::default();
        assert!(cache
            .get(id(1), || Err(StorageError::Runtime("network down".into())))
            .is_err());
        assert_eq!(
            cache
                .get(id(1), || Ok(Buffer::from(b"ok".to_vec())))
                .unwrap()
                .to_vec(),
            b"ok".to_vec()
        );
    }

    #[test]
    fn threads_asking_at_once_share_one_fetch() {
        let cache = Arc::new(PackCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                std::thread::spawn(move || {
                    cache
                        .get(id(7), || {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(Buffer::from(b"pack".to_vec()))
                        })
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().to_vec(), b"pack".to_vec());
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }
}
