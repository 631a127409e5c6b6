//! The retry policy: a permanent failure ends the job, a temporary one is retried after a delay
//! (exponential with jitter, never shorter than the sink's `Retry-After` and never longer than
//! `backoff_max`: a `Retry-After` of years parks nothing for years) until `max_attempts`.

use std::{sync::Arc, time::Duration};

use crate::{
    config::EngineSettings,
    store::{Finish, Lease, Millis, Store},
};
use postbud_channel::RetryClass;

/// The engine's retry policy, as every job applies it: how a failed attempt ends, by the
/// engine's settings and the store's clock.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    settings: EngineSettings,
    clock: Arc<dyn Store>,
}

impl RetryPolicy {
    /// The policy of `settings`, timing retries by `clock`.
    pub fn new(settings: EngineSettings, clock: Arc<dyn Store>) -> Self {
        Self { settings, clock }
    }

    /// How `lease`'s attempt, failed with `class`, ends: [`after_failure`] now.
    pub fn after(
        &self,
        lease: &Lease,
        class: RetryClass,
        retry_after: Option<Duration>,
        error: String,
    ) -> Finish {
        let now = self.clock.now();
        after_failure(
            &self.settings,
            lease.job.attempts,
            class,
            retry_after,
            error,
            now,
        )
    }
}

/// How an attempt that failed with `kind` after `attempts` attempts ends.
pub fn after_failure(
    settings: &EngineSettings,
    attempts: u32,
    kind: RetryClass,
    retry_after: Option<Duration>,
    error: String,
    now: Millis,
) -> Finish {
    match kind {
        RetryClass::Permanent => Finish::Failed(error),
        RetryClass::Temporary if attempts >= settings.max_attempts => {
            Finish::Dead(format!("gave up after {attempts} attempts: {error}"))
        }
        RetryClass::Temporary => {
            let wait = delay(settings, attempts, retry_after);
            Finish::Retry {
                at: now + wait.as_millis() as i64,
                error,
                reference: None,
            }
        }
    }
}

/// The delay before attempt `attempt + 1`, after `attempt` attempts failed.
///
/// The exponential part doubles from `backoff_base` up to `backoff_max`; "equal jitter" keeps
/// at least half of it so retries stay spread but never collapse to zero.
pub fn delay(settings: &EngineSettings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = settings
        .backoff_base
        .saturating_mul(1u32 << exponent)
        .min(settings.backoff_max);
    let half = ceiling / 2;
    let jittered = half + half.mul_f64(fastrand::f64());
    jittered
        .max(retry_after.unwrap_or_default())
        .min(settings.backoff_max)
}

/// The first moment at or after `at` (store millis) inside the send window.
pub(crate) fn window_open(window: &crate::config::SendWindow, at: Millis) -> Millis {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| window.next_open(t).as_millisecond())
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_honours_retry_after() {
        let s = EngineSettings {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            ..EngineSettings::default()
        };
        for _ in 0..100 {
            let first = delay(&s, 1, None);
            assert!(
                first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
                "{first:?}"
            );
            let late = delay(&s, 20, None);
            assert!(
                late >= Duration::from_secs(30) && late <= Duration::from_secs(60),
                "{late:?}"
            );
            assert!(delay(&s, 1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
            let absurd = Some(Duration::from_secs(3_000_000_000));
            assert_eq!(delay(&s, 1, absurd), Duration::from_secs(60));
        }
    }
}
