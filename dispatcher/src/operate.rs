//! What an operator does from the console beyond one retry: retry everything a filter matches
//! in bounded batches, deliver an invoice again through one channel, and write it all to the
//! audit log.

use std::time::Duration;

use postbud_channel::ids;

use crate::{
    App, Records,
    store::{AuditEntry, JobKind, JobState, Millis, NewJob, Role, Stage, StoreError},
    triage::{Filter, Matching},
};

/// How many invoices a bulk action reads from the store at once: one bounded query a batch.
pub const BATCH: u32 = 500;

/// What [`App::retry_matching`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BulkRetry {
    /// Invoices matching the filter that were retried (at most the cap).
    pub matched: u64,
    /// Jobs requeued among them (an invoice with nothing failed, dead or waiting has none).
    pub requeued: u64,
    /// More invoices matched than the cap: those were left alone.
    pub capped: bool,
}

/// A delivery asked for again ([`App::redeliver`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Redelivered {
    /// The delivery job.
    pub job_id: String,
    /// Queued now; `false` when an earlier request's delivery was pending or asked for less
    /// than [`REPEAT_GUARD`] ago (a double click), and nothing new was queued.
    pub queued: bool,
}

/// A request to deliver again within this long of the last one through the same channel is
/// taken for the same request: a double click sends once, even when the first was quick.
pub const REPEAT_GUARD: Duration = Duration::from_secs(30);

/// Why [`App::redeliver`] queued nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedeliverError {
    /// No channel instance of this deployment has that name.
    #[error("no channel `{channel}` is configured (the channels are: {configured})")]
    UnknownChannel {
        /// The name asked for.
        channel: String,
        /// The names configured, comma-separated.
        configured: String,
    },
    /// The store has not seen the transaction.
    #[error("transaction {0} is not known to this store")]
    UnknownTransaction(String),
    /// The invoice was not routed (yet, or ever): there is nothing to deliver again.
    #[error(
        "transaction {transaction_id} cannot be delivered again: it is {stage}, not routed (only a routed invoice has a snapshot and a route to deliver from)"
    )]
    NotRouted {
        /// The transaction.
        transaction_id: String,
        /// Where it stands.
        stage: Stage,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl App {
    /// How many invoices match `filter`, counting no further than `cap`: what the console
    /// shows before a bulk retry. Reads [`BATCH`] invoices a query.
    pub async fn count_matching(&self, filter: &Filter, cap: u64) -> Result<u64, StoreError> {
        let size = batch_for(filter, cap);
        let mut matching = Matching::new(self.store().as_ref(), filter, size);
        let mut count = 0;
        while count < cap && matching.next().await?.is_some() {
            count += 1;
        }
        Ok(count)
    }

    /// Retries every invoice matching `filter`, at most `cap` of them, newest first: each one's
    /// failed, dead-lettered or waiting jobs are requeued to run now, as [`App::retry`] does
    /// (deliveries of a voided invoice stay stopped). The invoices are read [`BATCH`] at a
    /// time, each batch one query after the last one's cursor, so what a retry changes never
    /// moves the next batch.
    pub async fn retry_matching(&self, filter: &Filter, cap: u64) -> Result<BulkRetry, StoreError> {
        let size = batch_for(filter, cap.saturating_add(1));
        let mut matching = Matching::new(self.store().as_ref(), filter, size);
        let mut done = BulkRetry {
            matched: 0,
            requeued: 0,
            capped: false,
        };
        while let Some(listed) = matching.next().await? {
            if done.matched == cap {
                done.capped = true;
                break;
            }
            done.requeued += self
                .store()
                .retry(&listed.dispatch.transaction_id, None)
                .await?;
            done.matched += 1;
        }
        Ok(done)
    }

    /// Queues a new delivery of a routed invoice through the channel instance `channel`, as
    /// it was routed (its snapshot and route's send window; read again from Dintero once
    /// retention pruned it). The sink gets a new delivery id, so it sends again; its failure
    /// sets off no fallback. A request repeated while the last one through that channel is
    /// pending, or within [`REPEAT_GUARD`] of it, queues nothing and names that delivery.
    pub async fn redeliver(
        &self,
        transaction_id: &str,
        channel: &str,
    ) -> Result<Redelivered, RedeliverError> {
        if !self.has_channel(channel) {
            return Err(RedeliverError::UnknownChannel {
                channel: channel.to_owned(),
                configured: (self.settings().channels.keys())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let store = self.store();
        let Some(dispatch) = store.dispatch(transaction_id).await? else {
            return Err(RedeliverError::UnknownTransaction(
                transaction_id.to_owned(),
            ));
        };
        if dispatch.stage != Stage::Routed {
            return Err(RedeliverError::NotRouted {
                transaction_id: transaction_id.to_owned(),
                stage: dispatch.stage,
            });
        }
        let earlier: Vec<_> = (store.jobs(transaction_id).await?.into_iter())
            .filter(|j| j.role == Some(Role::Redelivery) && j.channel.as_deref() == Some(channel))
            .collect();
        let now = store.now();
        let guard = REPEAT_GUARD.as_millis() as Millis;
        if let Some(last) = earlier.iter().max_by_key(|j| (j.created_at, j.id.clone()))
            && (!last.state.is_final() || now - last.created_at < guard)
        {
            return Ok(Redelivered {
                job_id: last.id.clone(),
                queued: false,
            });
        }
        // Two requests racing here count the same earlier ones, make the same id, and the
        // store keeps one job of it.
        let job = NewJob {
            id: ids::redelivery_id(transaction_id, channel, earlier.len() as u64),
            kind: JobKind::Deliver,
            channel: channel.to_owned(),
            role: Role::Redelivery,
            next_at: now,
        };
        store
            .enqueue_free(transaction_id, std::slice::from_ref(&job))
            .await?;
        let kept = store.job(&job.id).await?;
        Ok(Redelivered {
            queued: kept.is_some_and(|j| j.state == JobState::Queued && j.attempts == 0),
            job_id: job.id,
        })
    }

    /// Appends to the audit log: `user` did `action` to `target`, with `result`, now.
    pub async fn record_audit(
        &self,
        user: &str,
        action: &str,
        target: &str,
        result: &str,
    ) -> Result<(), StoreError> {
        let entry = AuditEntry::new(self.store().now(), user, action, target, result);
        self.store().record_audit(&entry).await
    }
}

impl Records {
    /// The audit log, newest first: up to `limit` entries before `before` (the newest when
    /// `None`), and the others of the last one's millisecond, so the next page, read before
    /// that millisecond, misses none.
    pub async fn audit_log(
        &self,
        before: Option<Millis>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.store().audit_log(before, limit).await
    }
}

/// The page size for reading up to `wanted` invoices matching `filter`: all of them at once
/// when the store's filters are the whole filter and they are fewer than a batch.
fn batch_for(filter: &Filter, wanted: u64) -> u32 {
    match filter.verdicts.is_empty() {
        true => u32::try_from(wanted).map_or(BATCH, |n| n.clamp(1, BATCH)),
        false => BATCH,
    }
}
