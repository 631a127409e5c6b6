//! # Postbud
//!
//! Deliver Dintero Kravia invoices yourself: when a transaction is configured with
//! `invoice_channel: "merchant"`, Postbud captures it (which starts collection) and then
//! delivers the invoice PDF through the merchant's own channels.
//!
//! The flow, the store and the channel plugin system live here; channel kinds other than the
//! built-in `folder` come from their own crates (`postbud-email`, `postbud-webhook`, ...) or
//! from the merchant's code through [`register_channel!`]; [`App::open`] finds the kinds linked
//! into the binary, and [`AppBuilder::registry`] adds those the linker dropped.
//!
//! Linked into a merchant's service, one call runs a deployment: [`App::serve`] runs the
//! workers, the reconcile sweep, the retention pass and the HTTP routes until a shutdown
//! signal, then drains. It is what `postbud serve` runs. A service with a server of its own
//! mounts [`server::router`] in it and calls [`App::run`] for the rest.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = postbud::Settings::load(Some("postbud.toml".as_ref()))?;
//! let app = std::sync::Arc::new(postbud::App::open(&settings).await?);
//! let listener = tokio::net::TcpListener::bind(settings.server.listen).await?;
//! let routes = postbud::server::router(app.clone()); // the service's own routes merged in
//! let shutdown = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
//! app.serve(listener, routes, shutdown).await;
//! # Ok(()) }
//! ```
//!
//! One transaction, now, as `postbud deliver` does:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = postbud::Settings::load(Some("postbud.toml".as_ref()))?;
//! let app = postbud::App::open(&settings).await?;
//! let outcome = app.deliver_now("T12345678.4xYzAbC").await?;
//! println!("{outcome}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("postbud needs a store: enable the `sqlite` feature (a default) or `postgres`");

pub mod config;
pub mod credentials;
pub mod dintero;
mod evidence;
pub use evidence::PAYLOAD_LIMIT;
pub mod log_sink;
pub mod password;
#[cfg(feature = "server")]
pub mod server;

// Modules this workspace's own tests and tools reach into (the outbox, the engine's parts,
// fault injection) with the feature `unstable-internals`; private otherwise, so a merchant's
// code depends only on what the crate root exports. Written out, not made by a macro: rustfmt
// and every other tool see each module.
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod app;
#[cfg(not(feature = "unstable-internals"))]
mod app;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod engine;
#[cfg(not(feature = "unstable-internals"))]
mod engine;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod folder;
#[cfg(not(feature = "unstable-internals"))]
mod folder;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod limit;
#[cfg(not(feature = "unstable-internals"))]
mod limit;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod links;
#[cfg(not(feature = "unstable-internals"))]
mod links;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod metrics;
#[cfg(not(feature = "unstable-internals"))]
mod metrics;
mod operate;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod reconcile;
#[cfg(not(feature = "unstable-internals"))]
mod reconcile;
mod records;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod retention;
#[cfg(not(feature = "unstable-internals"))]
mod retention;
mod run;
// The outbox is its own crate, `postbud-store`, under the path the engine's modules name.
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub use postbud_store as store;
#[cfg(not(feature = "unstable-internals"))]
use postbud_store as store;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod sweeps;
#[cfg(not(feature = "unstable-internals"))]
mod sweeps;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod triage;
#[cfg(not(feature = "unstable-internals"))]
mod triage;

// The SDK's helpers, for a merchant's code that depends on `postbud` alone (the engine's own
// modules name `postbud_channel` directly).
pub use postbud_channel::{file_name, format, http, ids, keys};

#[cfg(feature = "server")]
pub use self::run::SHUTDOWN_GRACE;
pub use self::{
    app::{App, AppBuilder, AppError, CreatedInvoice, VoidReport},
    config::{ConfigError, Settings},
    engine::{DefaultDispatcher, Dispatcher, Outcome},
    links::LinkSigner,
    metrics::Metrics,
    operate::{BATCH, BulkRetry, REPEAT_GUARD, RedeliverError, Redelivered},
    records::Records,
    store::{
        AuditEntry, Counts, Dispatch, HistoryEntry, Job, JobKind, JobState, Millis, Role, Stage,
        StoreError, StoreErrorKind, Totals, fmt_ms, now_ms, probe as probe_store,
    },
    sweeps::Sweep,
    triage::{Assessment, Filter, Listed, Verdict},
};
pub use postbud_channel::{
    BuildContext, Channel, ChannelConfig, ChannelError, ChannelFactory, Correlation, Customer,
    DeliveryContext, DuplicateKind, ErrorKind, Evidence, EvidenceOffer, EvidenceSink,
    EvidenceSource, EvidenceState, InboundReport, Invoice, InvoiceLine, Pdf, Receipt, Recorded,
    Registry, RetryClass, async_trait, register_channel,
};
