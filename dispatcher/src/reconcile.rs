//! Never miss an invoice: a sweep lists the account's authorized Kravia transactions at Dintero
//! and submits every one the store does not know, so an invoice whose callback never arrived
//! (a deployment that was down, a proxy that rewrote the path, a secret set in one place only)
//! is still captured and delivered. Eligibility then decides as for a callback: Kravia's own
//! invoices are recorded as skipped, never captured. The same sweep finds transactions voided
//! at Dintero (in its Backoffice, say) and stops their deliveries.

use std::time::Duration;

use crate::store::{Millis, Stage};
use crate::{
    app::{App, AppError},
    dintero::{TransactionFilter, eligibility, model::Transaction},
    sweeps::{LAST_SWEEP_KEY, Sweep, last_sweep},
};

/// Dintero's largest page.
const PAGE: u32 = 100;
/// Skipped transactions a sweep looks at again at most: each costs reads of Dintero.
const LOOK_AGAIN_PER_SWEEP: u64 = 100;
/// Transactions new to the store one sweep submits at most.
const NEW_PER_SWEEP: u64 = 1_000;
/// Pages one listing reads at most (100,000 transactions): a bound on a sweep's work, whatever
/// the account holds or the listing does.
const MAX_PAGES: u64 = 1000;
impl App {
    /// Runs one sweep now: every page of `AUTHORIZED` Kravia transactions created within
    /// `dintero.reconcile_lookback`, submitting those not known, and looking again (a bounded
    /// number a sweep, less often as they age) at those skipped for a reason that can change;
    /// then the voided ones created within `dintero.void_lookback`, stopping what is pending
    /// for them. The report is kept in the store (see [`App::last_sweep`]).
    pub async fn reconcile(&self) -> Result<Sweep, AppError> {
        let dintero = self.settings().require_dintero()?;
        let since = |lookback: Duration| {
            let lookback = jiff::SignedDuration::try_from(lookback)
                .unwrap_or(jiff::SignedDuration::from_hours(24 * 14));
            jiff::Timestamp::now()
                .checked_sub(lookback)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        let mut sweep = Sweep {
            at: self.store().now(),
            ..Sweep::default()
        };
        let every = dintero.reconcile_every;
        // The voids are swept whatever stopped the first listing: a stop there must never keep
        // a voided invoice's deliveries going.
        let authorized = self
            .sweep_status(
                "AUTHORIZED",
                &since(dintero.reconcile_lookback),
                every,
                &mut sweep,
            )
            .await;
        let voided = self
            .sweep_status(
                "AUTHORIZATION_VOIDED",
                &since(dintero.void_lookback),
                every,
                &mut sweep,
            )
            .await;
        let result = authorized.and(voided);
        if let Err(e) = &result {
            sweep.error = Some(e.to_string());
        }
        let report = serde_json::to_string(&sweep).unwrap_or_default();
        self.store().set_meta(LAST_SWEEP_KEY, &report).await?;
        tracing::info!(
            found = sweep.found,
            new = sweep.new,
            submitted = sweep.submitted,
            looked_again = sweep.looked_again,
            voided = sweep.voided,
            unreadable = sweep.unreadable,
            error = sweep.error.as_deref().unwrap_or(""),
            "reconciliation sweep"
        );
        result.map(|()| sweep)
    }

    /// Every page of Kravia transactions with `status` created since `since`.
    async fn sweep_status(
        &self,
        status: &str,
        since: &str,
        every: Duration,
        sweep: &mut Sweep,
    ) -> Result<(), AppError> {
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
            for (id, why) in &page.unreadable {
                // One transaction Postbud cannot read must not hide the others: set aside, said,
                // and, when it has an id of this account that the store does not know, submitted
                // so that its dispatch shows it (read on its own, it may well be readable).
                sweep.unreadable += 1;
                tracing::warn!(
                    transaction = id.as_deref().unwrap_or("(no id)"),
                    %why,
                    "the sweep set aside a listed transaction it cannot read"
                );
                if status == "AUTHORIZED"
                    && let Some(id) = id.as_deref().and_then(|id| self.transaction_id(id).ok())
                    && self.store().dispatch(id).await?.is_none()
                    && self.engine().submit(id).await?
                {
                    sweep.submitted += 1;
                }
            }
            for tx in &page.transactions {
                // Ids from a listing are Dintero's own; one of another shape is skipped, not
                // trusted.
                let Ok(id) = self.transaction_id(&tx.id) else {
                    continue;
                };
                if status == "AUTHORIZED" {
                    self.sweep_authorized(id, tx, every, sweep).await?;
                } else if self
                    .store()
                    .dispatch(id)
                    .await?
                    .is_some_and(|d| d.stage != Stage::Voided)
                    && self.voided_elsewhere(id, true).await?
                {
                    sweep.voided += 1;
                }
            }
            // The next page starts after the last id; a listing that does not move on (a cursor
            // seen before) or never ends is stopped, and says so.
            let Some(last) = page.last_id.filter(|_| page.len as u32 >= PAGE) else {
                break;
            };
            if !seen.insert(last.clone()) || pages >= MAX_PAGES {
                return Err(AppError::Dintero(crate::dintero::DinteroError::permanent(
                    "list transactions",
                    format!(
                        "the listing did not end after {pages} pages (last id {last}); the sweep stopped"
                    ),
                )));
            }
            filter.starting_after = Some(last);
        }
        Ok(())
    }

    /// What the sweep does with one authorized transaction.
    async fn sweep_authorized(
        &self,
        id: &str,
        tx: &Transaction,
        every: Duration,
        sweep: &mut Sweep,
    ) -> Result<(), AppError> {
        sweep.found += 1;
        let known = self.store().dispatch(id).await?;
        // An invoice `create_invoice` asked for, whose record was lost with the process that
        // asked: it is the merchant's, whatever the default says.
        let intended = match &known {
            Some(d) if d.origin.is_some() => false,
            Some(d) if !matches!(d.stage, Stage::New | Stage::Skipped) => false,
            _ => self.recorded_intent(tx).await?,
        };
        if intended {
            self.store()
                .mark_origin(
                    id,
                    crate::store::ORIGIN_CREATED,
                    "found by the sweep: made by `invoice create`, whose record was lost after Dintero answered",
                )
                .await?;
        }
        match known {
            // A dispatch recorded but never queued (a crash between recording an invoice Postbud
            // created and queueing it): submitting is idempotent.
            Some(d) if d.stage == Stage::New || intended => {
                if self.engine().submit(id).await? {
                    sweep.submitted += 1;
                }
            }
            Some(d) if d.stage == Stage::Skipped => {
                let due = look_again(
                    d.reason.as_deref().unwrap_or_default(),
                    d.created_at,
                    d.updated_at,
                    self.store().now(),
                    every,
                );
                if due
                    && sweep.looked_again < LOOK_AGAIN_PER_SWEEP
                    && self.engine().submit(id).await?
                {
                    sweep.looked_again += 1;
                }
            }
            Some(_) => {}
            None if tx.capture_event().is_some() && !intended => sweep.captured_elsewhere += 1,
            None => {
                // A listing gone wrong (one that never ends, another account's transactions)
                // must not fill the store in one sweep: the next sweep goes on from here.
                if sweep.new >= NEW_PER_SWEEP {
                    return Err(AppError::Dintero(crate::dintero::DinteroError::temporary(
                        "list transactions",
                        format!(
                            "more than {NEW_PER_SWEEP} transactions new to this store in one sweep; the sweep stopped there, and the next one goes on"
                        ),
                    )));
                }
                sweep.new += 1;
                if self.engine().submit(id).await? {
                    sweep.submitted += 1;
                }
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
            let until = self.store().now() + every.as_millis() as i64 - 50;
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

/// Whether a dispatch skipped for `reason` is due for another look, for a transaction Dintero
/// now lists as authorized. A status skip is due at once: the listing says the status moved
/// on (an `ON_HOLD` whose "additional callback later" was lost). Dintero's default is looked
/// at again less often as the skip ages (not before a quarter of its age has passed since the
/// last look, and never more than once a sweep): a configuration set later is found within
/// hours, while an account whose invoices are Kravia's costs a few reads per invoice in all.
fn look_again(
    reason: &str,
    created_at: Millis,
    last_look: Millis,
    now: Millis,
    every: Duration,
) -> bool {
    if !eligibility::may_change(reason) {
        return false;
    }
    if eligibility::skipped_for_status(reason) {
        return true;
    }
    let since_last = now.saturating_sub(last_look);
    let age = now.saturating_sub(created_at);
    since_last >= (every.as_millis() as Millis).max(age / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;
    const EVERY: Duration = Duration::from_secs(300);

    #[test]
    fn a_status_skip_is_looked_at_again_at_once() {
        let reason = format!(
            "status is ON_HOLD, not AUTHORIZED; {}",
            eligibility::MAY_CHANGE
        );
        assert!(look_again(&reason, 0, 10 * MIN, 10 * MIN, EVERY));
    }

    #[test]
    fn the_default_is_looked_at_again_less_often_as_it_ages() {
        let reason = format!(
            "invoice channel resolves to `kravia` (from Dintero's default): Kravia delivers this invoice; {}",
            eligibility::MAY_CHANGE
        );
        // Never twice within a sweep interval.
        assert!(!look_again(&reason, 0, 0, 4 * MIN, EVERY));
        assert!(look_again(&reason, 0, 0, 5 * MIN, EVERY));
        // A day old, looked at an hour ago: not before six hours have passed.
        let day = 24 * 60 * MIN;
        assert!(!look_again(&reason, 0, day - 60 * MIN, day, EVERY));
        assert!(look_again(&reason, 0, day - 6 * 60 * MIN, day, EVERY));
        // Looks over two weeks at that pace: a few dozen, not one per sweep (4,032).
        let (mut t, mut last, mut looks) = (0, 0, 0);
        while t < 14 * day {
            t += 5 * MIN;
            if look_again(&reason, 0, last, t, EVERY) {
                last = t;
                looks += 1;
            }
        }
        assert!(looks < 40, "{looks} looks");
    }

    #[test]
    fn a_skip_that_cannot_change_is_never_looked_at_again() {
        let reason = "invoice channel resolves to `kravia` (from session configuration): Kravia delivers this invoice";
        assert!(!look_again(reason, 0, 0, 30 * 24 * 60 * MIN, EVERY));
    }
}
