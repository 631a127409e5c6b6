//! The delivery job: one channel instance, one attempt, at a delivery or a cancellation notice;
//! a primary delivery that fails for good sets off its route's fallbacks.

use std::sync::Arc;

use super::{Channels, Dispatcher, backoff, job::Routed};
use crate::{
    config::Route,
    dintero::DinteroApi,
    links::LinkSigner,
    store::{Finish, HistoryLine, Job, JobKind, Lease, NewJob, Role, Store, StoreError},
};
use postbud_channel::ids;
use postbud_channel::{ChannelError, DeliveryContext, Invoice};

/// The delivery job, with everything it reads and writes.
pub(crate) struct DeliveryJob {
    /// The invoice, the route chosen, the fallbacks queued; the clock of send windows.
    pub(crate) store: Arc<dyn Store>,
    /// Dintero: whether a delivery that waited was voided meanwhile, and the invoice read again
    /// once retention pruned it.
    pub(crate) gateway: Arc<dyn DinteroApi>,
    /// The merchant's PDF step, for an invoice read again.
    pub(crate) dispatcher: Arc<dyn Dispatcher>,
    /// The channel instances it sends through.
    pub(crate) channels: Arc<Channels>,
    /// `[[routes]]`, for a dispatch routed before route snapshots were kept.
    pub(crate) routes: Arc<[Route]>,
    /// The signer of invoice links and report URLs, when `server.public_url` is set.
    pub(crate) links: Option<LinkSigner>,
    /// How a failed attempt ends.
    pub(crate) retry: backoff::RetryPolicy,
}

/// How a delivery attempt ended.
#[derive(Debug)]
pub(crate) enum Delivered {
    /// With this end to record.
    Ended(Finish),
    /// Not sent: the transaction was voided at Dintero while the delivery waited. The delivery
    /// has recorded its own end already; the void is to be applied as if Postbud had made it.
    VoidedMeanwhile,
}

impl DeliveryJob {
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
                return Ok(Err(self.retry.after(
                    lease,
                    e.retry_class(),
                    e.retry_after(),
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
                return Ok(Err(self.retry.after(
                    lease,
                    e.retry_class(),
                    e.retry_after(),
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
    pub(super) async fn attempt(
        &self,
        lease: &Lease,
        routed: Option<Routed>,
    ) -> Result<Delivered, StoreError> {
        let job = &lease.job;
        let name = job.channel.clone().unwrap_or_default();
        let (invoice, route) = match routed {
            Some(Routed { invoice, route }) => (invoice, Some(route)),
            None => match self.stored_or_read_again(lease).await? {
                Ok(invoice) => (invoice, self.route_of(&job.transaction_id).await?),
                // Given up: the route's fallbacks run, as after any delivery failed for good.
                Err(finish @ (Finish::Failed(_) | Finish::Dead(_))) => {
                    return self
                        .failed_for_good(lease, finish)
                        .await
                        .map(Delivered::Ended);
                }
                Err(finish) => return Ok(Delivered::Ended(finish)),
            },
        };
        let Some(channel) = self.channels.get(&name) else {
            let error = self.channels.not_configured(&name);
            return self
                .failed_for_good(lease, Finish::Failed(error))
                .await
                .map(Delivered::Ended);
        };
        if let Some(window) = route.as_ref().and_then(|r| r.window.as_ref()) {
            let open = backoff::window_open(window, self.store.now());
            if open > self.store.now() {
                return Ok(Delivered::Ended(Finish::Postpone(open)));
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
                    // This delivery ends first, unsent, so the void sends it no notice (unless an
                    // earlier attempt may have reached the sink: it stays marked, and counts).
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
                    return Ok(Delivered::VoidedMeanwhile);
                }
                Ok(_) => {}
                // Best effort: Dintero being away must not hold every delivery back.
                Err(e) => {
                    tracing::warn!(error = %e, "could not look at the transaction before a delayed delivery")
                }
            }
        }
        // An earlier attempt may have reached the sink: it ended unknown to Postbud (or its
        // worker died during it), or the delivery was delivered before (an operator's retry
        // starts the count of attempts again). Not the reference: it is kept before sending.
        let mut ctx = DeliveryContext::new(&job.id, &name)
            .with_attempt(job.attempts)
            .with_sent_before(job.outcome_unknown || job.receipt.is_some())
            .with_resend(job.resends);
        if let Some(links) = &self.links {
            ctx = ctx.with_report_url(links.report_url(&name, &job.id));
        }
        // Kept before the request goes out: a report that outruns this attempt's end, or follows
        // its worker's death, finds the delivery by it.
        if job.kind == JobKind::Deliver
            && let Some(reference) = channel.reference_before(&ctx)
        {
            self.store.keep_reference(lease, &reference).await?;
        }
        let result = match job.kind {
            JobKind::Cancel => channel.cancel(&invoice, &ctx).await,
            _ => channel.deliver(&invoice, &ctx).await,
        };
        // Where a channel's error is classified for the retry policy and recorded.
        let finish = match result {
            Ok(receipt) => match receipt.reference {
                // Kept apart too: evidence that names only the sink's id finds the delivery.
                Some(reference) => Finish::DoneWith {
                    receipt: format!("{} (ref {reference})", receipt.detail),
                    reference,
                },
                None => Finish::Done(receipt.detail),
            },
            Err(error) => {
                // Credentials the sink refused are the deployment's to fix, not the invoice's:
                // no retries burnt, no fallback (the fix and `postbud retry` deliver it once).
                if let Some(reason) =
                    crate::credentials::refused(&name, &job.transaction_id, &error)
                {
                    tracing::error!(channel = %name, "{reason}");
                    // After an attempt that may have reached the sink, it still may have it: the
                    // sink's report settles the delivery while the key is being fixed.
                    return Ok(Delivered::Ended(match error.reference() {
                        Some(reference) => Finish::Unknown {
                            error: unknown_outcome(&reason, &job.transaction_id, &error),
                            reference: Some(reference.to_owned()),
                        },
                        None => Finish::Dead(reason),
                    }));
                }
                // The sink may already have it (an earlier answer was lost; this one does not
                // tell): another attempt or the fallback could give the customer a second copy.
                if error.outcome_unknown() {
                    let reason = unknown_outcome(&error.to_string(), &job.transaction_id, &error);
                    tracing::error!(channel = %name, "{reason}");
                    return Ok(Delivered::Ended(Finish::Unknown {
                        error: reason,
                        reference: error.reference().map(str::to_owned),
                    }));
                }
                let message = error.to_string();
                let mut finish =
                    self.retry
                        .after(lease, error.retry_class(), error.retry_after(), message);
                if let (Finish::Retry { at, .. }, Some(window)) =
                    (&mut finish, route.as_ref().and_then(|r| r.window.as_ref()))
                {
                    *at = backoff::window_open(window, *at);
                }
                // A reference: this attempt, or an earlier one, may have reached the sink under
                // it. The retry keeps it, so the sink's report settles the delivery meanwhile;
                // giving up is for a person, never for the fallback.
                if let Some(reference) = error.reference() {
                    finish = match finish {
                        Finish::Retry { at, error, .. } => Finish::Retry {
                            at,
                            error,
                            reference: Some(reference.to_owned()),
                        },
                        Finish::Failed(why) | Finish::Dead(why) => {
                            let reason = unknown_outcome(&why, &job.transaction_id, &error);
                            tracing::error!(channel = %name, "{reason}");
                            Finish::Unknown {
                                error: reason,
                                reference: Some(reference.to_owned()),
                            }
                        }
                        other => other,
                    };
                }
                self.failed_for_good(lease, finish).await?
            }
        };
        Ok(Delivered::Ended(finish))
    }

    /// After a permanent failure or dead letter of a primary delivery, queue the route's
    /// fallback channels (once each; a channel that already has a delivery keeps it).
    pub(super) async fn failed_for_good(
        &self,
        lease: &Lease,
        finish: Finish,
    ) -> Result<Finish, StoreError> {
        let gave_up = matches!(finish, Finish::Failed(_) | Finish::Dead(_));
        if !gave_up {
            return Ok(finish);
        }
        let job = &lease.job;
        // An earlier attempt may have reached the sink: giving up now (the invoice no longer
        // readable, the channel gone from the configuration, retries run out) is for a person,
        // never for the fallback.
        if job.outcome_unknown {
            let (Finish::Failed(why) | Finish::Dead(why)) = &finish else {
                unreachable!("gave up")
            };
            let reason = format!(
                "{why}; an earlier attempt may have reached the sink under {}, so it is not given to the fallback: look there first (the sink's own report of it settles this delivery); `postbud retry {}` if it does not have it, or deliver through the channel again from the console (a new send) if it failed there",
                job.reference.as_deref().unwrap_or("its reference"),
                job.transaction_id
            );
            tracing::error!(
                channel = job.channel.as_deref().unwrap_or_default(),
                "{reason}"
            );
            return Ok(Finish::Unknown {
                error: reason,
                reference: job.reference.clone(),
            });
        }
        let Some((jobs, detail)) = self.fallback_of(job, "failed for good").await? else {
            return Ok(finish);
        };
        self.store.enqueue(lease, &jobs).await?;
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

    /// The deliveries the route's fallback makes once `job`, a primary delivery, has failed
    /// (`why`, for the history line that says so); `None` for any other job, or a route
    /// without a fallback. Their ids are deterministic: queued twice, they are one delivery.
    pub(crate) async fn fallback_of(
        &self,
        job: &Job,
        why: &str,
    ) -> Result<Option<(Vec<NewJob>, String)>, StoreError> {
        if job.kind != JobKind::Deliver || job.role != Some(Role::Primary) {
            return Ok(None);
        }
        let route = self.route_of(&job.transaction_id).await?;
        let Some(route) = route.filter(|r| !r.fallback.is_empty()) else {
            return Ok(None);
        };
        let jobs = route
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
        let detail = format!(
            "[{}] {why}; falling back to {}",
            job.channel.as_deref().unwrap_or(""),
            route.fallback.join(", ")
        );
        Ok(Some((jobs, detail)))
    }
}

/// Why a delivery whose sink may already have the invoice stopped, and what to do: `why` is
/// the attempt's own end.
fn unknown_outcome(why: &str, transaction_id: &str, error: &ChannelError) -> String {
    format!(
        "{why}; the sink may already have this invoice, so it is neither sent again nor given to the fallback: look there first{}; `postbud retry {transaction_id}` if it does not have it, or deliver through the channel again from the console (a new send) if it failed there",
        match error.reference() {
            Some(_) => " (the sink's own report of it settles this delivery)",
            None => "",
        },
    )
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use postbud_channel::RetryClass;

    use serde_json::json;

    use super::*;
    use crate::{
        engine::{
            DefaultDispatcher,
            testing::{self, OneTransaction, Recording},
        },
        store::JobState,
    };
    use postbud_channel::Channel;

    const ID: &str = "T12345678.deLivery";

    fn job(
        store: Arc<dyn Store>,
        dintero: Arc<OneTransaction>,
        channels: &[(&str, &Arc<Recording>)],
        route: Route,
    ) -> DeliveryJob {
        let channels: BTreeMap<String, Arc<dyn Channel>> = channels
            .iter()
            .map(|(name, channel)| ((*name).to_owned(), Arc::clone(*channel) as Arc<dyn Channel>))
            .collect();
        DeliveryJob {
            retry: backoff::RetryPolicy::new(testing::settings(), Arc::clone(&store)),
            store,
            gateway: dintero,
            dispatcher: Arc::new(DefaultDispatcher),
            channels: Arc::new(Channels::new(channels)),
            routes: Arc::from([route]),
            links: None,
        }
    }

    /// The delivery job alone: a primary channel that refuses for good ends its delivery
    /// failed, with the channel's words, and queues the route's fallback (not run by this job).
    #[tokio::test]
    async fn a_primary_refused_for_good_queues_the_routes_fallback() {
        let (_dir, store) = testing::sqlite().await;
        let tx = testing::transaction(ID, "AUTHORIZED", json!([]));
        let route = testing::route(&["mail"], &["post"]);
        let lease = testing::routed(store.as_ref(), &tx, &route).await;
        let mail = Arc::new(Recording {
            fails: Some((RetryClass::Permanent, "no such mailbox")),
            ..Recording::default()
        });
        let post = Arc::new(Recording::default());
        let channels = [("mail", &mail), ("post", &post)];
        let job = job(store, OneTransaction::new(tx), &channels, route);

        let delivered = job.attempt(&lease, None).await.expect("attempt");

        match delivered {
            Delivered::Ended(Finish::Failed(why)) => {
                assert!(why.contains("no such mailbox"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(*mail.sent.lock().expect("lock"), [lease.job.id.as_str()]);
        assert!(post.sent.lock().expect("lock").is_empty());
        let jobs = job.store.jobs(ID).await.expect("jobs");
        let fallback = jobs
            .iter()
            .find(|j| j.channel.as_deref() == Some("post"))
            .expect("the fallback queued");
        assert_eq!(
            (fallback.kind, fallback.role, fallback.state),
            (JobKind::Deliver, Some(Role::Fallback), JobState::Queued)
        );
    }

    /// A failure that leaves unknown whether the sink has the invoice ends the delivery dead,
    /// with what to do, and neither retries it nor queues the fallback.
    #[tokio::test]
    async fn an_outcome_the_sink_leaves_unknown_is_dead_lettered_without_the_fallback() {
        let (_dir, store) = testing::sqlite().await;
        let tx = testing::transaction(ID, "AUTHORIZED", json!([]));
        let route = testing::route(&["mail"], &["post"]);
        let lease = testing::routed(store.as_ref(), &tx, &route).await;
        let mail = Arc::new(Recording {
            // Temporary by its kind: the engine must not retry it all the same.
            fails: Some((RetryClass::Temporary, "HTTP 422 to a repeated key")),
            outcome_unknown: true,
            ..Recording::default()
        });
        let post = Arc::new(Recording::default());
        let channels = [("mail", &mail), ("post", &post)];
        let job = job(store, OneTransaction::new(tx), &channels, route);

        match job.attempt(&lease, None).await.expect("attempt") {
            Delivered::Ended(Finish::Unknown {
                error: why,
                reference: None,
            }) => {
                assert!(why.contains("HTTP 422 to a repeated key"), "{why}");
                assert!(why.contains("may already have this invoice"), "{why}");
                assert!(why.contains(&format!("postbud retry {ID}")), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let jobs = job.store.jobs(ID).await.expect("jobs");
        assert!(
            jobs.iter().all(|j| j.channel.as_deref() != Some("post")),
            "no fallback: {jobs:?}"
        );
        assert!(post.sent.lock().expect("lock").is_empty());
    }

    /// A failure after which the sink may have the invoice (it names the sink's id): retried,
    /// the id kept; giving up then, for a reason of the channel's or of the engine's, is for a
    /// person and never for the fallback.
    #[tokio::test]
    async fn a_failure_the_sink_may_have_taken_keeps_its_id_and_never_falls_back() {
        let (_dir, store) = testing::sqlite().await;
        let tx = testing::transaction(ID, "AUTHORIZED", json!([]));
        let route = testing::route(&["mail"], &["post"]);
        let lease = testing::routed(store.as_ref(), &tx, &route).await;
        let mail = Arc::new(Recording {
            fails: Some((
                RetryClass::Temporary,
                "the connection closed before an answer",
            )),
            reference: Some("guid-1"),
            ..Recording::default()
        });
        let refusing = Arc::new(Recording {
            fails: Some((RetryClass::Permanent, "no such participant")),
            reference: Some("guid-1"),
            ..Recording::default()
        });
        let post = Arc::new(Recording::default());
        let dintero = OneTransaction::new(tx);
        let retrying = job(
            Arc::clone(&store),
            Arc::clone(&dintero),
            &[("mail", &mail), ("post", &post)],
            route.clone(),
        );
        match retrying.attempt(&lease, None).await.expect("attempt") {
            Delivered::Ended(Finish::Retry { reference, .. }) => {
                assert_eq!(reference.as_deref(), Some("guid-1"))
            }
            other => panic!("{other:?}"),
        }

        // Refused for good this time: a person's, with the id, not the fallback's.
        let job = job(
            store,
            dintero,
            &[("mail", &refusing), ("post", &post)],
            route,
        );
        match job.attempt(&lease, None).await.expect("attempt") {
            Delivered::Ended(Finish::Unknown { error, reference }) => {
                assert_eq!(reference.as_deref(), Some("guid-1"));
                assert!(error.contains("no such participant"), "{error}");
            }
            other => panic!("{other:?}"),
        }

        // The engine's own give-up of a delivery an earlier attempt may have delivered: the
        // channel gone from the configuration.
        let mut marked = lease.clone();
        marked.job.outcome_unknown = true;
        marked.job.reference = Some("guid-1".into());
        marked.job.channel = Some("gone".into());
        match job.attempt(&marked, None).await.expect("attempt") {
            Delivered::Ended(Finish::Unknown { error, reference }) => {
                assert_eq!(reference.as_deref(), Some("guid-1"));
                assert!(
                    error.contains("may have reached the sink under guid-1"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        let jobs = job.store.jobs(ID).await.expect("jobs");
        assert!(
            jobs.iter().all(|j| j.channel.as_deref() != Some("post")),
            "no fallback: {jobs:?}"
        );
        assert!(post.sent.lock().expect("lock").is_empty());
    }

    /// A passing failure is retried later and sets off no fallback; a delivery that waited and
    /// finds the invoice voided at Dintero is not sent, ends itself, and says so to the flow.
    #[tokio::test]
    async fn a_passing_failure_retries_and_a_void_meanwhile_sends_nothing() {
        let (_dir, store) = testing::sqlite().await;
        let tx = testing::transaction(ID, "AUTHORIZED", json!([]));
        let mut route = testing::route(&["mail"], &["post"]);
        route.delay = Some(Duration::from_millis(1));
        let lease = testing::routed(store.as_ref(), &tx, &route).await;
        let mail = Arc::new(Recording {
            fails: Some((RetryClass::Temporary, "the server is busy")),
            ..Recording::default()
        });
        let post = Arc::new(Recording::default());
        let dintero = OneTransaction::new(tx);
        let job = job(
            store,
            Arc::clone(&dintero),
            &[("mail", &mail), ("post", &post)],
            route,
        );

        match job.attempt(&lease, None).await.expect("attempt") {
            Delivered::Ended(Finish::Retry { error, .. }) => assert!(error.contains("busy")),
            other => panic!("{other:?}"),
        }
        let jobs = job.store.jobs(ID).await.expect("jobs");
        assert!(
            jobs.iter().all(|j| j.role != Some(Role::Fallback)),
            "{jobs:?}"
        );

        dintero.show(testing::transaction(ID, "AUTHORIZATION_VOIDED", json!([])));
        let delivered = job.attempt(&lease, None).await.expect("attempt");

        assert!(
            matches!(delivered, Delivered::VoidedMeanwhile),
            "{delivered:?}"
        );
        assert_eq!(
            mail.sent.lock().expect("lock").len(),
            1,
            "sent once, before the void"
        );
        let delivery = job
            .store
            .job(&lease.job.id)
            .await
            .expect("read")
            .expect("job");
        assert_eq!(delivery.state, JobState::Failed);
        assert!(
            delivery
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("voided at Dintero"),
            "{delivery:?}"
        );
    }
}
