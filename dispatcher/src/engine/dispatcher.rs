//! The seam a merchant uses to replace steps of the flow: its own eligibility rule, its own
//! PDF, its own routing. [`DefaultDispatcher`] is the flow as `design.md` describes it.

use std::{collections::BTreeMap, fmt};

use postbud_channel::Reach;

use crate::{
    config::{PEPPOL, Route},
    dintero::{
        DinteroApi, DinteroError,
        eligibility::{self, ChannelConfiguration, Eligibility},
        model::Transaction,
    },
};
use postbud_channel::Pdf;

/// The steps of the flow a merchant may replace: wrap [`DefaultDispatcher`] and override what
/// differs (its own eligibility rule, its own PDF, its own routing).
#[async_trait::async_trait]
pub trait Dispatcher: Send + Sync + fmt::Debug {
    /// Whether Postbud delivers this transaction. Default: [`eligibility::check`].
    fn eligibility(&self, tx: &Transaction, configuration: &ChannelConfiguration) -> Eligibility {
        eligibility::check(tx, configuration)
    }

    /// The invoice PDF. Default: the document behind `kravia:invoice_url`.
    async fn document(
        &self,
        gateway: &dyn DinteroApi,
        _tx: &Transaction,
        invoice_number: &str,
        invoice_url: &str,
    ) -> Result<Pdf, DinteroError> {
        let bytes = gateway.fetch_document(invoice_url).await?;
        Ok(Pdf::new(
            postbud_channel::file_name::with_extension(invoice_number, "pdf"),
            bytes,
        ))
    }

    /// Index of the route for this transaction, given what the networks' directories said
    /// about its buyer (asked before, for the networks the routes' `when` names). Default: the
    /// first whose `when` matches.
    fn route(&self, routes: &[Route], tx: &Transaction, reached: &Reached) -> Option<usize> {
        let mut facts = tx.route_facts();
        facts.peppol = reached.reachable(PEPPOL);
        routes.iter().position(|r| r.when.matches(&facts))
    }
}

/// What the networks' directories answered about a transaction's buyer before the capture
/// (Peppol's lookup for `when.peppol`), by network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reached {
    answers: BTreeMap<String, Reach>,
}

impl Reached {
    /// The answers, by network.
    pub fn new(answers: BTreeMap<String, Reach>) -> Self {
        Self { answers }
    }

    /// What `network`'s directory said, when it was asked.
    pub fn get(&self, network: &str) -> Option<&Reach> {
        self.answers.get(network)
    }

    /// Whether the buyer receives through `network`, when its directory was asked.
    pub fn reachable(&self, network: &str) -> Option<bool> {
        self.get(network).map(Reach::is_reachable)
    }

    /// The answers as one line for the dispatch's history (`peppol: …`), `None` when nothing was
    /// asked.
    pub fn summary(&self) -> Option<String> {
        (!self.answers.is_empty()).then(|| {
            self.answers
                .iter()
                .map(|(network, reach)| {
                    let verdict = if reach.is_reachable() {
                        "reachable"
                    } else {
                        "not reachable"
                    };
                    format!("{network}: {verdict}, {}", reach.detail())
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// The flow as `design.md` describes it.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultDispatcher;

impl Dispatcher for DefaultDispatcher {}
