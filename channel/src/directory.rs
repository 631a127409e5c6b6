//! Directories: who can receive through a network, asked before anything is captured.
//!
//! Some channels reach only the recipients a network's directory lists: Peppol's SML and SMPs
//! say which businesses receive a BIS Billing 3.0 invoice. A channel with such a directory
//! offers it through [`Channel::directory`](crate::Channel::directory); a route's
//! `when = { peppol = true }` asks it, and the answer decides the route before the capture.
//!
//! "Not listed" is an answer ([`Reach::Unreachable`]); not knowing is not: a lookup that timed
//! out, a 5xx or a signature that does not verify is a [`ChannelError`], and the dispatch is
//! retried with nothing captured meanwhile.

use std::fmt;

use crate::ChannelError;

/// The recipient of an invoice as Dintero describes it before the capture: what a directory
/// looks a recipient up by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recipient {
    /// The billing country, ISO 3166 alpha-2.
    pub country: Option<String>,
    /// The business's registration number (Norway: the 9-digit organisation number).
    pub organization_number: Option<String>,
    /// The business's name.
    pub business_name: Option<String>,
}

impl Recipient {
    /// A business in `country` with the registration number `organization_number`.
    pub fn business(country: impl Into<String>, organization_number: impl Into<String>) -> Self {
        Self {
            country: Some(country.into()),
            organization_number: Some(organization_number.into()),
            business_name: None,
        }
    }
}

/// A directory's answer about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reach {
    /// The recipient receives through this network: what the directory said (the participant
    /// id, the endpoint), kept in the dispatch's history.
    Reachable(String),
    /// The recipient does not, and why ("0192:745707327 is not registered in the SML",
    /// "the buyer's organisation number fails the mod-11 check"), kept in the history.
    Unreachable(String),
}

impl Reach {
    /// Whether the recipient can receive through the network.
    pub fn is_reachable(&self) -> bool {
        matches!(self, Reach::Reachable(_))
    }

    /// What the directory said.
    pub fn detail(&self) -> &str {
        match self {
            Reach::Reachable(d) | Reach::Unreachable(d) => d,
        }
    }
}

/// A network's directory, asked before the capture.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + fmt::Debug {
    /// The network's name as a route's `when` names it (`peppol`).
    fn network(&self) -> &str;

    /// Whether `recipient` receives through the network. An error means the directory could not
    /// be asked or its answer not trusted (retried by the engine, nothing captured).
    async fn look_up(&self, recipient: &Recipient) -> Result<Reach, ChannelError>;
}
