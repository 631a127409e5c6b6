//! A token bucket: how much unauthenticated work the server takes on per second.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Allows `rate` acquisitions per second on average and `burst` at once.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket. A `rate` of 0 refuses everything.
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = if rate == 0 {
            0.0
        } else {
            f64::from(burst.max(1))
        };
        Self {
            rate: f64::from(rate),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        if self.rate <= 0.0 {
            return Err(Duration::from_secs(60));
        }
        Err(Duration::from_secs_f64(
            ((1.0 - *tokens) / self.rate).clamp(0.001, 60.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_taken_then_refused_until_refilled() {
        let bucket = TokenBucket::new(1000, 3);
        assert!((0..3).all(|_| bucket.try_acquire().is_ok()));
        let wait = bucket.try_acquire().expect_err("empty");
        assert!(wait <= Duration::from_millis(2), "{wait:?}");
        std::thread::sleep(Duration::from_millis(5));
        assert!(bucket.try_acquire().is_ok());
        assert!(
            TokenBucket::new(0, 5).try_acquire().is_err(),
            "a rate of 0 refuses all"
        );
    }
}
