//! Answers kept for their time to live, by participant. Errors are never kept: the next find
//! asks again.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::Found;

/// Most participants kept; past it, expired answers are swept and then the cache is cleared
/// (a burst of distinct buyers costs a re-ask, never unbounded memory).
const CAPACITY: usize = 10_000;

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, (Instant, Found)>>,
}

impl Cache {
    /// The answer for `key` if it is still fresh.
    pub fn get(&self, key: &str) -> Option<Found> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some((until, found)) if Instant::now() < *until => Some(found.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `found` for `ttl` (nothing when it is zero).
    pub fn put(&self, key: String, found: Found, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (now + ttl, found));
    }
}
