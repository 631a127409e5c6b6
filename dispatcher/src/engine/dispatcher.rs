//! The seam a merchant uses to replace steps of the flow: its own eligibility rule, its own
//! PDF, its own routing. [`DefaultDispatcher`] is the flow as `design.md` describes it.

use std::fmt;

use crate::{
    config::Route,
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

    /// Index of the route for this transaction. Default: the first whose `when` matches.
    fn route(&self, routes: &[Route], tx: &Transaction) -> Option<usize> {
        let facts = tx.route_facts();
        routes.iter().position(|r| r.when.matches(&facts))
    }
}

/// The flow as `design.md` describes it.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultDispatcher;

impl Dispatcher for DefaultDispatcher {}
