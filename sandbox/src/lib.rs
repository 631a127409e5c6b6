//! # postbud-sandbox
//!
//! A local stand-in for Dintero's Checkout API that follows `dintero-api.md`: client-credentials
//! tokens with Basic auth, transactions with Kravia semantics (capture keeps `AUTHORIZED` and
//! appends `INITIATE_CAPTURE`), void, the Files API descriptor and a real PDF per invoice,
//! `sessions/pay`, signed callbacks, and fault injection (5xx, 429 with `Retry-After`, slow
//! responses, 202 captures, invoice metadata that appears late).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let sandbox = postbud_sandbox::Sandbox::start(Default::default()).await?;
//! let id = sandbox.seed(Default::default());
//! println!("api_url = {}, transaction {id}", sandbox.api_url());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
// Handlers return early with a ready `Response`; it is not an error type worth boxing.
#![allow(clippy::result_large_err)]

mod api;
#[cfg(feature = "browser")]
pub mod browser;
mod cdn;
mod control;
pub mod email_events;
pub mod hooks;
pub mod imap;
pub mod mailbox;
pub mod pdf;
pub mod peppol;
pub mod peppol_rules;
pub mod postfix;
mod push;
pub mod scopes;
pub mod sftp;
pub mod sms;
pub mod smtp;
pub mod sshd;
mod state;
pub mod storecove;
mod wire;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::Value;
pub use state::{Fault, FaultKind, Operation, Seed, Stats};
use tokio::net::TcpListener;

/// Reports a test that could not run (a server missing on this machine) where the test command's
/// own output shows it: straight to the process's stderr, which the test harness does not capture,
/// so `cargo test` prints the line whether or not `--show-output` is given. One write, so the
/// line reaches a pipe whole, never split by the harness's own lines (`.ci/test` counts them).
pub fn skipped(what: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("SKIPPED {what}\n").as_bytes());
}

/// What a Node.js `script` prints for `args`: Dintero's own samples are JavaScript, so tests
/// check signatures against Node's `URL`, `URLSearchParams` and `crypto`, never against the code
/// under test. `None` (the test skips, saying so) when Node is missing; a failure under
/// `POSTBUD_REQUIRE_SERVICES=1`.
pub fn node(script: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("node")
        .arg("-e")
        .arg(script)
        .args(args)
        .output();
    match output {
        Ok(o) if o.status.success() => Some(String::from_utf8(o.stdout).expect("utf8")),
        other => {
            let why = format!(
                "Node.js is needed to sign and check as Dintero's reference code does: {other:?}"
            );
            assert!(
                std::env::var_os("POSTBUD_REQUIRE_SERVICES").is_none(),
                "{why}"
            );
            skipped(&why);
            None
        }
    }
}

/// The account the sandbox plays.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// `T12345678` by default.
    pub account_id: String,
    /// `sandbox-client` by default.
    pub client_id: String,
    /// `sandbox-secret` by default.
    pub client_secret: String,
    /// Signs callbacks with `Dintero-Signature` when set.
    pub callback_secret: Option<String>,
    /// Token lifetime in seconds (3600): `expires_in`, and a token is answered 401 from then on.
    pub token_ttl: u64,
    /// Which key of `payment` `POST /v1/sessions/pay` honours for who delivers the invoice.
    pub pay_reads: PayChannelKey,
    /// How long a Files API descriptor's CDN link lives (10 minutes): its `expires_at`, after
    /// which the CDN refuses the link.
    pub cdn_link_ttl: Duration,
    /// Attempts at each session callback the sandbox sends on its own (21: Dintero retries a
    /// callback 20 times).
    pub callback_attempts: u32,
    /// Attempts at each account webhook delivery (6: Dintero retries a webhook 5 times).
    pub webhook_attempts: u32,
    /// Wait before the first retry of a callback or webhook (1 s); it doubles with each further
    /// retry, up to 30 s.
    pub push_backoff: Duration,
    /// How long a callback waits for its answer before it counts as failed and is retried
    /// (10 s, Dintero's).
    pub callback_timeout: Duration,
    /// How long a webhook delivery waits for its answer (120 s, Dintero's).
    pub webhook_timeout: Duration,
}

/// Which name of the delivery option the sandbox's `sessions/pay` honours. Dintero's guides
/// name it `invoice_channel` (`kravia` | `merchant`), its changelog and 2026 schema
/// `invoice_delivery_method` (`provider` | `merchant`); which one the live API honours is not
/// documented, so a client must be right under each reading. An invoice the merchant does not
/// deliver is Kravia's: Kravia sends it and starts collection (its own `INITIATE_CAPTURE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PayChannelKey {
    /// `merchant` under either name.
    #[default]
    Either,
    /// Only `invoice_channel` (the guides).
    InvoiceChannel,
    /// Only `invoice_delivery_method` (the changelog and the 2026 schema).
    InvoiceDeliveryMethod,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            account_id: "T12345678".into(),
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            callback_secret: None,
            token_ttl: 3600,
            pay_reads: PayChannelKey::default(),
            cdn_link_ttl: Duration::from_secs(600),
            callback_attempts: 21,
            webhook_attempts: 6,
            push_backoff: Duration::from_secs(1),
            callback_timeout: Duration::from_secs(10),
            webhook_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SandboxConfig,
    pub(crate) state: state::State,
    pub(crate) base: String,
    /// The CDN's own origin, `http://127.0.0.1:<another port>`.
    pub(crate) cdn_base: String,
    /// Signs the CDN's links.
    pub(crate) link_key: [u8; 32],
    pub(crate) http: reqwest::Client,
    pub(crate) withheld: scopes::Withheld,
    /// Callbacks and webhooks: no redirects followed (Dintero counts them as failures), each
    /// request's timeout its own.
    pub(crate) push_http: reqwest::Client,
}

/// The `[dintero]` table for the default [`SandboxConfig`] at `api_url`, without the CDN's
/// origin: enough for the API, but a PDF behind a Files API descriptor is refused by Postbud's
/// allow-list. Prefer [`Sandbox::dintero_toml`], or read `GET /sandbox/dintero.toml` from a
/// sandbox in its own `postbud sandbox` process.
pub fn dintero_toml(api_url: &str) -> String {
    let c = SandboxConfig::default();
    format!(
        "[dintero]\naccount_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\napi_url = \"{api_url}\"\nauth_url = \"{api_url}\"\n",
        c.account_id, c.client_id, c.client_secret
    )
}

/// A running sandbox on a loopback port. Dropping it stops the server.
#[derive(Debug)]
pub struct Sandbox {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    cdn: tokio::task::JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
        self.cdn.abort();
    }
}

impl Sandbox {
    /// An access token of the account's client, got from the token endpoint over HTTP as any
    /// client gets one (for a test that calls the API by hand).
    pub async fn access_token(&self) -> Result<String, String> {
        let c = &self.shared.config;
        let url = format!("{}/accounts/{}/auth/token", self.api_url(), c.account_id);
        let audience = format!("https://api.dintero.com/v1/accounts/{}", c.account_id);
        let answer: Value = self
            .shared
            .http
            .post(&url)
            .basic_auth(&c.client_id, Some(&c.client_secret))
            .json(&serde_json::json!({"grant_type": "client_credentials", "audience": audience}))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("POST {url}: the answer is not JSON: {e}"))?;
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("POST {url}: no access_token in {answer}"))
    }

    /// Starts on a free port of 127.0.0.1.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), config).await
    }

    /// Starts on `addr`, with the CDN on a free port of the same IP address.
    pub async fn start_on(addr: SocketAddr, config: SandboxConfig) -> std::io::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let cdn_listener = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
        let cdn_addr = cdn_listener.local_addr()?;
        let mut link_key = [0u8; 32];
        getrandom::fill(&mut link_key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            config,
            state: state::State::default(),
            base: format!("http://{addr}"),
            cdn_base: format!("http://{cdn_addr}"),
            link_key,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(std::io::Error::other)?,
            withheld: scopes::Withheld::default(),
            push_http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(std::io::Error::other)?,
        });
        let app = api::router()
            .merge(control::router())
            .merge(sms::router())
            .merge(scopes::router())
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&shared),
                scopes::enforce,
            ))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        let cdn_app = cdn::router().with_state(Arc::clone(&shared));
        let cdn = tokio::spawn(async move {
            if let Err(e) = axum::serve(cdn_listener, cdn_app).await {
                tracing::error!(error = %e, "sandbox CDN stopped");
            }
        });
        Ok(Self {
            shared,
            addr,
            server,
            cdn,
        })
    }

    /// How the SMS stand-ins send their delivery reports from now on.
    pub fn set_sms_reports(&self, reports: sms::Reports) {
        self.shared.state.lock().sms_reports = reports;
    }

    /// The CDN's origin, `http://127.0.0.1:<port>`: another origin than the API's, as
    /// `cdn.dintero.com` is. Postbud needs it in `dintero.document_hosts`.
    pub fn cdn_url(&self) -> String {
        self.shared.cdn_base.clone()
    }

    /// The `[dintero]` table for this sandbox: the account, `api_url` and `auth_url`, and the
    /// CDN's origin in `document_hosts`.
    pub fn dintero_toml(&self) -> String {
        control::dintero_toml(&self.shared)
    }

    /// Base URL of an SMS provider stand-in (`twilio`, `vonage`, `sinch`, `linkmobility`,
    /// `46elks`), for the channel's `base_url`.
    pub fn provider_url(&self, provider: &str) -> String {
        format!("{}/providers/{provider}", self.shared.base)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// The Checkout API base, for `dintero.api_url` and `dintero.auth_url`.
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.shared.base)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The account it plays.
    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// Creates a transaction; returns its id.
    pub fn seed(&self, seed: Seed) -> String {
        control::seed(&self.shared, seed)
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.state.lock().faults.push(fault);
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.shared.state.lock().stats.clone()
    }

    /// Sets the account's checkout configuration, served at `GET /v1/admin/checkout`: for
    /// example `{"payment_options": [{"type": "kravia.invoice_b2c", "details":
    /// {"invoice_channel": "merchant"}}]}`.
    pub fn set_checkout_configuration(&self, configuration: Value) {
        self.shared.state.lock().checkout = configuration;
    }

    /// Sets a transaction's status, as Dintero does when Kravia reports the invoice paid
    /// (`CAPTURED`).
    pub fn set_status(&self, transaction_id: &str, status: &str) {
        let changed = match self
            .shared
            .state
            .lock()
            .transactions
            .get_mut(transaction_id)
        {
            Some(stored) => {
                stored.transaction["status"] = Value::from(status);
                stored.transaction["updated_at"] = Value::from(wire::now());
                true
            }
            None => false,
        };
        if changed {
            push::transaction_changed(&self.shared, transaction_id, push::Change::Updated);
        }
    }

    /// Stops granting `scope` to the API client, as a Dintero client created without it: with
    /// [`scopes::ADMIN_CHECKOUT`] the admin endpoints answer 403.
    pub fn withhold_scope(&self, scope: &str) {
        self.shared.withheld.add(scope);
    }

    /// Invalidates every issued token: the next API call gets a 401.
    pub fn revoke_tokens(&self) {
        self.shared.state.lock().tokens.clear();
    }

    /// Capture calls that took effect for a transaction.
    pub fn captures(&self, transaction_id: &str) -> u32 {
        self.stats()
            .captures
            .get(transaction_id)
            .copied()
            .unwrap_or(0)
    }

    /// The transaction as stored (all metadata, all events).
    pub fn transaction(&self, transaction_id: &str) -> Option<Value> {
        self.shared
            .state
            .lock()
            .transactions
            .get(transaction_id)
            .map(|s| s.transaction.clone())
    }

    /// The PDF bytes the sandbox serves for a transaction.
    pub fn pdf(&self, transaction_id: &str) -> Option<Vec<u8>> {
        self.shared
            .state
            .lock()
            .transactions
            .get(transaction_id)
            .map(|s| s.pdf.clone())
    }

    /// Sends the session callback for a transaction to `callback_url` (GET with query
    /// parameters, signed when a callback secret is configured); returns the HTTP status.
    pub async fn send_callback(
        &self,
        transaction_id: &str,
        callback_url: &str,
    ) -> Result<u16, String> {
        push::send_callback(&self.shared, transaction_id, callback_url, None).await
    }
}
