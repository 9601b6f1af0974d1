//! A bounded cache of chunk data, least recently used out first.
//!
//! The kernel reads a file in pieces of up to 128 KiB, and a chunk is
//! usually larger (256 KiB on average, up to several MiB): without a
//! cache every piece would fetch and decode its whole chunk again. The
//! cache holds at most its capacity in bytes of chunk data (or a single
//! chunk, if one chunk is larger than that), so a mount's memory does
//! not grow with what is read through it.
//!
//! Several FUSE threads may want the same chunk at once (the kernel's
//! read-ahead sends neighbouring pieces together): one of them fetches
//! it and the others wait for that fetch, so a chunk is never read twice
//! at the same time. A failed fetch is not remembered: the next read
//! tries again.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What a fetch gives: the data, or why not.
pub type Fetched = Result<Arc<Vec<u8>>, String>;

/// A chunk's data in the cache, and when it was last used.
struct Slot {
    data: Arc<Vec<u8>>,
    used: u64,
}

/// A fetch under way, which other readers of the same chunk wait for.
#[derive(Default)]
struct Pending {
    outcome: Mutex<Option<Fetched>>,
    done: Condvar,
}

impl Pending {
    fn finish(&self, outcome: Fetched) {
        let mut slot = lock(&self.outcome);
        if slot.is_none() {
            *slot = Some(outcome);
        }
        self.done.notify_all();
    }

    fn wait(&self) -> Fetched {
        let mut slot = lock(&self.outcome);
        loop {
            if let Some(outcome) = slot.as_ref() {
                return outcome.clone();
            }
            slot = self.done.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Ends a fetch's waiters even if the fetch never returns normally.
struct Finisher<'a>(&'a Pending);

impl Drop for Finisher<'_> {
    fn drop(&mut self) {
        self.0.finish(Err("the chunk read stopped".into()));
    }
}

struct State<K> {
    slots: HashMap<K, Slot>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, K>,
    bytes: u64,
    clock: u64,
    pending: HashMap<K, Arc<Pending>>,
}

/// A bounded cache of chunk data keyed by `K`.
pub struct ChunkCache<K> {
    capacity: u64,
    state: Mutex<State<K>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave the cache's state half-changed in a
    // way that matters more than losing the mount: go on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Hash + Eq + Clone> ChunkCache<K> {
    /// A cache of at most `capacity` bytes of data.
    pub fn new(capacity: u64) -> Self {
        ChunkCache {
            capacity,
            state: Mutex::new(State {
                slots: HashMap::new(),
                order: BTreeMap::new(),
                bytes: 0,
                clock: 0,
                pending: HashMap::new(),
            }),
        }
    }

    /// Bytes of data held.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        lock(&self.state).bytes
    }

    /// The data of `key`: from the cache, from a fetch already under way,
    /// or from `fetch`, whose result is kept.
    pub fn get_or_fetch(
        &self,
        key: &K,
        fetch: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Fetched {
        let pending = {
            let mut state = lock(&self.state);
            state.clock += 1;
            let now = state.clock;
            if let Some(slot) = state.slots.get_mut(key) {
                let before = std::mem::replace(&mut slot.used, now);
                let data = slot.data.clone();
                state.order.remove(&before);
                state.order.insert(now, key.clone());
                return Ok(data);
            }
            if let Some(pending) = state.pending.get(key) {
                let pending = pending.clone();
                drop(state);
                return pending.wait();
            }
            let pending = Arc::new(Pending::default());
            state.pending.insert(key.clone(), pending.clone());
            pending
        };
        let finisher = Finisher(&pending);
        let outcome: Fetched = fetch().map(Arc::new);
        {
            let mut state = lock(&self.state);
            state.pending.remove(key);
            if let Ok(data) = &outcome {
                self.insert(&mut state, key, data.clone());
            }
        }
        pending.finish(outcome.clone());
        drop(finisher);
        outcome
    }

    fn insert(&self, state: &mut State<K>, key: &K, data: Arc<Vec<u8>>) {
        // Capacity, not length: the memory the chunk really holds.
        let size = data.capacity() as u64;
        while state.bytes + size > self.capacity {
            let Some((_, oldest)) = state.order.pop_first() else {
                break;
            };
            if let Some(slot) = state.slots.remove(&oldest) {
                state.bytes -= slot.data.capacity() as u64;
            }
        }
        state.clock += 1;
        let used = state.clock;
        if let Some(old) = state.slots.insert(key.clone(), Slot { data, used }) {
            state.order.remove(&old.used);
            state.bytes -= old.data.capacity() as u64;
        }
        state.order.insert(used, key.clone());
        state.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn get(cache: &ChunkCache<u32>, key: u32, len: usize, fetches: &AtomicUsize) -> Arc<Vec<u8>> {
        cache
            .get_or_fetch(&key, || {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok(vec![key as u8; len])
            })
            .unwrap()
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = ChunkCache::new(1000);
        let fetches = AtomicUsize::new(0);
        for key in 0..50 {
            get(&cache, key, 300, &fetches);
            assert!(cache.bytes() <= 1000, "{} bytes", cache.bytes());
        }
        assert_eq!(cache.bytes(), 900);
        assert_eq!(fetches.load(Ordering::SeqCst), 50);
    }

    #[test]
    fn a_cached_chunk_is_not_fetched_again() {
        let cache = ChunkCache::new(1000);
        let fetches = AtomicUsize::new(0);
        let a = get(&cache, 1, 10, &fetches);
        let b = get(&cache, 1, 10, &fetches);
        assert_eq!(a, b);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_least_recently_used_chunk_goes_first() {
        let cache = ChunkCache::new(300);
        let fetches = AtomicUsize::new(0);
        get(&cache, 1, 100, &fetches);
        get(&cache, 2, 100, &fetches);
        get(&cache, 3, 100, &fetches);
        get(&cache, 1, 100, &fetches); // 1 is now the newest
        get(&cache, 4, 100, &fetches); // evicts 2
        assert_eq!(fetches.load(Ordering::SeqCst), 4);
        get(&cache, 1, 100, &fetches);
        get(&cache, 3, 100, &fetches);
        assert_eq!(fetches.load(Ordering::SeqCst), 4);
        get(&cache, 2, 100, &fetches);
        assert_eq!(fetches.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn a_chunk_larger_than_the_cache_is_held_alone() {
        let cache = ChunkCache::new(100);
        let fetches = AtomicUsize::new(0);
        get(&cache, 1, 50, &fetches);
        get(&cache, 2, 500, &fetches);
        assert_eq!(cache.bytes(), 500);
        get(&cache, 2, 500, &fetches);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        get(&cache, 3, 50, &fetches);
        assert_eq!(cache.bytes(), 50);
    }

    #[test]
    fn failures_are_not_remembered() {
        let cache: ChunkCache<u32> = ChunkCache::new(100);
        let err = cache.get_or_fetch(&1, || Err("boom".into())).unwrap_err();
        assert_eq!(err, "boom");
        assert_eq!(
            cache.get_or_fetch(&1, || Ok(vec![1])).unwrap().as_slice(),
            [1]
        );
    }

    #[test]
    fn concurrent_readers_of_one_chunk_share_one_fetch() {
        let cache = ChunkCache::new(1 << 20);
        let fetches = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let data = cache
                        .get_or_fetch(&7u32, || {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(vec![7; 1000])
                        })
                        .unwrap();
                    assert_eq!(data.len(), 1000);
                });
            }
        });
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }
}
