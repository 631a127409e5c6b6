//! Voids: only Dintero's confirmation stops pending deliveries and sends cancellation notices.

use super::Engine;
use crate::store::Role;
use crate::{
    ids,
    store::{Finish, JobKind, Lease, NewJob, StoreError, VoidEffect},
};
use postbud_channel::RetryClass;

impl Engine {
    /// Dintero confirmed the void: stops the pending deliveries and queues a cancellation notice
    /// through every channel that delivered the invoice and can send one.
    pub async fn voided(&self, transaction_id: &str) -> Result<VoidEffect, StoreError> {
        let effect = self.store.void(transaction_id).await?;
        let notices: Vec<NewJob> = effect
            .delivered_channels
            .iter()
            .filter(|name| {
                self.channels
                    .get(*name)
                    .is_some_and(|c| c.supports_cancel())
            })
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
    pub async fn await_void(
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
    pub(super) async fn run_void(&self, lease: &Lease) -> Result<Finish, StoreError> {
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
                return Ok(self.failure(
                    lease,
                    RetryClass::Temporary,
                    e.retry_after(),
                    e.to_string(),
                ));
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
                RetryClass::Temporary,
                None,
                "void accepted by Dintero (202); waiting for its VOID event".into(),
            )),
        }
    }
}
