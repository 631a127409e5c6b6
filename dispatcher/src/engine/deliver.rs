//! Delivery and cancellation jobs: one channel instance, one attempt.

use super::{Engine, Routed, dispatch::window_open};
use crate::config::Route;
use crate::store::Role;
use crate::{
    ids,
    store::{Finish, HistoryLine, JobKind, Lease, NewJob, StoreError},
};
use postbud_channel::{DeliveryContext, Invoice};

impl Engine {
    /// The route the dispatch chose, as it was configured when it was chosen: reordering or
    /// editing `[[routes]]` later never changes an invoice already routed. (A dispatch routed
    /// before snapshots were kept falls back to its index in today's configuration.)
    async fn route_of(&self, transaction_id: &str) -> Result<Option<Route>, StoreError> {
        let Some(dispatch) = self.store.dispatch(transaction_id).await? else {
            return Ok(None);
        };
        if let Some(snapshot) = &dispatch.route_snapshot {
            return serde_json::from_str(snapshot).map(Some).map_err(|e| {
                StoreError::corrupt(format!(
                    "the route stored with {transaction_id} does not read back: {e}"
                ))
            });
        }
        Ok(dispatch.route.and_then(|r| self.routes.get(r)).cloned())
    }

    /// The invoice the store keeps for the job's transaction, or, once retention pruned it
    /// (`store.retain`), the invoice read again from Dintero with its PDF: a retry of an invoice
    /// that needs attention, or the notices of a void long after, still have what they need.
    async fn stored_or_read_again(
        &self,
        lease: &Lease,
    ) -> Result<Result<Invoice, Finish>, StoreError> {
        let id = lease.job.transaction_id.as_str();
        if let Some(invoice) = self.store.invoice(id).await? {
            return Ok(Ok(invoice));
        }
        let why = format!(
            "no invoice is stored for {id} (pruned by store.retain?), and reading it again from Dintero failed"
        );
        let tx = match self.gateway.transaction(id).await {
            Ok(tx) => tx,
            Err(e) => {
                return Ok(Err(self.failure(
                    lease,
                    e.kind,
                    e.retry_after,
                    format!("{why}: {e}"),
                )));
            }
        };
        let (Some(number), Some(url)) = (
            tx.metadata_str("kravia:invoice_number"),
            tx.metadata_str("kravia:invoice_url"),
        ) else {
            return Ok(Err(Finish::Failed(format!(
                "{why}: Dintero's transaction has no kravia:invoice_number or kravia:invoice_url"
            ))));
        };
        let pdf = match self
            .dispatcher
            .document(self.gateway.as_ref(), &tx, number, url)
            .await
        {
            Ok(pdf) => pdf,
            Err(e) => {
                return Ok(Err(self.failure(
                    lease,
                    e.kind,
                    e.retry_after,
                    format!("{why}: {e}"),
                )));
            }
        };
        let mut invoice = crate::dintero::invoice_of(&tx, number, pdf);
        invoice.link = self.links.as_ref().map(|l| l.link(id));
        Ok(Ok(invoice))
    }

    /// One attempt at a delivery or cancellation notice: from what the dispatch that leased it
    /// stored (`routed`), or else from the store.
    pub(super) async fn run_delivery(
        &self,
        lease: &Lease,
        routed: Option<Routed>,
    ) -> Result<Finish, StoreError> {
        let job = &lease.job;
        let name = job.channel.clone().unwrap_or_default();
        let (invoice, route) = match routed {
            Some(Routed { invoice, route }) => (invoice, Some(route)),
            None => match self.stored_or_read_again(lease).await? {
                Ok(invoice) => (invoice, self.route_of(&job.transaction_id).await?),
                // Given up: the route's fallbacks run, as after any delivery failed for good.
                Err(finish @ (Finish::Failed(_) | Finish::Dead(_))) => {
                    return self.failed_for_good(lease, finish).await;
                }
                Err(finish) => return Ok(finish),
            },
        };
        let Some(channel) = self.channels.get(&name) else {
            let known: Vec<&str> = self.channels.keys().map(String::as_str).collect();
            let error = format!(
                "channel `{name}` is not configured any more (configured: [{}]); `postbud retry` once it is back",
                known.join(", ")
            );
            return self.failed_for_good(lease, Finish::Failed(error)).await;
        };
        if let Some(window) = route.as_ref().and_then(|r| r.window.as_ref()) {
            let open = window_open(window, self.store.now());
            if open > self.store.now() {
                return Ok(Finish::Postpone(open));
            }
        }
        // A delivery that did not run right after capture (it waited for a delay, a send window
        // or a retry) looks at the transaction first: voided at Dintero meanwhile (in its
        // Backoffice, say), it is not sent, and the void is applied as if Postbud had made it.
        let waited = job.attempts > 1
            || route
                .as_ref()
                .is_some_and(|r| r.delay.is_some() || r.window.is_some());
        if job.kind == JobKind::Deliver && waited {
            match self.gateway.transaction(&job.transaction_id).await {
                Ok(tx) if tx.is_voided() => {
                    // This delivery ends first, unsent, so the void sends it no notice.
                    let why = format!(
                        "[{name}] not sent: the transaction was voided at Dintero while this delivery waited"
                    );
                    self.store
                        .finish(lease, Finish::Failed(why.clone()))
                        .await?;
                    self.store
                        .record(&HistoryLine {
                            transaction_id: &job.transaction_id,
                            job_id: Some(&job.id),
                            event: "not sent",
                            detail: &why,
                        })
                        .await?;
                    self.voided(&job.transaction_id).await?;
                    return Ok(Finish::Recorded);
                }
                Ok(_) => {}
                // Best effort: Dintero being away must not hold every delivery back.
                Err(e) => {
                    tracing::warn!(error = %e, "could not look at the transaction before a delayed delivery")
                }
            }
        }
        let mut ctx = DeliveryContext::new(&job.id, &name).with_attempt(job.attempts);
        if let Some(links) = &self.links {
            ctx = ctx.with_report_url(links.report_url(&name, &job.id));
        }
        let result = match job.kind {
            JobKind::Cancel => channel.cancel(&invoice, &ctx).await,
            _ => channel.deliver(&invoice, &ctx).await,
        };
        match result {
            Ok(receipt) => Ok(Finish::Done(match receipt.reference {
                Some(reference) => format!("{} (ref {reference})", receipt.detail),
                None => receipt.detail,
            })),
            Err(error) => {
                let message = error.message().to_owned();
                let mut finish = self.failure(lease, error.kind(), error.retry_after(), message);
                if let (Finish::Retry { at, .. }, Some(window)) =
                    (&mut finish, route.as_ref().and_then(|r| r.window.as_ref()))
                {
                    *at = window_open(window, *at);
                }
                self.failed_for_good(lease, finish).await
            }
        }
    }

    /// After a permanent failure or dead letter of a primary delivery, queue the route's
    /// fallback channels (once each; a channel that already has a delivery keeps it).
    pub(super) async fn failed_for_good(
        &self,
        lease: &Lease,
        finish: Finish,
    ) -> Result<Finish, StoreError> {
        let job = &lease.job;
        let gave_up = matches!(finish, Finish::Failed(_) | Finish::Dead(_));
        if !gave_up || job.kind != JobKind::Deliver || job.role != Some(Role::Primary) {
            return Ok(finish);
        }
        let route = self.route_of(&job.transaction_id).await?;
        let Some(route) = route.filter(|r| !r.fallback.is_empty()) else {
            return Ok(finish);
        };
        let jobs: Vec<NewJob> = route
            .fallback
            .iter()
            .map(|channel| NewJob {
                id: ids::delivery_id(&job.transaction_id, channel),
                kind: JobKind::Deliver,
                channel: channel.clone(),
                role: Role::Fallback,
                next_at: self.store.now(),
            })
            .collect();
        self.store.enqueue(lease, &jobs).await?;
        let detail = format!(
            "[{}] failed for good; falling back to {}",
            job.channel.as_deref().unwrap_or(""),
            route.fallback.join(", ")
        );
        self.store
            .record(&HistoryLine {
                transaction_id: &job.transaction_id,
                job_id: Some(&job.id),
                event: "fallback",
                detail: &detail,
            })
            .await?;
        Ok(finish)
    }
}
