//! The dispatch job: it reads the transaction, decides whether the invoice is the merchant's to
//! deliver, keeps the PDF, captures once (the capture guard: [`capture::decide`]), reads the
//! invoice again after the capture and queues one delivery per channel of the route chosen.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::Notify;

use super::{
    Channels, Dispatcher, Reached, backoff,
    capture::{self, CaptureDecision},
    job::{Attempt, Handover, Routed},
};
use crate::store::{Dispatch, Role, Stage};
use crate::{
    config::{EngineSettings, Route},
    dintero::eligibility::{self, ChannelConfiguration, ChannelSource, Eligibility},
    dintero::model::Transaction,
    dintero::{CaptureOutcome, DinteroApi, DinteroError},
    links::LinkSigner,
    store::{
        ChosenRoute, Completion, Confirmation, DispatchPatch, Finish, JobKind, Lease, NewJob,
        ORIGIN_CREATED, ORIGIN_DECLARED, Store, StoreError, fmt_ms, now_ms,
    },
};
use postbud_channel::ids;
use postbud_channel::{ChannelError, Pdf, Reach, Recipient, RetryClass};

/// How the reason of a dispatch stopped by a capture Postbud did not make begins: the store's,
/// which adopts only a dispatch stopped for that reason.
pub use crate::store::COLLECTION_STARTED_ELSEWHERE;

/// How often and how long to re-read a transaction after a 202 capture before leaving the
/// confirmation to a later attempt.
const CONFIRM_POLLS: u32 = 5;
const CONFIRM_INTERVAL: Duration = Duration::from_millis(200);
/// A 202 capture is waited for this often (at the retry backoff) before it is dead-lettered.
const NOT_CAPTURED: &str = "capture not confirmed";

/// Whether an attempt may have captured this invoice already: the capture is recorded, or was
/// asked for, or Dintero shows one that may be Postbud's.
fn capture_started(tx: &Transaction, dispatch: Option<&Dispatch>) -> bool {
    dispatch.is_some_and(|d| {
        d.captured_at.is_some()
            || d.capture_request_id.is_some()
            || tx.capture_event().is_some_and(|e| may_be_ours(e, d))
    })
}

/// The buyer as a directory looks it up: the billing address's country, organisation number
/// and business name.
fn recipient_of(tx: &Transaction) -> Recipient {
    let mut recipient = Recipient::default();
    if let Some(billing) = &tx.billing_address {
        recipient.country = billing.country.clone();
        recipient.organization_number = billing.organization_number.clone();
        recipient.business_name = billing.business_name.clone();
    }
    recipient
}

/// The PDF as fetched before the capture, and whether the store keeps it already.
struct BeforeCapture {
    pdf: Pdf,
    kept: bool,
}

/// Where the capture step left the dispatch.
enum Capture {
    /// Collection has started; go on to delivery, with the record after the capture when this
    /// attempt is the one to write it.
    Started(Option<Confirmation>),
    /// Stop this attempt with this finish.
    Stop(Finish),
}

/// The dispatch job, with everything it reads and writes.
pub(crate) struct DispatchJob {
    /// Where the dispatch, its PDF and its deliveries are kept; the clock of its decisions.
    pub(crate) store: Arc<dyn Store>,
    /// Dintero: the transaction, its configuration, the PDF, the capture.
    pub(crate) gateway: Arc<dyn DinteroApi>,
    /// The merchant's eligibility rule, PDF and routing.
    pub(crate) dispatcher: Arc<dyn Dispatcher>,
    /// `[[routes]]`.
    pub(crate) routes: Arc<[Route]>,
    /// The channel instances, whose directories a route's `when.peppol` asks.
    pub(crate) channels: Arc<Channels>,
    /// The signer of the invoice link the channels get, when `server.public_url` is set.
    pub(crate) links: Option<LinkSigner>,
    /// The retry policy and the lease a delivery due now is taken with.
    pub(crate) settings: EngineSettings,
    /// How a failed attempt ends.
    pub(crate) retry: backoff::RetryPolicy,
    /// How long a capture sent and not answered is waited for before another may be sent:
    /// longer than the Dintero client waits for an answer.
    pub(crate) capture_grace: Duration,
    /// Wakes an idle worker for a transaction this job queues (under the id Dintero returns).
    pub(crate) wake: Arc<Notify>,
}

impl DispatchJob {
    /// The bookkeeping of a dispatch that ended for good outside its own code: the dispatch
    /// shows the reason.
    pub(super) async fn given_up(
        &self,
        lease: &Lease,
        finish: Finish,
    ) -> Result<Finish, StoreError> {
        if let Finish::Failed(reason) | Finish::Dead(reason) = &finish {
            self.mark_failed(lease, reason).await?;
        }
        Ok(finish)
    }

    /// Records the dispatch as failed for good, with the reason `status` shows.
    async fn mark_failed(&self, lease: &Lease, reason: &str) -> Result<(), StoreError> {
        let patch = DispatchPatch {
            stage: Some(Stage::Failed),
            reason: Some(Some(reason.to_owned())),
            ..DispatchPatch::default()
        };
        self.store.update_dispatch(lease, patch).await
    }

    async fn stop_failed(&self, lease: &Lease, reason: String) -> Result<Finish, StoreError> {
        self.mark_failed(lease, &reason).await?;
        Ok(Finish::Failed(reason))
    }

    /// A gateway error before capture: temporary ones retry; permanent ones (and retries run
    /// out) fail the dispatch, and nothing is captured or delivered.
    async fn gateway_failure(&self, lease: &Lease, e: DinteroError) -> Result<Finish, StoreError> {
        let finish = self
            .retry
            .after(lease, e.retry_class(), e.retry_after(), e.to_string());
        if let Finish::Failed(reason) | Finish::Dead(reason) = &finish {
            self.mark_failed(lease, reason).await?;
        }
        Ok(finish)
    }

    /// Asks the directory of each network the routes' `when` names about the buyer, for the
    /// routes whose other conditions the invoice meets (a B2C invoice does not wait on Peppol's
    /// lookup because a B2B route asks it).
    async fn reached(&self, tx: &Transaction) -> Result<Reached, ChannelError> {
        let facts = tx.route_facts();
        let mut networks: Vec<&str> = self
            .routes
            .iter()
            .filter(|r| r.when.matches_apart_from_networks(&facts))
            .flat_map(|r| r.when.networks())
            .collect();
        networks.sort_unstable();
        networks.dedup();
        let mut answers = BTreeMap::new();
        for network in networks {
            let reach = match self.channels.directory(network) {
                Some(directory) => directory.look_up(&recipient_of(tx)).await?,
                // `App::open` refuses such routes; an engine assembled by hand may not.
                None => Reach::Unreachable(format!(
                    "no configured channel looks up {network} participants"
                )),
            };
            answers.insert(network.to_owned(), reach);
        }
        Ok(Reached::new(answers))
    }

    /// A directory that could not answer: retried as its error says, nothing captured. When an
    /// earlier attempt captured already (its answers after the capture were lost), the invoice
    /// is collected and must reach someone: the lookup is retried whatever its error, and the
    /// reason says the invoice waits for its route.
    async fn directory_failure(
        &self,
        lease: &Lease,
        e: ChannelError,
        captured: bool,
    ) -> Result<Finish, StoreError> {
        let finish = if captured {
            self.retry.after(
                lease,
                RetryClass::Temporary,
                e.retry_after(),
                format!(
                    "the lookup before routing failed: {e}; the invoice was captured by an earlier attempt and waits for its route"
                ),
            )
        } else {
            self.retry.after(
                lease,
                e.retry_class(),
                e.retry_after(),
                format!("the lookup before routing failed: {e}; nothing was captured"),
            )
        };
        if let Finish::Failed(reason) | Finish::Dead(reason) = &finish {
            self.mark_failed(lease, reason).await?;
        }
        Ok(finish)
    }

    /// Dintero answered for this id with a transaction under another id (a server that is
    /// lenient about spelling). Everything is keyed by the id Dintero returns: that one is
    /// dispatched, this one does nothing.
    async fn alias(&self, lease: &Lease, real: &str) -> Result<Finish, StoreError> {
        let account = lease.job.transaction_id.split('.').next();
        let reason = match crate::dintero::transaction_id::check(real, account) {
            Ok(real) => {
                if self.store.submit(real).await? {
                    self.wake.notify_one();
                }
                format!(
                    "Dintero returns this transaction as {real}; it is dispatched under that id"
                )
            }
            Err(e) => format!("Dintero answered with another transaction: {e}"),
        };
        self.skip(lease, reason).await
    }

    /// Records the dispatch as not ours, with the reason `status` shows.
    async fn skip(&self, lease: &Lease, reason: String) -> Result<Finish, StoreError> {
        self.store
            .update_dispatch(
                lease,
                DispatchPatch {
                    stage: Some(Stage::Skipped),
                    reason: Some(Some(reason.clone())),
                    ..DispatchPatch::default()
                },
            )
            .await?;
        Ok(Finish::Skipped(reason))
    }

    /// Whether this invoice is ours: its number, its URL, and what decided it. Once Postbud has
    /// captured (or asked to), the decision stands: a later attempt only goes on, unless Dintero
    /// says the invoice was voided. A status that moved on (`CAPTURED` when the customer paid) or
    /// a configuration that changed must never strand an invoice whose collection started.
    async fn decide(
        &self,
        lease: &Lease,
        tx: &Transaction,
        dispatch: Option<&Dispatch>,
    ) -> Result<Result<(String, String, String), Finish>, StoreError> {
        let id = tx.id.as_str();
        // Asked for and shown by Dintero counts as recorded: an attempt may end between the
        // capture and its record (a lost response, a crash, the reads after the capture).
        let started = capture_started(tx, dispatch);
        let skip = |reason: String| async move { Ok(Err(self.skip(lease, reason).await?)) };
        let not_yet = |reason: String| async move {
            let e = DinteroError::temporary(format!("GET transaction {id}"), reason);
            Ok::<_, StoreError>(Err(self.gateway_failure(lease, e).await?))
        };
        if started {
            if tx.is_voided() {
                return skip("voided at Dintero after the capture: nothing is delivered".into())
                    .await;
            }
            return match (
                tx.metadata_str("kravia:invoice_number"),
                tx.metadata_str("kravia:invoice_url"),
            ) {
                (Some(number), Some(url)) => Ok(Ok((
                    number.to_owned(),
                    url.to_owned(),
                    "(decided before the capture)".to_owned(),
                ))),
                _ => not_yet("the invoice metadata is missing after capture".into()).await,
            };
        }
        let created_as_merchant = dispatch
            .and_then(|d| d.origin.as_deref())
            .is_some_and(|origin| [ORIGIN_CREATED, ORIGIN_DECLARED].contains(&origin));
        let configuration = match self.channel_configuration(tx, created_as_merchant).await {
            Ok(configuration) => configuration,
            Err(e) => {
                let e = e.map_message(|m| format!(
                    "{m}; without it Postbud cannot tell who sends this invoice, and nothing was captured"
                ));
                return Ok(Err(self.gateway_failure(lease, e).await?));
            }
        };
        match self.dispatcher.eligibility(tx, &configuration) {
            // A collection Postbud did not ask for (Postbud records its request before sending
            // it, so its own is `started` above): Kravia delivered the invoice, or another
            // system captured it. Delivering it too would be a second invoice for one debt.
            Eligibility::Eligible {
                invoice_number,
                invoice_url,
                decided_by,
            } => match tx.capture_event() {
                Some(event) => Ok(Err(self
                    .stop_failed(lease, started_elsewhere(id, event))
                    .await?)),
                None => Ok(Ok((
                    invoice_number,
                    invoice_url,
                    format!("from {decided_by}"),
                ))),
            },
            Eligibility::Skip(reason) => skip(reason).await,
            Eligibility::NotYet(reason) => not_yet(reason).await,
        }
    }

    /// One attempt at the dispatch job. A delivery due now comes back in [`Attempt::next`],
    /// leased to this worker with the invoice and route just stored, to run right after this
    /// attempt without another claim or a read.
    pub(super) async fn attempt(&self, lease: &Lease) -> Result<Attempt, StoreError> {
        let id = lease.job.transaction_id.as_str();
        let tx = match self.gateway.transaction(id).await {
            Ok(tx) => tx,
            Err(e) => return self.gateway_failure(lease, e).await.map(Attempt::from),
        };
        if tx.id != id {
            return self.alias(lease, &tx.id).await.map(Attempt::from);
        }
        // Read once (by the claim, where the store does) for both the decision and the capture:
        // only this attempt's lease writes what they look at, and a writer that fences it out
        // makes this attempt's next write fail.
        let dispatch = match &lease.dispatch {
            Some(claimed) => Some(claimed.clone()),
            None => self.store.dispatch(id).await?,
        };
        let (invoice_number, invoice_url, decided) =
            match self.decide(lease, &tx, dispatch.as_ref()).await? {
                Ok(decision) => decision,
                Err(finish) => return Ok(finish.into()),
            };
        // Route before capture: collection must not start for an invoice nobody will deliver.
        // A directory that cannot answer now (a lookup that timed out, an SMP answer whose
        // signature fails) is retried: routing on a guess could send the invoice the wrong way.
        let captured = capture_started(&tx, dispatch.as_ref());
        let reached = match self.reached(&tx).await {
            Ok(reached) => reached,
            Err(e) => {
                return self
                    .directory_failure(lease, e, captured)
                    .await
                    .map(Attempt::from);
            }
        };
        let Some(route) = self.dispatcher.route(&self.routes, &tx, &reached) else {
            return self
                .stop_failed(
                    lease,
                    format!(
                        "no route matches this invoice ({}, {}, country {}{}): add a [[routes]] entry; {}",
                        tx.payment_product_type,
                        tx.currency,
                        tx.billing_address.as_ref().and_then(|a| a.country.as_deref()).unwrap_or("unknown"),
                        reached.summary().map(|s| format!("; {s}")).unwrap_or_default(),
                        if captured {
                            "the invoice was captured by an earlier attempt and is not delivered"
                        } else {
                            "nothing was captured"
                        }
                    ),
                )
                .await
                .map(Attempt::from);
        };
        let before = match self.pdf(lease, &tx, &invoice_number, &invoice_url).await? {
            Ok(before) => before,
            Err(e) => {
                let e = e.map_message(|m| format!("{m}; nothing was captured"));
                return self.gateway_failure(lease, e).await.map(Attempt::from);
            }
        };
        let mut confirmation = match self.capture(lease, &tx, dispatch.as_ref(), &before).await? {
            Capture::Started(confirmation) => confirmation,
            Capture::Stop(finish) => return Ok(finish.into()),
        };
        let (tx, invoice_number, final_pdf) = match self
            .read_after_capture(lease, &invoice_number, &invoice_url, &mut confirmation)
            .await?
        {
            Ok(found) => found,
            Err(finish) => return Ok(finish.into()),
        };
        let pdf = before.pdf;
        let pdf_note = if final_pdf.sha256 == pdf.sha256 {
            format!(
                "PDF after capture sha256 {} (the same as before capture)",
                final_pdf.sha256
            )
        } else {
            format!(
                "PDF after capture sha256 {} differs from sha256 {} fetched before capture: the post-capture PDF is delivered",
                final_pdf.sha256, pdf.sha256
            )
        };
        let mut invoice = crate::dintero::invoice_of(&tx, &invoice_number, final_pdf);
        invoice.link = self.links.as_ref().map(|l| l.link(id));
        let route_cfg = &self.routes[route];
        let mut due = self.store.now() + route_cfg.delay.map_or(0, |d| d.as_millis() as i64);
        if let Some(window) = &route_cfg.window {
            due = backoff::window_open(window, due);
        }
        let jobs: Vec<NewJob> = route_cfg
            .deliver
            .iter()
            .map(|channel| NewJob {
                id: ids::delivery_id(id, channel),
                kind: JobKind::Deliver,
                channel: channel.clone(),
                role: Role::Primary,
                next_at: due,
            })
            .collect();
        let detail = format!(
            "invoice {invoice_number} captured; {pdf_note}; queued for {}{}; invoice channel `merchant` {decided}",
            route_cfg.deliver.join(", "),
            reached
                .summary()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
        let chosen = ChosenRoute {
            index: route,
            snapshot: serde_json::to_string(route_cfg).map_err(|e| {
                StoreError::new(
                    crate::store::StoreErrorKind::Invalid,
                    format!("the route could not be recorded: {e}"),
                )
            })?,
        };
        let leased = self
            .store
            .complete_dispatch(
                lease,
                &Completion {
                    invoice: &invoice,
                    route: &chosen,
                    jobs: &jobs,
                    detail: &detail,
                    lease_first_due: Some(self.settings.lease),
                    confirmation: confirmation.as_ref(),
                },
            )
            .await?;
        let next = leased.map(|lease| Handover {
            lease,
            routed: Some(Routed {
                invoice,
                route: route_cfg.clone(),
            }),
        });
        Ok(Attempt {
            finish: Finish::Recorded,
            next,
        })
    }

    /// Dintero's order is capture, then retrieve: the transaction is read again and the PDF
    /// fetched again, and those are what every channel delivers. Collection has started, so a
    /// failure here is retried (and dead-lettered, visibly, when retries run out); the capture is
    /// never repeated, because the next attempt finds its event. On a failure the record after
    /// the capture (`confirmation`) is written here; otherwise it goes with the routing.
    async fn read_after_capture(
        &self,
        lease: &Lease,
        number: &str,
        url: &str,
        confirmation: &mut Option<Confirmation>,
    ) -> Result<Result<(Transaction, String, Pdf), Finish>, StoreError> {
        let id = lease.job.transaction_id.as_str();
        let fetched = match self.gateway.transaction(id).await {
            Ok(tx) => {
                let number = tx
                    .metadata_str("kravia:invoice_number")
                    .unwrap_or(number)
                    .to_owned();
                let url = tx
                    .metadata_str("kravia:invoice_url")
                    .unwrap_or(url)
                    .to_owned();
                self.dispatcher
                    .document(self.gateway.as_ref(), &tx, &number, &url)
                    .await
                    .map(|pdf| (tx, number, pdf))
            }
            Err(e) => Err(e),
        };
        match fetched {
            Ok(found) => Ok(Ok(found)),
            Err(e) => {
                if let Some(confirmation) = confirmation.take() {
                    self.store
                        .update_dispatch(lease, confirmation.patch())
                        .await?;
                }
                let error = format!(
                    "captured, but reading the invoice after capture failed: {e}; retried, never captured again"
                );
                let finish = self
                    .retry
                    .after(lease, RetryClass::Temporary, e.retry_after(), error);
                if let Finish::Dead(reason) = &finish {
                    self.mark_failed(lease, reason).await?;
                }
                Ok(Err(finish))
            }
        }
    }

    /// The levels of configuration below the session that decide who sends the invoice, read
    /// only when the levels above say nothing (the account's is cached by the gateway).
    async fn channel_configuration(
        &self,
        tx: &Transaction,
        created_as_merchant: bool,
    ) -> Result<ChannelConfiguration, DinteroError> {
        let mut configuration = ChannelConfiguration {
            created_as_merchant,
            ..ChannelConfiguration::default()
        };
        if created_as_merchant
            || tx.payment_product != "kravia"
            || eligibility::session_level(tx).is_some()
        {
            return Ok(configuration);
        }
        if let Some(profile_id) = tx.metadata_str("session:profile_id") {
            configuration.profile = self.gateway.payment_profile(profile_id).await?;
            if eligibility::resolve_channel(tx, &configuration).source != ChannelSource::Default {
                return Ok(configuration);
            }
        }
        configuration.checkout = self.gateway.checkout_configuration().await?;
        Ok(configuration)
    }

    /// The kept PDF, or a freshly fetched one that [`Self::capture`] keeps before the capture.
    async fn pdf(
        &self,
        lease: &Lease,
        tx: &Transaction,
        number: &str,
        url: &str,
    ) -> Result<Result<BeforeCapture, DinteroError>, StoreError> {
        // A first attempt has nothing kept to look for. Were it wrong (an operator's retry
        // starts the count again), the copy kept before stays kept, and this attempt compares
        // the PDF after capture with the one it fetched now.
        if lease.job.attempts > 1
            && let Some(pdf) = self.store.document(&tx.id).await?
        {
            return Ok(Ok(BeforeCapture { pdf, kept: true }));
        }
        Ok(self
            .dispatcher
            .document(self.gateway.as_ref(), tx, number, url)
            .await
            .map(|pdf| BeforeCapture { pdf, kept: false }))
    }

    /// Captures once. Dintero has no idempotency key, so the transaction's events decide:
    /// a successful `INITIATE_CAPTURE`/`CAPTURE` means collection started, whoever asked.
    /// The PDF fetched `before` is kept first: in the capture's own record when one is sent.
    async fn capture(
        &self,
        lease: &Lease,
        tx: &Transaction,
        dispatch: Option<&Dispatch>,
        before: &BeforeCapture,
    ) -> Result<Capture, StoreError> {
        let id = tx.id.as_str();
        let decision = capture::decide(tx, dispatch, self.store.now(), self.capture_grace);
        let keep = (!before.kept).then(|| before.pdf.clone());
        if let Some(pdf) = &keep
            && !matches!(decision, CaptureDecision::Capture { .. })
        {
            self.store.save_document(lease, pdf).await?;
        }
        let (request, lines) = match decision {
            CaptureDecision::Started { record } => {
                let confirmation =
                    record.map(|(event, reference)| confirmed(&event, reference.as_deref()));
                return Ok(Capture::Started(confirmation));
            }
            CaptureDecision::Refused(reason) => {
                return Ok(Capture::Stop(self.stop_failed(lease, reason).await?));
            }
            CaptureDecision::Waiting { request_id } => {
                let finish = self.retry.after(lease, RetryClass::Temporary, None, format!("{NOT_CAPTURED}: capture accepted (202, request {request_id}), waiting for INITIATE_CAPTURE"));
                return Ok(Capture::Stop(finish));
            }
            CaptureDecision::Undecided => {
                let finish = self.retry.after(
                    lease,
                    RetryClass::Temporary,
                    None,
                    format!("{NOT_CAPTURED}: Dintero shows a capture event without `success`; collection may have started, so nothing is sent until Dintero says"),
                );
                return Ok(Capture::Stop(finish));
            }
            // Waited for at once, not by the retry backoff (whose ceiling may be shorter) and
            // not until attempts run out: one more attempt, when the grace is over.
            CaptureDecision::InFlight {
                requested_at,
                until,
            } => {
                let detail = format!(
                    "capture requested at {} and not answered; Dintero shows no capture yet and may still apply it, so none is sent before {} ({}s after the request: three times the Dintero client's timeout); Dintero's events are read again then",
                    fmt_ms(requested_at),
                    fmt_ms(until),
                    self.capture_grace.as_secs()
                );
                self.store
                    .record(&crate::store::HistoryLine {
                        transaction_id: id,
                        job_id: Some(&lease.job.id),
                        event: "capture in flight",
                        detail: &detail,
                    })
                    .await?;
                // The attempt is given back: waiting out the grace must never use up the
                // attempts of an invoice whose capture may be landing.
                return Ok(Capture::Stop(Finish::Postpone(until)));
            }
            CaptureDecision::Capture { request, lines } => (request, lines),
        };
        // Recorded before it is sent: this record is how a later attempt knows the capture
        // Dintero shows is Postbud's own, even when this attempt never hears the answer.
        let reference = request.capture_reference.clone().unwrap_or_default();
        let sent_reference = match &request.capture_reference {
            Some(r) => format!("capture_reference {r}"),
            None => "no capture_reference (the transaction has no merchant reference)".to_owned(),
        };
        self.store
            .update_dispatch(
                lease,
                DispatchPatch {
                    stage: Some(Stage::Capturing),
                    capture_reference: Some(Some(reference.clone())),
                    document: keep,
                    note: Some((
                        "capture requested",
                        format!(
                            "amount {} {}, {sent_reference}, {lines}",
                            tx.amount, tx.currency
                        ),
                    )),
                    ..DispatchPatch::default()
                },
            )
            .await?;
        match self.gateway.capture(id, &request).await {
            Ok(CaptureOutcome::Done(after)) => self.after_capture(lease, &after).await,
            Ok(CaptureOutcome::Accepted { request_id }) => {
                let request_id =
                    request_id.unwrap_or_else(|| format!("capture of {id} (no event-request-id)"));
                self.store
                    .update_dispatch(
                        lease,
                        DispatchPatch {
                            capture_request_id: Some(Some(request_id.clone())),
                            note: Some((
                                "capture accepted",
                                format!("202, event-request-id {request_id}"),
                            )),
                            ..DispatchPatch::default()
                        },
                    )
                    .await?;
                for _ in 0..CONFIRM_POLLS {
                    tokio::time::sleep(CONFIRM_INTERVAL).await;
                    if let Ok(now) = self.gateway.transaction(id).await
                        && (now.capture_event().is_some()
                            || now
                                .completing_event(&request_id, &capture::CAPTURE_EVENTS)
                                .is_some())
                    {
                        return self.after_capture(lease, &now).await;
                    }
                }
                let finish = self.retry.after(lease, RetryClass::Temporary, None, format!("{NOT_CAPTURED}: capture accepted (202, request {request_id}), waiting for INITIATE_CAPTURE"));
                Ok(Capture::Stop(finish))
            }
            Err(e) if e.retry_class() == RetryClass::Permanent => {
                // Refused, perhaps because collection has already started: what Dintero shows
                // decides. A capture it shows is Postbud's own only if an earlier attempt asked
                // for one (its answer lost, now "beyond the authorised amount"); if this was the
                // first request, someone else started collection meanwhile.
                let earlier = dispatch.filter(|d| d.capture_reference.is_some());
                match self.gateway.transaction(id).await {
                    Ok(now) => match now.capture_event() {
                        Some(event) if earlier.is_some_and(|d| may_be_ours(event, d)) => {
                            self.after_capture(lease, &now).await
                        }
                        Some(event) => {
                            let reason = started_elsewhere(id, event);
                            self.store
                                .update_dispatch(
                                    lease,
                                    DispatchPatch {
                                        capture_reference: Some(None),
                                        ..DispatchPatch::default()
                                    },
                                )
                                .await?;
                            Ok(Capture::Stop(self.stop_failed(lease, reason).await?))
                        }
                        // Refused, and an earlier request of Postbud's is not shown yet: it may
                        // be what the refusal is about. Read again rather than give up.
                        None if earlier.is_some() => Ok(Capture::Stop(self.retry.after(
                            lease,
                            RetryClass::Temporary,
                            None,
                            format!("capture refused ({e}) after an earlier request of Postbud's whose outcome Dintero does not show yet; read again before anything is sent"),
                        ))),
                        None => {
                            let reason =
                                format!("capture failed permanently, nothing will be delivered: {e}");
                            Ok(Capture::Stop(self.stop_failed(lease, reason).await?))
                        }
                    },
                    // Whether it was captured is unknown: read again before anything else.
                    Err(read) => Ok(Capture::Stop(self.retry.after(
                        lease,
                        RetryClass::Temporary,
                        read.retry_after(),
                        format!("capture refused ({e}), and reading the transaction after it failed ({read}); Dintero is read again before anything is sent"),
                    ))),
                }
            }
            // Refused before it was applied: nothing is in flight, so the next attempt need not
            // wait out the grace.
            Err(e) if e.status() == Some(429) => {
                self.store
                    .update_dispatch(
                        lease,
                        DispatchPatch {
                            stage: Some(Stage::New),
                            capture_reference: Some(None),
                            note: Some((
                                "capture refused",
                                format!("{e}: Dintero refused it before applying it; retried"),
                            )),
                            ..DispatchPatch::default()
                        },
                    )
                    .await?;
                Ok(Capture::Stop(self.retry.after(
                    lease,
                    e.retry_class(),
                    e.retry_after(),
                    e.to_string(),
                )))
            }
            // Unknown outcome (timeout, 5xx, 409): the next attempt re-reads the events before
            // any repeat, and sends none within the grace, so a capture that did land (even
            // late) is never made twice.
            Err(e) => Ok(Capture::Stop(self.retry.after(
                lease,
                e.retry_class(),
                e.retry_after(),
                e.to_string(),
            ))),
        }
    }

    async fn after_capture(&self, lease: &Lease, tx: &Transaction) -> Result<Capture, StoreError> {
        if let Some(event) = tx.capture_event() {
            return Ok(Capture::Started(Some(confirmed(
                event.event.as_str(),
                event.event_reference.as_deref(),
            ))));
        }
        // The newest capture event answers this capture; an older refusal says nothing of it.
        let refused = tx
            .events
            .iter()
            .rev()
            .find(|e| e.is_capture())
            .filter(|e| e.failed());
        if let Some(event) = refused {
            let reason = format!(
                "capture was refused by Dintero: {}",
                event
                    .error
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            );
            return Ok(Capture::Stop(self.stop_failed(lease, reason).await?));
        }
        let finish = self.retry.after(
            lease,
            RetryClass::Temporary,
            None,
            format!("{NOT_CAPTURED}: the capture response has no INITIATE_CAPTURE event yet"),
        );
        Ok(Capture::Stop(finish))
    }
}

/// Whether a capture `event` Dintero shows may be the one `dispatch` asked for: a request was
/// recorded, and the event does not carry another reference than the one sent.
fn may_be_ours(event: &crate::dintero::model::Event, dispatch: &Dispatch) -> bool {
    match (
        dispatch.capture_reference.as_deref(),
        event.event_reference.as_deref(),
    ) {
        (None, _) => false,
        (Some(sent), Some(shown)) if !sent.is_empty() => sent == shown,
        _ => true,
    }
}

/// Why a dispatch stops when Dintero shows a collection Postbud did not start.
fn started_elsewhere(id: &str, event: &crate::dintero::model::Event) -> String {
    format!(
        "{COLLECTION_STARTED_ELSEWHERE}: Dintero shows a successful {} (event_reference {}) that Postbud never asked for; Kravia may have delivered this invoice itself, so Postbud delivered nothing. If the customer does not have it: `postbud deliver --adopt-capture {id}`",
        event.event,
        event.event_reference.as_deref().unwrap_or("none"),
    )
}

/// The record after a capture whose `event` (with our `reference`) Dintero shows.
fn confirmed(event: &str, reference: Option<&str>) -> Confirmation {
    Confirmation {
        captured_at: now_ms(),
        detail: format!(
            "{event} event present (capture_reference {})",
            reference.unwrap_or("none")
        ),
    }
}

#[cfg(test)]
mod tests {
    use postbud_sandbox::{Sandbox, SandboxConfig, Seed};

    use super::*;
    use crate::{
        dintero::DinteroClient,
        engine::{DefaultDispatcher, testing},
    };

    /// The dispatch job alone against the sandbox: one attempt captures once, keeps the invoice
    /// and hands the delivery due now to this worker with exactly what it stored.
    #[tokio::test]
    async fn a_dispatch_captures_once_and_hands_over_the_delivery_due_now() {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .expect("sandbox");
        let id = sandbox.seed(Seed::default());
        let (dir, store) = testing::sqlite().await;
        let toml = format!(
            "{}\n[channels.archive]\nkind = \"folder\"\npath = \"{}/invoices\"\n\n[[routes]]\ndeliver = [\"archive\"]\n",
            sandbox.dintero_toml(),
            dir.path().display()
        );
        let settings = crate::Settings::from_toml(&toml).expect("settings");
        let dintero = settings.require_dintero().expect("dintero").clone();
        let job = DispatchJob {
            retry: backoff::RetryPolicy::new(testing::settings(), Arc::clone(&store)),
            store: Arc::clone(&store),
            gateway: Arc::new(DinteroClient::new(dintero).expect("client")),
            dispatcher: Arc::new(DefaultDispatcher),
            routes: settings.routes.clone().into(),
            channels: Arc::default(),
            links: None,
            settings: testing::settings(),
            capture_grace: Duration::from_secs(6),
            wake: Arc::new(Notify::new()),
        };
        store.submit(&id).await.expect("submit");
        let lease = testing::claim(store.as_ref(), &id).await.expect("lease");

        let attempt = job.attempt(&lease).await.expect("attempt");

        assert!(
            matches!(attempt.finish, Finish::Recorded),
            "{:?}",
            attempt.finish
        );
        assert_eq!(sandbox.captures(&id), 1);
        let next = attempt.next.expect("the delivery due now, handed over");
        assert_eq!(next.lease.job.kind, JobKind::Deliver);
        assert_eq!(next.lease.job.channel.as_deref(), Some("archive"));
        let routed = next.routed.expect("what the dispatch stored");
        assert_eq!(routed.route.deliver, ["archive"]);
        let stored = store.invoice(&id).await.expect("read").expect("kept");
        assert_eq!(routed.invoice.pdf.sha256, stored.pdf.sha256);
        let dispatch = store.dispatch(&id).await.expect("read").expect("dispatch");
        assert!(dispatch.captured_at.is_some(), "{dispatch:?}");
        // Nothing else is due: the delivery is this worker's already.
        assert!(testing::claim(store.as_ref(), &id).await.is_none());
    }
}
