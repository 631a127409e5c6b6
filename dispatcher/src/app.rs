//! Everything wired together: configuration, registry, Dintero, store, engine.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::store::Stage;
use postbud_channel::{Channel, ChannelError, DuplicateKind, Evidence, InboundReport, Registry};

use crate::{
    config::{ConfigError, Settings},
    dintero::{DinteroApi, DinteroError, VoidOutcome},
    dintero::{
        DinteroClient,
        model::Transaction,
        transaction_id::{self, InvalidTransactionId},
    },
    engine::{DefaultDispatcher, Dispatcher, Engine, Outcome},
    limit::TokenBucket,
    links::LinkSigner,
    store::{Store, StoreError},
};

/// Why the application could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two crates claim one channel kind.
    #[error(transparent)]
    Registry(#[from] DuplicateKind),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Dintero refused or could not be reached.
    #[error("Dintero: {0}")]
    Dintero(#[from] DinteroError),
    /// A transaction id that is not a Dintero id of this account.
    #[error(transparent)]
    InvalidId(#[from] InvalidTransactionId),
    /// Dintero does not know the transaction (404): nothing was recorded.
    #[error("Dintero does not know transaction {0}: nothing was recorded")]
    UnknownTransaction(String),
    /// Dintero refused the void (or reported it failed): nothing was cancelled.
    #[error("Dintero refused the void: {0}; nothing was cancelled and no notice was sent")]
    VoidRefused(String),
    /// `declare_merchant_initiated` on a transaction whose own configuration says who sends it.
    #[error("{0}")]
    NotMerchantInitiated(String),
    /// `adopt_capture` on a transaction with no capture to adopt, or not stopped by one.
    #[error("{0}")]
    NothingToAdopt(String),
    /// Too many unverified callbacks for new transactions: try again after this long.
    #[error("too many unverified callbacks for new transactions; try again in {0:?}")]
    Busy(Duration),
}

/// A running Postbud: what `postbud serve` and `postbud deliver` use, and what a merchant
/// service links.
///
/// One call runs a deployment with every guarantee `postbud serve` gives, since it is what
/// `postbud serve` calls: [`App::serve`] runs the workers, the reconcile sweep, the retention
/// pass and the HTTP routes (Dintero's callbacks, invoice links, `/healthz`, `/metrics`) until
/// a shutdown signal, then drains. A service with an HTTP server of its own mounts
/// [`crate::server::router`] in it and calls [`App::run`] for the rest. [`App::submit`] alone
/// only queues work: nothing is captured or delivered unless one of them runs.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    engine: Arc<Engine>,
    gateway: Arc<dyn DinteroApi>,
    links: Option<LinkSigner>,
    /// Reads of Dintero for unsigned callbacks that may announce a new invoice.
    unverified: TokenBucket,
    /// Reads of Dintero for every other unsigned hint (a void): a budget of its own, so a flood
    /// of them never holds back a new invoice's callback.
    unverified_hints: TokenBucket,
}

/// Replaces parts of the default assembly.
#[derive(Debug)]
pub struct AppBuilder {
    settings: Settings,
    registry: Option<Registry>,
    dispatcher: Arc<dyn Dispatcher>,
    gateway: Option<Arc<dyn DinteroApi>>,
    existing_store: bool,
    clock_skew_ms: i64,
}

impl AppBuilder {
    /// Adds the channel kinds of `registry` to those [`Registry::discover`] finds. A kind
    /// declared with [`crate::register_channel!`] in a crate the binary names is discovered; a
    /// crate that is linked but never named in the code may be dropped by the linker, and its
    /// `register(&mut registry)` adds it here:
    ///
    /// ```no_run
    /// # mod postbud_email { pub fn register(_: &mut postbud::Registry) -> Result<(), postbud::DuplicateKind> { Ok(()) } }
    /// # async fn run(settings: postbud::Settings) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut registry = postbud::Registry::discover()?;
    /// postbud_email::register(&mut registry)?;
    /// let app = postbud::App::builder(&settings).registry(registry).open().await?;
    /// # Ok(()) }
    /// ```
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Replace steps of the flow.
    pub fn dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.dispatcher = dispatcher;
        self
    }

    /// Refuse to start when the store does not exist yet, instead of creating it (for
    /// operators' commands that act on what is there).
    pub fn existing_store(mut self) -> Self {
        self.existing_store = true;
        self
    }

    /// Play a host whose clock is `ms` milliseconds ahead (behind, when negative) of the true
    /// time: what a store must correct for (tests of several instances on one database).
    #[cfg(feature = "unstable-internals")]
    pub fn clock_skew_ms(mut self, ms: i64) -> Self {
        self.clock_skew_ms = ms;
        self
    }

    /// Talk to this implementation of Dintero's API instead of the HTTP client (a test's
    /// Dintero that misbehaves on purpose).
    pub fn dintero(mut self, gateway: Arc<dyn DinteroApi>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Opens the store, builds every channel and assembles the engine.
    pub async fn open(self) -> Result<App, AppError> {
        let settings = self.settings;
        let mut registry = Registry::discover()?;
        for factory in self.registry.iter().flat_map(Registry::factories) {
            registry.add(factory)?;
        }
        registry.add(&crate::folder::FACTORY)?;
        let channels: BTreeMap<String, Arc<dyn Channel>> = registry.build_all(&settings)?;
        check_directories(&settings, &channels)?;
        let gateway: Arc<dyn DinteroApi> = match self.gateway {
            Some(g) => g,
            None => Arc::new(DinteroClient::new(settings.require_dintero()?.clone())?),
        };
        let url = settings.store_url();
        let skew = self.clock_skew_ms;
        let local: crate::store::clock::LocalClock =
            Arc::new(move || crate::store::now_ms().saturating_add(skew));
        let store: Arc<dyn Store> = if self.existing_store {
            crate::store::open_existing(&url, local).await?
        } else {
            crate::store::open_with_clock(&url, local).await?
        };
        let links = match &settings.server.public_url {
            Some(base) => {
                let key = match &settings.server.link_secret {
                    Some(key) => key.clone(),
                    None => {
                        SecretString::from(store.meta_init("link_secret", &random_key()).await?)
                    }
                };
                Some(LinkSigner::new(key, base.clone(), settings.server.link_ttl))
            }
            None => None,
        };
        let mut engine = Engine::new(
            store,
            Arc::clone(&gateway),
            channels,
            settings.routes.clone(),
            settings.engine.clone(),
            links.clone(),
            self.dispatcher,
        );
        if let Some(dintero) = &settings.dintero {
            engine = engine.with_capture_grace(dintero.timeout);
        }
        let engine = Arc::new(engine);
        let rate = settings.server.unverified_per_second;
        Ok(App {
            settings,
            engine,
            gateway,
            links,
            unverified: TokenBucket::new(rate, rate),
            unverified_hints: TokenBucket::new(rate, rate),
        })
    }
}

fn random_key() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source is available");
    hex::encode(key)
}

/// The invoice `create_invoice` made, or found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreatedInvoice {
    /// The transaction as Dintero returned it.
    pub transaction: Transaction,
    /// True when Dintero refused a second invoice for the merchant reference and this is the one
    /// an earlier run created.
    pub existing: bool,
}

/// What a void did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VoidReport {
    /// Status at Dintero afterwards.
    pub status: String,
    /// Whether Dintero had it voided already (no call was made).
    pub already_voided: bool,
    /// Dintero accepted the void (202) without confirming it in time: a job waits for the
    /// confirmation, and nothing was stopped yet.
    pub pending: bool,
    /// The outcome of the cancellation notices.
    pub outcome: Outcome,
}

impl App {
    /// The default assembly: the channel kinds [`Registry::discover`] finds (and those of
    /// [`AppBuilder::registry`]), [`DefaultDispatcher`], Dintero.
    pub fn builder(settings: &Settings) -> AppBuilder {
        AppBuilder {
            settings: settings.clone(),
            registry: None,
            dispatcher: Arc::new(DefaultDispatcher),
            gateway: None,
            existing_store: false,
            clock_skew_ms: 0,
        }
    }

    /// [`App::builder`] with no replacements.
    pub async fn open(settings: &Settings) -> Result<Self, AppError> {
        Self::builder(settings).open().await
    }

    /// The configuration.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The outbox; writes to it bypass the engine's rules. Public with the feature `unstable-internals` only (this workspace's tests).
    #[cfg(feature = "unstable-internals")]
    #[doc(hidden)]
    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }

    #[cfg(not(feature = "unstable-internals"))]
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }

    /// This app's figures: what `/metrics` answers.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.engine.metrics()
    }

    /// The engine. Public with the feature `unstable-internals` only (this workspace's tests).
    #[cfg(feature = "unstable-internals")]
    #[doc(hidden)]
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    #[cfg(not(feature = "unstable-internals"))]
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Dintero's API as the engine calls it.
    pub fn dintero(&self) -> &Arc<dyn DinteroApi> {
        &self.gateway
    }

    /// The signer of invoice links and report URLs, when `server.public_url` is set: for a
    /// merchant's own message that links the PDF `postbud serve` serves.
    pub fn links(&self) -> Option<&LinkSigner> {
        self.links.as_ref()
    }

    /// Checks a transaction id where it enters: Dintero's shape, bounded length, and the account
    /// of `dintero.account_id` (see [`transaction_id::check`]).
    pub fn transaction_id<'a>(&self, raw: &'a str) -> Result<&'a str, InvalidTransactionId> {
        let account = self
            .settings
            .dintero
            .as_ref()
            .map(|d| d.account_id.as_str());
        transaction_id::check(raw, account)
    }

    /// Queues a transaction for capture and delivery by the workers. Returns true when work was
    /// queued (false: it was known and is being handled, or was finished).
    pub async fn submit(&self, transaction_id: &str) -> Result<bool, AppError> {
        let id = self.transaction_id(transaction_id)?;
        Ok(self.engine.submit(id).await?)
    }

    /// Queues a transaction named by a caller that could not be authenticated (an unsigned
    /// callback). A transaction already known costs nothing more than [`App::submit`]. A new one
    /// is read at Dintero first, within `server.unverified_per_second`, and queued under the id
    /// Dintero returns, so a flood of made-up ids stores nothing and calls Dintero at a bounded
    /// rate.
    pub async fn submit_unverified(&self, transaction_id: &str) -> Result<bool, AppError> {
        let id = self.transaction_id(transaction_id)?;
        match self.store().dispatch(id).await? {
            // Known and being handled: a repeat costs one read of the store.
            Some(d) if d.stage != Stage::Skipped => return Ok(self.engine.submit(id).await?),
            // A skipped one is looked at again, which reads Dintero: within the limit.
            Some(_) => {
                self.unverified.try_acquire().map_err(AppError::Busy)?;
                return Ok(self.engine.submit(id).await?);
            }
            None => {}
        }
        self.unverified.try_acquire().map_err(AppError::Busy)?;
        let tx = self.gateway.transaction(id).await?;
        let id = self.transaction_id(&tx.id)?;
        Ok(self.engine.submit(id).await?)
    }

    /// Dintero says the transaction was voided (a callback with `event=VOID`, a
    /// `checkout_transaction` webhook): it is read again to be sure, then its pending deliveries
    /// stop and cancellation notices go out, as after `postbud void`. Returns true when that
    /// happened now. `trusted` is false for a hint nobody signed: it is read within
    /// `server.unverified_per_second`, a budget apart from the one for new invoices.
    pub async fn voided_elsewhere(
        &self,
        transaction_id: &str,
        trusted: bool,
    ) -> Result<bool, AppError> {
        let id = self.transaction_id(transaction_id)?;
        if self
            .store()
            .dispatch(id)
            .await?
            .is_none_or(|d| d.stage == Stage::Voided)
        {
            // Nothing of ours is pending for it.
            return Ok(false);
        }
        if !trusted {
            self.unverified_hints
                .try_acquire()
                .map_err(AppError::Busy)?;
        }
        let tx = self.gateway.transaction(id).await?;
        let id = self.transaction_id(&tx.id)?;
        if !tx.is_voided() {
            return Ok(false);
        }
        self.engine.voided(id).await?;
        Ok(true)
    }

    /// The transaction at Dintero; a 404 is [`AppError::UnknownTransaction`].
    async fn read(&self, id: &str) -> Result<Transaction, AppError> {
        match self.gateway.transaction(id).await {
            Ok(tx) => Ok(tx),
            Err(e) if e.status() == Some(404) => Err(AppError::UnknownTransaction(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the flow for one transaction now, waiting up to 30 s for short retries.
    pub async fn deliver_now(&self, transaction_id: &str) -> Result<Outcome, AppError> {
        self.deliver_waiting(transaction_id, Duration::from_secs(30))
            .await
    }

    /// Runs the flow for one transaction now, waiting up to `wait` for retries that come due.
    pub async fn deliver_waiting(
        &self,
        transaction_id: &str,
        wait: Duration,
    ) -> Result<Outcome, AppError> {
        let id = self.transaction_id(transaction_id)?;
        // An id Dintero does not know becomes no record (a typo must not leave a failed
        // dispatch behind); a known one goes straight on.
        if self.store().dispatch(id).await?.is_none() {
            // Anything but a 404 (Dintero busy, a timeout) is the dispatch's to retry.
            if let Err(unknown @ AppError::UnknownTransaction(_)) = self.read(id).await {
                return Err(unknown);
            }
        }
        Ok(self.engine.deliver_now(id, wait).await?)
    }

    /// Declares a transaction the merchant's own system created with `POST /v1/sessions/pay`
    /// and `invoice_channel: "merchant"` (or `invoice_delivery_method`), then runs the flow as
    /// [`App::deliver_waiting`] does. Dintero does not echo the payment level back, so Postbud
    /// cannot tell such an invoice from one whose channel resolves to Dintero's default
    /// (Kravia's); this records the payment level for it. A transaction from a checkout session
    /// or a payment profile is refused: its own configuration decides. Collection started by
    /// anyone but Postbud still stops the delivery (see [`App::adopt_capture`]).
    pub async fn declare_merchant_initiated(
        &self,
        transaction_id: &str,
        wait: Duration,
    ) -> Result<Outcome, AppError> {
        let tx = self.read(self.transaction_id(transaction_id)?).await?;
        let id = self.transaction_id(&tx.id)?;
        if tx.session_id.is_some() && tx.session.is_none() {
            return Err(AppError::Dintero(DinteroError::temporary(
                format!("GET transaction {id}"),
                "Dintero's answer lacks the session asked for: whether it says who sends the invoice cannot be told; try again",
            )));
        }
        let configured = crate::dintero::eligibility::session_level(&tx)
            .map(|channel| format!("its session says `{channel}`"))
            .or_else(|| {
                tx.metadata_str("session:profile_id")
                    .map(|p| format!("it was made from payment profile {p}"))
            });
        if let Some(why) = configured {
            return Err(AppError::NotMerchantInitiated(format!(
                "{id} is not a merchant-initiated invoice: {why}, and that configuration decides who sends it"
            )));
        }
        self.store()
            .mark_origin(
                id,
                crate::store::ORIGIN_DECLARED,
                "declared merchant-initiated (POST /v1/sessions/pay with invoice_channel merchant, made by the merchant's own system)",
            )
            .await?;
        self.engine.submit(id).await?;
        Ok(self.engine.deliver_now(id, wait).await?)
    }

    /// Delivers an invoice whose collection was started elsewhere (a capture Postbud did not
    /// make: the dispatch stopped and needs attention), on an operator's word that the customer
    /// does not have it. Dintero must show the capture; the capture is never repeated.
    pub async fn adopt_capture(
        &self,
        transaction_id: &str,
        wait: Duration,
    ) -> Result<Outcome, AppError> {
        let tx = self.read(self.transaction_id(transaction_id)?).await?;
        let id = self.transaction_id(&tx.id)?;
        let Some(event) = tx.capture_event() else {
            return Err(AppError::NothingToAdopt(format!(
                "Dintero shows no capture for {id}: there is no collection to adopt (`postbud deliver {id}` captures and delivers it)"
            )));
        };
        let detail = format!(
            "an operator adopted the {} (event_reference {}) Postbud did not make: delivered without capturing again",
            event.event,
            event.event_reference.as_deref().unwrap_or("none")
        );
        if !self.store().adopt_capture(id, &detail).await? {
            return Err(AppError::NothingToAdopt(format!(
                "{id} is not stopped by a collection started elsewhere (`postbud status {id}` says where it stands)"
            )));
        }
        Ok(self.engine.deliver_now(id, wait).await?)
    }

    /// Whether this instance can do its work, for `/healthz`: the store takes a write (a full
    /// disk or a corrupt file fails it), and every configured worker runs once
    /// [`App::run_workers`] started them. `Err` says what is wrong.
    pub async fn health(&self) -> Result<String, String> {
        self.store()
            .set_meta("healthz", &crate::store::now_ms().to_string())
            .await
            .map_err(|e| format!("the store cannot be written: {e}"))?;
        match self.engine.workers() {
            Some((running, configured)) if running < configured => {
                Err(format!("{running} of {configured} workers running"))
            }
            Some((running, _)) => Ok(format!("ok: store writable, {running} workers running")),
            None => Ok("ok: store writable".into()),
        }
    }

    /// What the store says of this host's clock against the one it judges leases by (the
    /// database server's, on PostgreSQL), once measured; a line beyond a few seconds' difference
    /// starts with `!`.
    pub fn clock_report(&self) -> Option<String> {
        self.store()
            .clock_offset()
            .map(crate::store::clock::describe)
    }

    /// Runs the workers until `shutdown` turns true.
    pub async fn run_workers(&self, shutdown: watch::Receiver<bool>) {
        Arc::clone(&self.engine).run(shutdown).await;
    }

    /// Voids the transaction at Dintero. Only Dintero's confirmation (a `200` with the voided
    /// transaction, or the `VOID` event answering a `202`) stops the pending deliveries and sends
    /// cancellation notices through the channels that delivered it. A `202` not settled within
    /// `wait` is left to a job that `serve` runs; a void Dintero refuses changes nothing here.
    pub async fn void(&self, transaction_id: &str, wait: Duration) -> Result<VoidReport, AppError> {
        let tx = self.read(self.transaction_id(transaction_id)?).await?;
        // Everything from here on is keyed by the id Dintero returns.
        let id = self.transaction_id(&tx.id)?;
        let already_voided = tx.is_voided();
        if !already_voided {
            let request_id = match self.gateway.void(id).await {
                Ok(VoidOutcome::Done(after)) => match after.void_result(None) {
                    Some(Ok(())) => None,
                    Some(Err(reason)) => return Err(AppError::VoidRefused(reason)),
                    // A 200 that does not show the void yet: wait for it like a 202.
                    None => Some(None),
                },
                Ok(VoidOutcome::Accepted { request_id }) => Some(request_id),
                // A conflict: whether it voided is unknown. Dintero's transaction says.
                Err(e) if e.status() == Some(409) => match self.gateway.transaction(id).await {
                    Ok(now) if now.is_voided() => None,
                    _ => return Err(e.into()),
                },
                Err(e) if !e.is_temporary() => return Err(AppError::VoidRefused(e.to_string())),
                Err(e) => return Err(e.into()),
            };
            if let Some(request_id) = request_id
                && !self.void_settled(id, request_id.as_deref(), wait).await?
            {
                self.engine.await_void(id, request_id.as_deref()).await?;
                let outcome = Outcome {
                    transaction_id: id.to_owned(),
                    newly_queued: false,
                    dispatch: self.store().dispatch(id).await?,
                    jobs: self.store().jobs(id).await?,
                };
                return Ok(VoidReport {
                    status: "AUTHORIZED (void accepted, not yet confirmed)".into(),
                    already_voided,
                    pending: true,
                    outcome,
                });
            }
        }
        self.engine.voided(id).await?;
        let outcome = self.engine.deliver_now(id, Duration::from_secs(30)).await?;
        Ok(VoidReport {
            status: crate::dintero::model::Status::AuthorizationVoided.to_string(),
            already_voided,
            pending: false,
            outcome,
        })
    }

    /// Reads the transaction until the accepted void settles or `wait` runs out: `Ok(true)`
    /// confirmed, `Ok(false)` not yet, an error when Dintero refused it.
    async fn void_settled(
        &self,
        id: &str,
        request_id: Option<&str>,
        wait: Duration,
    ) -> Result<bool, AppError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // A read that fails is only a missed look; the next one (or the job) tells.
            if let Ok(tx) = self.gateway.transaction(id).await {
                match tx.void_result(request_id) {
                    Some(Ok(())) => return Ok(true),
                    Some(Err(reason)) => return Err(AppError::VoidRefused(reason)),
                    None => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200).min(wait)).await;
        }
    }

    /// Creates a merchant-initiated Kravia invoice (`POST /v1/sessions/pay` with
    /// `invoice_channel: "merchant"`) from an order, records it as the merchant's to deliver,
    /// and queues it.
    ///
    /// `order` is `{"order": {...}, "payment": {...}?, "url": {...}?}` or just the order; missing
    /// payment fields default to `kravia.invoice_b2c`, 14 days until due. The order's
    /// `merchant_reference` is required: Dintero is asked to refuse a second invoice for it, and
    /// when it does (a re-run after a timeout), the invoice made the first time is found by that
    /// reference and continued instead.
    pub async fn create_invoice(&self, order: &Value) -> Result<CreatedInvoice, AppError> {
        let mut request =
            pay_request(order).map_err(|m| ConfigError::message(format!("invoice order: {m}")))?;
        if let Some(callback) = self.void_callback_url()
            && request["session"]["url"]["callback_url"].is_null()
        {
            request["session"]["url"]["callback_url"] = json!(callback);
        }
        let reference = request["session"]["order"]["merchant_reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Recorded before Dintero is called: if this process dies between Dintero's answer and
        // the record below, the sweep finds the invoice by this intent and makes it the
        // merchant's, instead of leaving it to Dintero's default (Kravia).
        let intent = InvoiceIntent::of(&request);
        self.store()
            .set_meta(&InvoiceIntent::key(&reference), &intent.to_json())
            .await?;
        let intent_key = InvoiceIntent::key(&reference);
        let (tx, existing) = match self.gateway.create_invoice(&request).await {
            Ok(tx) => (tx, false),
            Err(e) if e.status() == Some(400) => match self.existing_invoice(&request).await? {
                Some(tx) => (tx, true),
                None => {
                    // Refused, and no invoice of this order exists: nothing for the sweep to
                    // find, and a later transaction with this reference is not this intent's.
                    self.store().set_meta(&intent_key, "").await?;
                    return Err(e.into());
                }
            },
            Err(e) => return Err(e.into()),
        };
        let id = self.transaction_id(&tx.id)?;
        let detail = if existing {
            format!(
                "found by merchant_reference {reference} after Dintero refused a second invoice for it; delivered by the merchant"
            )
        } else {
            format!(
                "created with POST /v1/sessions/pay, invoice_channel merchant, merchant_reference {reference}"
            )
        };
        self.store()
            .mark_origin(id, crate::store::ORIGIN_CREATED, &detail)
            .await?;
        self.store().set_meta(&intent_key, "").await?;
        self.engine.submit(id).await?;
        Ok(CreatedInvoice {
            transaction: tx,
            existing,
        })
    }

    /// `server.public_url` and `server.callback_path`, asking for `VOID` reports too: so a
    /// void made in Dintero's Backoffice stops an invoice `create_invoice` made.
    fn void_callback_url(&self) -> Option<String> {
        let server = &self.settings.server;
        let base = server.public_url.as_ref()?;
        let mut url = base.clone();
        let path = format!(
            "{}{}",
            base.path().trim_end_matches('/'),
            server.callback_path
        );
        url.set_path(&path);
        url.set_query(Some("report_event=VOID"));
        Some(url.to_string())
    }

    /// The intent `create_invoice` recorded for the merchant reference of `tx`, if `tx` is the
    /// invoice it describes: a `sessions/pay` invoice (no session or profile configuration)
    /// of the same amount, currency and type.
    pub(crate) async fn recorded_intent(&self, tx: &Transaction) -> Result<bool, AppError> {
        let Some(reference) = tx.merchant_reference.as_deref() else {
            return Ok(false);
        };
        let Some(json) = self.store().meta(&InvoiceIntent::key(reference)).await? else {
            return Ok(false);
        };
        // An empty intent was consumed: the invoice was recorded, or Dintero refused it.
        let Ok(intent) = serde_json::from_str::<InvoiceIntent>(&json) else {
            return Ok(false);
        };
        if !intent.describes(tx) {
            return Ok(false);
        }
        // A listed transaction has no session: read it whole, so a checkout session's own
        // configuration is seen before anything is taken for the merchant's.
        let whole = self.gateway.transaction(&tx.id).await?;
        Ok(intent.describes(&whole) && whole.session.is_some())
    }

    /// The Kravia invoice an earlier `sessions/pay` made for this order: the same merchant
    /// reference, amount, currency and type, and none of the Kravia configuration a checkout
    /// session or payment profile would carry. Anything else with that reference (a checkout
    /// invoice Kravia delivers itself) is never taken over.
    async fn existing_invoice(&self, request: &Value) -> Result<Option<Transaction>, AppError> {
        let order = &request["session"]["order"];
        let reference = order["merchant_reference"].as_str().unwrap_or_default();
        let product_type = request["payment"]["payment_product_type"].as_str();
        let filter = crate::dintero::TransactionFilter {
            merchant_reference: Some(reference.to_owned()),
            limit: 100,
            ..Default::default()
        };
        let found = self.gateway.transactions(&filter).await?;
        let candidate = found.transactions.into_iter().find(|tx| {
            tx.payment_product == "kravia"
                && tx.status != crate::dintero::model::Status::Failed
                && order["amount"].as_i64() == Some(tx.amount)
                && order["currency"].as_str() == Some(tx.currency.as_str())
                && product_type == Some(tx.payment_product_type.as_str())
                && tx.metadata_str("session:profile_id").is_none()
        });
        let Some(candidate) = candidate else {
            return Ok(None);
        };
        let tx = self.gateway.transaction(&candidate.id).await?;
        Ok(crate::dintero::eligibility::session_level(&tx)
            .is_none()
            .then_some(tx))
    }

    /// Checks the Dintero credentials, then the scopes they grant
    /// ([`crate::dintero::scopes::check`]): an error with `status` 403 names the scope to grant.
    pub async fn probe_dintero(&self) -> Result<String, DinteroError> {
        let credentials = self.gateway.probe().await?;
        let scopes = crate::dintero::scopes::check(self.gateway.as_ref()).await?;
        Ok(format!("{credentials}; {scopes}"))
    }

    /// Probes every channel.
    pub async fn check(&self) -> Vec<(String, Result<String, ChannelError>)> {
        self.engine.channels().check().await
    }

    /// Whether a channel instance called `name` is configured.
    pub fn has_channel(&self, name: &str) -> bool {
        self.engine.channels().get(name).is_some()
    }

    /// The channel instance `name`'s reading of a provider's status callback (see
    /// [`Channel::report`]); `None` when no instance has that name. The caller sets
    /// [`InboundReport::signed_for`] only after checking the report URL's signature
    /// ([`LinkSigner::verify_report`]).
    pub async fn channel_report(
        &self,
        name: &str,
        report: &InboundReport,
    ) -> Option<Result<Vec<Evidence>, ChannelError>> {
        self.engine.channels().report(name, report).await
    }

    /// This app's figures with the store's counts, in the OpenMetrics text format: what
    /// `/metrics` answers.
    pub async fn render_metrics(&self) -> Result<String, StoreError> {
        self.metrics().render(self.store().as_ref()).await
    }
}

/// What `create_invoice` is about to ask Dintero for, recorded first (see
/// [`App::create_invoice`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct InvoiceIntent {
    amount: i64,
    currency: String,
    payment_product_type: String,
}

impl InvoiceIntent {
    /// The store's meta key for a merchant reference.
    fn key(reference: &str) -> String {
        format!("invoice-intent:{reference}")
    }

    fn of(request: &Value) -> Self {
        let order = &request["session"]["order"];
        Self {
            amount: order["amount"].as_i64().unwrap_or_default(),
            currency: order["currency"].as_str().unwrap_or_default().to_owned(),
            payment_product_type: request["payment"]["payment_product_type"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether `tx` is the invoice this intent asked for: Kravia, the same amount, currency
    /// and type, and none of the configuration a checkout session or payment profile carries.
    fn describes(&self, tx: &Transaction) -> bool {
        tx.payment_product == "kravia"
            && tx.amount == self.amount
            && tx.currency == self.currency
            && tx.payment_product_type == self.payment_product_type
            && tx.metadata_str("session:profile_id").is_none()
            && crate::dintero::eligibility::session_level(tx).is_none()
    }
}

/// The Kravia invoice types whose merchant delivery Dintero documents.
const MERCHANT_DELIVERABLE_TYPES: [&str; 2] = ["kravia.invoice_b2c", "kravia.invoice_b2b"];

/// The `sessions/pay` body for an order, with `invoice_channel` and `invoice_delivery_method`
/// forced to `merchant`.
pub fn pay_request(input: &Value) -> Result<Value, String> {
    let object = input.as_object().ok_or("expected a JSON object")?;
    let order = object
        .get("order")
        .cloned()
        .unwrap_or_else(|| input.clone());
    for field in ["amount", "currency"] {
        if order.get(field).is_none() {
            return Err(format!("`order.{field}` is required"));
        }
    }
    if order
        .get("merchant_reference")
        .and_then(Value::as_str)
        .is_none_or(|r| r.trim().is_empty())
    {
        return Err(
            "`order.merchant_reference` is required: it is the invoice's identity at Dintero, so running the command again cannot create a second invoice"
                .into(),
        );
    }
    if order.get("billing_address").is_none() {
        return Err(
            "`order.billing_address` is required: Kravia invoices need the customer's address"
                .into(),
        );
    }
    let mut payment = object.get("payment").cloned().unwrap_or_else(|| json!({}));
    let payment_map = payment
        .as_object_mut()
        .ok_or("`payment` must be an object")?;
    let product_type = payment_map
        .entry("payment_product_type")
        .or_insert(json!("kravia.invoice_b2c"))
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !MERCHANT_DELIVERABLE_TYPES.contains(&product_type.as_str()) {
        return Err(format!(
            "`payment.payment_product_type` is `{product_type}`; Dintero documents merchant delivery for {} only (grouped invoices are not), so nothing was sent to Dintero",
            MERCHANT_DELIVERABLE_TYPES.join(" and ")
        ));
    }
    payment_map.insert("operation".into(), json!("invoice_payment"));
    payment_map.entry("days_until_due").or_insert(json!(14));
    // Both names of the option: the guides say `invoice_channel`, the changelog and the 2026
    // schema `invoice_delivery_method`. Which one the live API honours is not documented, and
    // under the one it ignores Kravia would deliver the invoice too.
    payment_map.insert("invoice_channel".into(), json!("merchant"));
    payment_map.insert("invoice_delivery_method".into(), json!("merchant"));
    let mut session = json!({ "order": order });
    if let Some(url) = object.get("url") {
        session["url"] = url.clone();
    }
    Ok(json!({ "payment": payment, "session": session }))
}

/// Every network a route's `when` asks about (`peppol`) has a channel whose directory answers.
fn check_directories(
    settings: &Settings,
    channels: &BTreeMap<String, Arc<dyn Channel>>,
) -> Result<(), ConfigError> {
    for (index, route) in settings.routes.iter().enumerate() {
        for network in route.when.networks() {
            let answered = channels
                .values()
                .filter_map(|c| c.directory())
                .any(|d| d.network() == network);
            if !answered {
                return Err(ConfigError::message(format!(
                    "routes[{index}].when.{network}: no configured channel looks up {network} participants (from {}); add a channel of kind \"{network}\"",
                    settings.source_of("routes")
                )));
            }
        }
    }
    Ok(())
}
