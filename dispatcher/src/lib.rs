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

pub mod app;
pub mod channel;
pub mod config;
pub mod dintero;
pub mod eligibility;
pub mod engine;
pub mod file_name;
pub mod folder;
pub mod format;
pub mod gateway;
pub mod http;
pub mod ids;
pub mod invoice;
pub mod limit;
pub mod links;
pub mod metrics;
pub mod reconcile;
pub mod registry;
pub mod retention;
pub mod server;
pub mod store;
pub mod triage;

pub use app::App;
pub use async_trait::async_trait;
pub use channel::{
    Channel, ChannelError, DeliveryContext, DeliveryReport, ErrorKind, InboundReport, Receipt,
};
pub use config::{ConfigError, Settings};
pub use engine::{DefaultDispatcher, Dispatcher, Outcome};
pub use gateway::{GatewayError, PaymentGateway};
pub use invoice::{Customer, Invoice, InvoiceLine, Pdf};
pub use registry::{BuildContext, ChannelConfig, ChannelFactory, Registry};

#[doc(hidden)]
pub mod __private {
    pub use inventory;
}

/// Declares a channel kind's factory as a named static and registers it, so that `postbud`
/// finds the kind at start-up without naming the crate in code.
///
/// Name the static in the crate's `register()` too: `inventory` entries of a crate that is
/// linked but never referenced can be dropped by the linker, and `register()` is the explicit
/// way in.
///
/// ```
/// use postbud::{BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt};
///
/// #[derive(Debug)]
/// struct Null;
///
/// #[postbud::async_trait]
/// impl Channel for Null {
///     async fn deliver(&self, _: &Invoice, _: &DeliveryContext) -> Result<Receipt, ChannelError> {
///         Ok(Receipt::new("dropped on the floor"))
///     }
/// }
///
/// fn build(_: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
///     Ok(Box::new(Null))
/// }
///
/// postbud::register_channel! {
///     pub static FACTORY = {
///         kind: "null",
///         description: "discards every invoice",
///         crate_name: env!("CARGO_PKG_NAME"),
///         example: "[channels.bin]\nkind = \"null\"\n",
///         build: build,
///     };
/// }
///
/// /// Links this crate's kinds explicitly.
/// pub fn register(registry: &mut postbud::Registry) -> Result<(), postbud::registry::DuplicateKind> {
///     registry.add(&FACTORY)
/// }
///
/// let registry = postbud::Registry::discover().expect("no duplicates");
/// assert!(registry.factories().any(|f| f.kind == "null"));
/// ```
#[macro_export]
macro_rules! register_channel {
    ($(#[$meta:meta])* $vis:vis static $name:ident = { $($field:ident : $value:expr),* $(,)? };) => {
        $(#[$meta])*
        $vis static $name: $crate::ChannelFactory = $crate::ChannelFactory { $($field: $value),* };
        $crate::__private::inventory::submit! { $crate::registry::Registration(&$name) }
    };
}
