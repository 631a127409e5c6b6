//! # postbud-channel
//!
//! What a Postbud channel crate depends on, and nothing more: the [`Channel`] contract and its
//! [`ChannelError`], classified by what happened ([`ErrorKind`]) and whether to retry
//! ([`RetryClass`]), the [`Invoice`] a channel delivers, registration ([`register_channel!`],
//! [`ChannelFactory`], [`Registry`]), and the plumbing every channel
//! needs the same way (an HTTP client without redirects, one response classifier, one
//! `Retry-After` parser, bounded reads, one file-name sanitiser, localised templates).
//! `testing` (feature `testing`) gives an example invoice and context, so a channel's `deliver` is unit-tested
//! against a local receiver in milliseconds.
//!
//! The engine (`postbud`) re-exports all of it; a channel crate depends on this crate alone,
//! which re-exports the crates a channel writes its code with: [`serde`], [`serde_json`],
//! [`figment`] (a factory's table, in tests too), [`jiff`], [`bytes`], [`url`],
//! [`macro@async_trait`], the HTTP client as [`http::reqwest`] (rustls, no second TLS stack),
//! [`keys::schemars`], [`templates::minijinja`], and under `testing` the runtime as
//! `testing::tokio`. The derives name their crate, so say where it is:
//! `#[serde(crate = "postbud_channel::serde")]`,
//! `#[schemars(crate = "postbud_channel::keys::schemars")]`,
//! `#[testing::tokio::test(crate = "postbud_channel::testing::tokio")]`.
//!
//! ```
//! use postbud_channel::{BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt};
//!
//! #[derive(Debug)]
//! struct Null;
//!
//! /// The table of a `null` channel: no keys of its own.
//! #[derive(postbud_channel::serde::Deserialize, postbud_channel::keys::JsonSchema)]
//! #[serde(crate = "postbud_channel::serde", deny_unknown_fields)]
//! #[schemars(crate = "postbud_channel::keys::schemars")]
//! struct NullConfig {}
//!
//! #[postbud_channel::async_trait]
//! impl Channel for Null {
//!     async fn deliver(&self, _: &Invoice, _: &DeliveryContext) -> Result<Receipt, ChannelError> {
//!         Ok(Receipt::new("dropped on the floor"))
//!     }
//! }
//!
//! fn build(_: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
//!     Ok(Box::new(Null))
//! }
//!
//! postbud_channel::register_channel! {
//!     pub static FACTORY = {
//!         kind: "null",
//!         description: "discards every invoice",
//!         crate_name: env!("CARGO_PKG_NAME"),
//!         example: "[channels.bin]\nkind = \"null\"\n",
//!         config: NullConfig,
//!         build: build,
//!     };
//! }
//!
//! /// Links this crate's kinds explicitly.
//! pub fn register(registry: &mut postbud_channel::Registry) -> Result<(), postbud_channel::DuplicateKind> {
//!     registry.add(&FACTORY)
//! }
//!
//! let registry = postbud_channel::Registry::discover().expect("no duplicates");
//! assert!(registry.factories().any(|f| f.kind == "null"));
//! ```
#![warn(missing_docs)]

mod channel;
pub mod config;
pub mod directory;
mod error;
pub mod evidence;
pub mod file_name;
pub mod format;
pub mod http;
pub mod ids;
mod invoice;
pub mod keys;
mod registry;
pub mod templates;
#[cfg(feature = "testing")]
pub mod testing;

pub use async_trait::async_trait;

// The crates a channel writes its code with, so that its `Cargo.toml` names this crate alone
// and gets the versions (and the one TLS stack) the engine is built with.
pub use bytes;
pub use figment;
pub use jiff;
pub use serde;
pub use serde_json;
pub use url;

pub use self::{
    channel::{Channel, DeliveryContext, InboundReport, Receipt},
    config::{ConfigError, is_secret_key},
    directory::{Directory, Reach, Recipient},
    error::{ChannelError, ErrorKind, RetryClass},
    evidence::{
        Correlation, Evidence, EvidenceOffer, EvidenceSink, EvidenceSource, EvidenceState, Recorded,
    },
    invoice::{Customer, Invoice, InvoiceLine, Pdf, locale_for_country, sha256_hex},
    registry::{
        BuildContext, ChannelConfig, ChannelFactory, Configuration, DuplicateKind, Registration,
        Registry,
    },
};

#[doc(hidden)]
pub mod __private {
    pub use inventory;
}

/// Declares a channel kind's factory as a named static and registers it, so that `postbud`
/// finds the kind at start-up without naming the crate in code.
///
/// Name the static in the crate's `register()` too: `inventory` entries of a crate that is
/// linked but never referenced can be dropped by the linker, and `register()` is the explicit
/// way in. `config:` names the type the factory extracts its table into: it derives
/// [`keys::JsonSchema`] and is the description of the kind's keys (`postbud channels --keys`,
/// the generated key reference). See the crate docs for a whole channel.
#[macro_export]
macro_rules! register_channel {
    ($(#[$meta:meta])* $vis:vis static $name:ident = {
        kind: $kind:expr,
        description: $description:expr,
        crate_name: $crate_name:expr,
        example: $example:expr,
        config: $config:ty,
        build: $build:expr $(,)?
    };) => {
        $(#[$meta])*
        $vis static $name: $crate::ChannelFactory =
            $crate::ChannelFactory::new($kind, $description, $crate_name, $example, $build)
                .with_keys($crate::keys::keys_of::<$config>);
        $crate::__private::inventory::submit! { $crate::Registration(&$name) }
    };
}
