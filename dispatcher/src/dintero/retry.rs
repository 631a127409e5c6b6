//! The one in-place retry policy of the Dintero client: a read (a GET, the token) that Dintero
//! answers 408, 429 or 5xx is tried again at most [`READ_RETRIES`] times, after Dintero's
//! `Retry-After` (200 ms without one); a `Retry-After` longer than [`MAX_INLINE_WAIT`] goes back
//! to the engine's own backoff. Writes (capture, void, pay) never come here: their outcome is
//! read, never guessed by sending again.

use std::{future::Future, time::Duration};

use backon::{ConstantBuilder, Retryable};

use super::DinteroError;

/// How many times a read is retried in place before the engine's own backoff takes over.
pub(super) const READ_RETRIES: usize = 2;
/// Longest `Retry-After` waited in place; longer ones go back to the engine.
pub(super) const MAX_INLINE_WAIT: Duration = Duration::from_secs(10);
/// The wait before a retry when Dintero gave no `Retry-After`.
const DEFAULT_WAIT: Duration = Duration::from_millis(200);

/// Runs the read `attempt`, again under the policy.
pub(super) async fn read<T, F, Fut>(operation: &str, attempt: F) -> Result<T, DinteroError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DinteroError>>,
{
    attempt
        .retry(
            ConstantBuilder::default()
                .with_delay(DEFAULT_WAIT)
                .with_max_times(READ_RETRIES),
        )
        .when(worth_retrying_in_place)
        .adjust(|e: &DinteroError, wait| wait_in_place(e.retry_after(), wait))
        .notify(|e: &DinteroError, wait| {
            tracing::debug!(operation, error = %e, ?wait, "retrying read in place");
        })
        .await
}

/// Only an answer the SDK's status rule calls worth a retry: a transport error goes to the
/// engine at once (its own backoff spaces the attempts), and so does a refusal.
fn worth_retrying_in_place(e: &DinteroError) -> bool {
    e.status()
        .and_then(|s| reqwest::StatusCode::from_u16(s).ok())
        .is_some_and(postbud_channel::http::is_retryable)
}

/// Dintero's `Retry-After` when it asked for one, the policy's wait otherwise; `None` (stop
/// here) when Dintero asks for longer than [`MAX_INLINE_WAIT`].
fn wait_in_place(retry_after: Option<Duration>, policy: Option<Duration>) -> Option<Duration> {
    match retry_after {
        Some(wait) if wait > MAX_INLINE_WAIT => None,
        Some(wait) => policy.map(|_| wait),
        None => policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn answered(status: StatusCode, retry_after: Option<Duration>) -> DinteroError {
        DinteroError::refusal("GET transaction T1", status, retry_after, "busy")
    }

    async fn attempts_for(error: DinteroError) -> usize {
        let calls = AtomicUsize::new(0);
        let _ = read("GET transaction T1", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(error.clone())
        })
        .await;
        calls.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn busy_answers_are_read_again_a_bounded_number_of_times() {
        let busy = answered(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(1)),
        );
        assert_eq!(attempts_for(busy).await, 1 + READ_RETRIES);
        let throttled = answered(StatusCode::TOO_MANY_REQUESTS, None);
        assert_eq!(attempts_for(throttled).await, 1 + READ_RETRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_transport_errors_and_long_waits_go_back_to_the_engine() {
        let long = answered(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(60)));
        assert_eq!(attempts_for(long).await, 1);
        assert_eq!(
            attempts_for(answered(StatusCode::UNAUTHORIZED, None)).await,
            1
        );
        assert_eq!(
            attempts_for(DinteroError::temporary("GET transaction T1", "timed out")).await,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_dintero_s_retry_after() {
        let started = tokio::time::Instant::now();
        let busy = answered(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(3)),
        );
        attempts_for(busy).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3) * READ_RETRIES as u32
        );
    }
}
