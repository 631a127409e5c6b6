//! The void job: only Dintero's confirmation of a void stops the pending deliveries and sends
//! cancellation notices; a void Dintero accepted (202) is waited for by a job that reads it.

use std::sync::Arc;

use tokio::sync::Notify;

use super::{Channels, backoff};
use crate::{
    dintero::DinteroApi,
    store::{Finish, JobKind, Lease, NewJob, Role, Store, StoreError, VoidEffect},
};
use postbud_channel::RetryClass;
use postbud_channel::ids;

/// The void job, with everything it reads and writes.
pub(crate) struct VoidJob {
    /// The void recorded, the pending jobs stopped, the notices queued.
    pub(crate) store: Arc<dyn Store>,
    /// Dintero: the outcome of an accepted void.
    pub(crate) gateway: Arc<dyn DinteroApi>,
    /// Which channels can send a cancellation notice.
    pub(crate) channels: Arc<Channels>,
    /// How a failed attempt ends.
    pub(crate) retry: backoff::RetryPolicy,
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
                return Ok(self.retry.after(
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
            None => Ok(self.retry.after(
                lease,
                RetryClass::Temporary,
                None,
                "void accepted by Dintero (202); waiting for its VOID event".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::engine::testing::{self, OneTransaction, Recording};
    use postbud_channel::Channel;

    const ID: &str = "T12345678.voidIng";

    /// The void job alone: an accepted void is waited for until Dintero shows the `VOID` event
    /// answering it; then the pending work stops and a cancellation notice is queued through
    /// each channel that delivered the invoice and can send one, and only those.
    #[tokio::test]
    async fn a_confirmed_void_queues_notices_only_where_they_can_be_sent() {
        let (_dir, store) = testing::sqlite().await;
        let tx = testing::transaction(ID, "AUTHORIZED", json!([]));
        let route = testing::route(&["mail", "archive"], &[]);
        let first = testing::routed(store.as_ref(), &tx, &route).await;
        let second = testing::claim(store.as_ref(), ID)
            .await
            .expect("second delivery");
        for lease in [&first, &second] {
            store
                .finish(lease, Finish::Done("sent".into()))
                .await
                .expect("delivered");
        }
        let mail = Arc::new(Recording {
            cancels: true,
            ..Recording::default()
        });
        let archive = Arc::new(Recording::default());
        let channels: BTreeMap<String, Arc<dyn Channel>> = BTreeMap::from([
            ("mail".to_owned(), mail as Arc<dyn Channel>),
            ("archive".to_owned(), archive as Arc<dyn Channel>),
        ]);
        let dintero = OneTransaction::new(tx);
        let job = VoidJob {
            retry: backoff::RetryPolicy::new(testing::settings(), Arc::clone(&store)),
            store: Arc::clone(&store),
            gateway: Arc::clone(&dintero) as Arc<dyn DinteroApi>,
            channels: Arc::new(Channels::new(channels)),
            wake: Arc::new(Notify::new()),
        };
        job.await_void(ID, Some("req-1")).await.expect("await");
        let lease = testing::claim(store.as_ref(), ID)
            .await
            .expect("the void job");
        assert_eq!(lease.job.kind, JobKind::Void);
        let cancels = |jobs: &[crate::store::Job]| {
            jobs.iter()
                .filter(|j| j.kind == JobKind::Cancel)
                .filter_map(|j| j.channel.clone())
                .collect::<Vec<_>>()
        };

        // Accepted, not settled: keep looking, nothing stopped.
        match job.attempt(&lease).await.expect("attempt") {
            Finish::Retry { error, .. } => assert!(error.contains("waiting for its VOID event")),
            other => panic!("{other:?}"),
        }
        assert!(cancels(&store.jobs(ID).await.expect("jobs")).is_empty());

        dintero.show(testing::transaction(
            ID,
            "AUTHORIZED",
            json!([{"event": "VOID", "success": true, "request_id": "req-1"}]),
        ));
        match job.attempt(&lease).await.expect("attempt") {
            Finish::Done(what) => assert!(what.contains("Dintero confirmed the void"), "{what}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(cancels(&store.jobs(ID).await.expect("jobs")), ["mail"]);
        let dispatch = store.dispatch(ID).await.expect("read").expect("dispatch");
        assert_eq!(dispatch.stage, crate::store::Stage::Voided);
    }
}
