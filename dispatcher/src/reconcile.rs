//! Never miss an invoice: a sweep lists the account's authorized Kravia transactions at Dintero
//! and submits every one the store does not know, so an invoice whose callback never arrived
//! (a deployment that was down, a proxy that rewrote the path, a secret set in one place only)
//! is still captured and delivered. Eligibility then decides as for a callback: Kravia's own
//! invoices are recorded as skipped, never captured. The same sweep finds transactions voided
//! at Dintero (in its Backoffice, say) and stops their deliveries.

use std::time::Duration;

use crate::store::Stage;
use crate::{
    app::{App, AppError},
    dintero::TransactionFilter,
    store::now_ms,
    sweeps::{LAST_SWEEP_KEY, Sweep, last_sweep},
};

/// Dintero's largest page.
const PAGE: u32 = 100;
/// Pages one listing reads at most (100,000 transactions): a bound on a sweep's work, whatever
/// the account holds or the listing does.
const MAX_PAGES: u64 = 1000;
impl App {
    /// Runs one sweep now: every page of `AUTHORIZED` Kravia transactions created within
    /// `dintero.reconcile_lookback`, submitting those not known; then the voided ones, stopping
    /// what is pending for them. A transaction already known is not read again. The report is
    /// kept in the store (see [`App::last_sweep`]).
    pub async fn reconcile(&self) -> Result<Sweep, AppError> {
        let dintero = self.settings().require_dintero()?;
        let lookback = jiff::SignedDuration::try_from(dintero.reconcile_lookback)
            .unwrap_or(jiff::SignedDuration::from_hours(24 * 14));
        let since = jiff::Timestamp::now()
            .checked_sub(lookback)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut sweep = Sweep {
            at: now_ms(),
            ..Sweep::default()
        };
        let result = self.sweep(&since, &mut sweep).await;
        if let Err(e) = &result {
            sweep.error = Some(e.to_string());
        }
        let report = serde_json::to_string(&sweep).unwrap_or_default();
        self.store().set_meta(LAST_SWEEP_KEY, &report).await?;
        tracing::info!(
            found = sweep.found,
            new = sweep.new,
            submitted = sweep.submitted,
            voided = sweep.voided,
            error = sweep.error.as_deref().unwrap_or(""),
            "reconciliation sweep"
        );
        result.map(|()| sweep)
    }

    async fn sweep(&self, since: &str, sweep: &mut Sweep) -> Result<(), AppError> {
        for status in ["AUTHORIZED", "AUTHORIZATION_VOIDED"] {
            let mut filter = TransactionFilter {
                statuses: vec![status.into()],
                payment_product: Some("kravia".into()),
                created_since: Some(since.to_owned()),
                limit: PAGE,
                ..TransactionFilter::default()
            };
            let mut pages = 0;
            let mut seen = std::collections::HashSet::new();
            loop {
                let page = self.dintero().transactions(&filter).await?;
                sweep.pages += 1;
                pages += 1;
                for tx in &page {
                    // Ids from a listing are Dintero's own; one of another shape is skipped, not
                    // trusted.
                    let Ok(id) = self.transaction_id(&tx.id) else {
                        continue;
                    };
                    let known = self.store().dispatch(id).await?;
                    if status == "AUTHORIZED" {
                        sweep.found += 1;
                        match known {
                            // A dispatch recorded but never queued (a crash between recording an
                            // invoice Postbud created and queueing it): submitting is idempotent.
                            Some(d) if d.stage == Stage::New => {
                                if self.engine().submit(id).await? {
                                    sweep.submitted += 1;
                                }
                            }
                            Some(_) => {}
                            None if tx.capture_event().is_some() => sweep.captured_elsewhere += 1,
                            None => {
                                sweep.new += 1;
                                if self.engine().submit(id).await? {
                                    sweep.submitted += 1;
                                }
                            }
                        }
                    } else if known.is_some_and(|d| d.stage != Stage::Voided)
                        && self.voided_elsewhere(id, true).await?
                    {
                        sweep.voided += 1;
                    }
                }
                // The next page starts after the last id; a listing that does not move on (a
                // cursor seen before) or never ends is stopped, and says so.
                let Some(last) = page.last().filter(|_| page.len() as u32 >= PAGE) else {
                    break;
                };
                if !seen.insert(last.id.clone()) || pages >= MAX_PAGES {
                    return Err(AppError::Dintero(crate::dintero::DinteroError::permanent(
                        "list transactions",
                        format!(
                            "the listing did not end after {pages} pages (last id {}); the sweep stopped",
                            last.id
                        ),
                    )));
                }
                filter.starting_after = Some(last.id.clone());
            }
        }
        Ok(())
    }

    /// The last sweep's report, from whichever instance ran it.
    pub async fn last_sweep(&self) -> Result<Option<Sweep>, AppError> {
        Ok(last_sweep(self.store().as_ref()).await?)
    }

    /// Sweeps every `dintero.reconcile_every` until `shutdown` turns true; with several instances
    /// on one database, one of them sweeps per interval.
    pub async fn run_reconciler(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(every) = self
            .settings()
            .dintero
            .as_ref()
            .map(|d| d.reconcile_every)
            .filter(|e| !e.is_zero())
        else {
            return;
        };
        let owner = format!("{}-{}", std::process::id(), fastrand::u32(..));
        while !*shutdown.borrow() {
            let until = now_ms() + every.as_millis() as i64 - 50;
            match self.store().take_turn("reconcile", &owner, until).await {
                Ok(true) => {
                    if let Err(e) = self.reconcile().await {
                        tracing::warn!(error = %e, "reconciliation sweep failed; the next one tries again");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not take the reconciliation turn"),
            }
            tokio::select! {
                () = tokio::time::sleep(every.min(Duration::from_secs(3600))) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
