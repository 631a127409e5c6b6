//! Login attempts, counted per client address and per user name from that address, in
//! one-minute windows. Over the limit a login is answered 429 before the password is looked at,
//! so guessing costs the guesser time and the server nothing; a user's window filled from
//! another address does not lock the user out.
//!
//! An address's own window is checked first, so one address adds at most its limit of windows a
//! minute, and ended windows are pruned as the table grows. Behind a proxy every client shares
//! the proxy's address.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
/// Table size at which ended windows are dropped.
const PRUNE_AT: usize = 10_000;

/// Per-key attempt counters.
#[derive(Debug)]
pub(super) struct Throttle {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    pub(super) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt against every key, or, when one of them is over the limit, counts
    /// nothing and says how long until its window ends.
    pub(super) fn attempt(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        for key in keys {
            if let Some((start, count)) = windows.get(key)
                && now.duration_since(*start) < WINDOW
                && *count >= self.per_minute
            {
                return Err(WINDOW.saturating_sub(now.duration_since(*start)));
            }
        }
        for key in keys {
            let entry = windows.entry(key.clone()).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_limited_on_its_own() {
        let t = Throttle::new(2);
        let (a, b) = ("user:a".to_owned(), "addr:1".to_owned());
        assert!(t.attempt(&[a.clone(), b.clone()]).is_ok());
        assert!(t.attempt(std::slice::from_ref(&a)).is_ok());
        let wait = t.attempt(&[a.clone(), b.clone()]).expect_err("a is over");
        assert!(wait <= WINDOW && wait > Duration::from_secs(50), "{wait:?}");
        // The refused attempt did not count against b.
        assert!(t.attempt(std::slice::from_ref(&b)).is_ok());
        assert!(t.attempt(std::slice::from_ref(&b)).is_err());
        assert!(t.attempt(&["user:c".to_owned()]).is_ok());
    }
}
