//! # Postbud
//!
//! Deliver Dintero Kravia invoices yourself: when a transaction is configured with
//! `invoice_channel: "merchant"`, Postbud captures it (which starts collection) and then
//! delivers the invoice PDF through the merchant's own channels.
//!
//! The flow, the store and the channel plugin system live here; channel kinds other than the
//! built-in `folder` come from their own crates (`postbud-email`, `postbud-webhook`, ...) or
//! from the merchant's code through [`register_channel!`].
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

pub mod app;
pub mod config;
pub mod dintero;
pub mod eligibility;
pub mod engine;
pub mod folder;
pub mod gateway;
pub mod limit;
pub mod links;
pub mod metrics;
pub mod reconcile;
mod records;
pub mod retention;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod triage;

// The channel SDK's parts, under the names the engine's modules use.
use postbud_channel as channel;
use postbud_channel as invoice;
use postbud_channel as registry;
pub use postbud_channel::{file_name, format, http, ids};

pub use app::App;
pub use config::{ConfigError, Settings};
pub use engine::{DefaultDispatcher, Dispatcher, Outcome};
pub use gateway::{GatewayError, PaymentGateway};
pub use postbud_channel::{
    BuildContext, Channel, ChannelConfig, ChannelError, ChannelFactory, Customer, DeliveryContext,
    DeliveryReport, DuplicateKind, ErrorKind, InboundReport, Invoice, InvoiceLine, Pdf, Receipt,
    Registry, async_trait, register_channel,
};
