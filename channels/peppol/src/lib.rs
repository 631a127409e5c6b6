//! # postbud-peppol
//!
//! A Postbud channel (kind `peppol`) that sends the invoice to the buyer's e-invoice inbox: the
//! EHF / Peppol BIS Billing 3.0 UBL Invoice with the Kravia PDF embedded, through a Peppol
//! access point provider's API ([`provider::AccessPoint`]; Storecove first).
//!
//! Before the capture, a route's `when = { peppol = true }` asks the channel's
//! [`directory`](postbud_channel::Channel::directory): the buyer's participant id (country and
//! organisation number, checked as the Peppol rules check them) is looked up in the network
//! itself ([`lookup`]). A buyer that is not registered is routed elsewhere with the reason; a
//! lookup that fails is retried and nothing is captured meanwhile.
//!
//! ```toml
//! [channels.peppol]
//! kind = "peppol"
//! provider = "storecove"
//! api_url = "https://api.storecove.com/api/v2"
//! api_key = "…"
//! legal_entity_id = 123456
//! sender = "0192:745707327"
//! smp_trust = "/etc/postbud/peppol-smp-ca.pem"
//! [channels.peppol.seller]
//! name = "Merchant AS"
//! organization_number = "745707327"
//! vat_number = "NO745707327MVA"
//! address = { line = "Storgata 1", postal_code = "0151", city = "Oslo", country = "NO" }
//! ```
#![warn(missing_docs)]

mod config;
pub mod lookup;
pub mod provider;
pub mod storecove;

pub use self::config::PeppolConfig;
