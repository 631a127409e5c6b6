//! The void job: only Dintero's confirmation of a void stops the pending deliveries and sends
//! cancellation notices; a void Dintero accepted (202) is waited for by a job that reads it.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;

use super::{Channels, backoff};
use crate::{
    config::EngineSettings,
    dintero::DinteroApi,
    ids,
    store::{Finish, JobKind, Lease, NewJob, Role, Store, StoreError, VoidEffect},
};
use postbud_channel::ErrorKind;

/// The void job, with everything it reads and writes.
pub(crate) struct VoidJob {
    /// The void recorded, the pending jobs stopped, the notices queued.
    pub(crate) store: Arc<dyn Store>,
    /// Dintero: the outcome of an accepted void.
    pub(crate) gateway: Arc<dyn DinteroApi>,
    /// Which channels can send a cancellation notice.
    pub(crate) channels: Arc<Channels>,
    /// The retry policy of the wait for an accepted void.
    pub(crate) settings: EngineSettings,
    /// Wakes an idle worker for the notices and waits this job queues.
    pub(crate) wake: Arc<Notify>,
}

impl VoidJob {
    /// Dintero confirmed the void: stops the pending deliveries and queues a cancellation notice
    /// through every channel that delivered the invoice and can send one.
    pub(super) async fn voided(&self, transaction_id: &str) -> Result<VoidEffect, StoreError> {
        let effect = self.store.void(transaction_id).await?;
        let notices: Vec<NewJob> = effect
            .delivered_channels
            .iter()
            .filter(|name| self.channels.can_cancel(name))
            .map(|name| NewJob {
                id: ids::cancel_id(transaction_id, name),
                kind: JobKind::Cancel,
                channel: name.clone(),
                role: Role::Cancel,
                next_at: self.store.now(),
            })
            .collect();
        self.store.enqueue_free(transaction_id, &notices).await?;
        if !notices.is_empty() {
            self.wake.notify_one();
        }
        Ok(effect)
    }

    /// Queues the job that waits for Dintero to settle a void it accepted with 202.
    pub(super) async fn await_void(
        &self,
        transaction_id: &str,
        request_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let job = NewJob {
            id: ids::void_id(transaction_id),
            kind: JobKind::Void,
            channel: "dintero".into(),
            role: Role::Confirm,
            next_at: self.store.now(),
        };
        self.store
            .void_accepted(&crate::store::AcceptedVoid {
                transaction_id,
                request_id,
                confirm: &job,
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// One look at the transaction for the outcome of an accepted void: the `VOID` event
    /// answering its request (or the voided status) settles it.
    pub(super) async fn attempt(&self, lease: &Lease) -> Result<Finish, StoreError> {
        let id = lease.job.transaction_id.as_str();
        let request_id = self
            .store
            .dispatch(id)
            .await?
            .and_then(|d| d.void_request_id);
        let tx = match self.gateway.transaction(id).await {
            Ok(tx) => tx,
            // Whatever went wrong, the void's outcome is still to be learnt: keep looking.
            Err(e) => {
                return Ok(self.failure(lease, ErrorKind::Temporary, e.retry_after, e.to_string()));
            }
        };
        match tx.void_result(request_id.as_deref()) {
            Some(Ok(())) => {
                let effect = self.voided(id).await?;
                Ok(Finish::Done(format!(
                    "Dintero confirmed the void; {} pending job(s) stopped",
                    effect.cancelled.len()
                )))
            }
            Some(Err(reason)) => Ok(Finish::Failed(format!(
                "Dintero refused the void: {reason}; the invoice stands and its deliveries go on"
            ))),
            None => Ok(self.failure(
                lease,
                ErrorKind::Temporary,
                None,
                "void accepted by Dintero (202); waiting for its VOID event".into(),
            )),
        }
    }

    /// The retry decision for a failure of kind `kind` after the lease's attempt.
    fn failure(
        &self,
        lease: &Lease,
        kind: ErrorKind,
        retry_after: Option<Duration>,
        error: String,
    ) -> Finish {
        let now = self.store.now();
        backoff::after_failure(
            &self.settings,
            lease.job.attempts,
            kind,
            retry_after,
            error,
            now,
        )
    }
}
