//! Retention: the PDFs and personal data of finished dispatches are deleted once they are
//! older than `store.retain`, by `postbud prune` and by a daily pass in `postbud serve`. An
//! anonymised record stays (ids, states, dates, the PDF's SHA-256), so "was this invoice
//! delivered, and which file was it" can still be answered.

use std::time::Duration;

use crate::{App, store::StoreError};

/// How often `serve` looks whether the day's pass is due (one instance of a fleet takes it).
const LOOK_EVERY: Duration = Duration::from_secs(3600);
/// One pass a day.
const PASS_EVERY: Duration = Duration::from_secs(24 * 3600);

impl App {
    /// Prunes every finished dispatch not changed for `older_than`: deletes its PDF and personal
    /// data and keeps the record; returns how many.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, StoreError> {
        let before = self
            .store()
            .now()
            .saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let span =
            tracing::info_span!("prune", older_than = %humantime::format_duration(older_than));
        let pruned = tracing::Instrument::instrument(self.store().prune(before), span).await?;
        tracing::info!(pruned, "retention pass: PDFs and personal data deleted");
        Ok(pruned)
    }

    /// Runs [`App::prune`] with `store.retain` once a day until `shutdown`; in a fleet sharing
    /// the database one instance takes each day's turn.
    pub async fn run_retention(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let retain = self.settings().store.retain;
        let owner = format!("{}-{}", std::process::id(), fastrand::u32(..));
        while !*shutdown.borrow() {
            let until = self.store().now() + PASS_EVERY.as_millis() as i64;
            match self.store().take_turn("prune", &owner, until).await {
                Ok(true) => {
                    if let Err(e) = self.prune(retain).await {
                        tracing::warn!(error = %e, "retention pass failed; tomorrow's tries again");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not take the retention turn"),
            }
            tokio::select! {
                () = tokio::time::sleep(LOOK_EVERY) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
