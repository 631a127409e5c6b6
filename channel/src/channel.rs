//! The contract between the engine and a delivery channel.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    ChannelError, Invoice,
    evidence::{Evidence, EvidenceOffer, EvidenceSource},
};

/// A way to hand an invoice to its recipient: an inbox, a phone, an ERP folder, a platform.
///
/// The engine calls [`Channel::deliver`] once per attempt with the same [`Invoice`] bytes and the
/// same [`DeliveryContext::delivery_id`]; a channel that can recognise a repeat at its sink
/// (a `Message-ID`, a `webhook-id`, a file name) should use that id for it.
#[async_trait::async_trait]
pub trait Channel: Send + Sync + fmt::Debug {
    /// Delivers the invoice. Classify failures by what happened ([`ChannelError::unauthorized`],
    /// [`ChannelError::rate_limited`], ...) and so whether to retry: a temporary failure is
    /// retried with backoff, a permanent one ends this delivery and runs the route's fallback,
    /// and refused credentials ([`ErrorKind::Unauthorized`](crate::ErrorKind::Unauthorized))
    /// stop it for the operator to fix the configuration.
    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError>;

    /// The sink's own id this attempt will send under, where the channel knows it before
    /// sending (an idempotency key the sink's reports name). Postbud keeps it on the delivery
    /// before the attempt starts, so a report that arrives before the attempt's end, or after
    /// its worker died, still finds the delivery. `None` (the default): the receipt's
    /// reference, once there is one.
    fn reference_before(&self, ctx: &DeliveryContext) -> Option<String> {
        let _ = ctx;
        None
    }

    /// Whether [`Channel::cancel`] sends something when a delivered invoice is voided.
    fn supports_cancel(&self) -> bool {
        false
    }

    /// Tells the recipient that a delivered invoice was cancelled (voided at Dintero).
    async fn cancel(
        &self,
        _invoice: &Invoice,
        _ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        Err(ChannelError::permanent(
            "this channel sends no cancellation notice",
        ))
    }

    /// Probes the channel (connects, authenticates, checks a directory) without delivering.
    async fn check(&self) -> Result<String, ChannelError> {
        Ok("nothing to probe".into())
    }

    /// What this channel's `delivered` means, and what it may report later (see
    /// [`crate::evidence`]). The default: the sink accepted it, and nothing comes later.
    fn evidence(&self) -> EvidenceOffer {
        EvidenceOffer::new("the channel's sink accepted it")
    }

    /// The source of evidence this channel reads itself (a bounce mailbox), which `postbud serve`
    /// runs beside the workers; `None` (the default) when it has none.
    fn evidence_source(&self) -> Option<std::sync::Arc<dyn EvidenceSource>> {
        None
    }

    /// The directory of the network this channel delivers through (Peppol's SML and SMPs), which
    /// a route's `when = { <network> = true }` asks before the capture; `None` (the default)
    /// when the channel reaches anyone it is given.
    fn directory(&self) -> Option<std::sync::Arc<dyn crate::Directory>> {
        None
    }

    /// Verifies and reads a status callback the channel's provider sent to
    /// `<server.public_url>/reports/<channel>`: the evidence it holds (a provider may batch
    /// several events in one request), or an error saying why it is refused.
    ///
    /// A callback to a URL Postbud signed for one delivery ([`DeliveryContext::report_url`])
    /// arrives with [`InboundReport::signed_for`] set, and the engine takes evidence from it
    /// about that delivery only. Any other callback is the channel's to authenticate: verify the
    /// provider's signature and refuse what fails with [`ChannelError::unauthorized`] (answered
    /// 401), what carries none with [`ChannelError::invalid_input`] or `unauthorized` (400 or
    /// 401), and a stale one as `unauthorized`. Nothing is recorded from a refused callback.
    async fn report(&self, _report: &InboundReport) -> Result<Vec<Evidence>, ChannelError> {
        Err(ChannelError::invalid_input(
            "this channel takes no delivery reports",
        ))
    }
}

/// A status callback as `postbud serve` received it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InboundReport {
    /// The public URL the provider called, query included (what signatures cover).
    pub url: String,
    /// Request headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: bytes::Bytes,
    /// The delivery whose report URL this is, when the URL carries Postbud's signature for it
    /// (checked by the server before the channel sees the report); `None` otherwise.
    pub signed_for: Option<String>,
}

impl InboundReport {
    /// A callback received at `url` with its headers (any case) and raw body.
    pub fn new(url: impl Into<String>, headers: Vec<(String, String)>, body: bytes::Bytes) -> Self {
        Self {
            url: url.into(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect(),
            body,
            signed_for: None,
        }
    }

    /// The same report, received on the URL Postbud signed for `delivery_id`.
    pub fn signed_for(mut self, delivery_id: impl Into<String>) -> Self {
        self.signed_for = Some(delivery_id.into());
        self
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter of [`InboundReport::url`].
    pub fn query(&self, name: &str) -> Option<String> {
        url::Url::parse(&self.url)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What the engine tells a channel about the attempt at hand.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryContext {
    /// Deterministic id of this delivery: the same on every retry and after a restart.
    pub delivery_id: String,
    /// The channel instance's configured name (`[channels.<name>]`).
    pub channel: String,
    /// 1 for the first attempt. It starts again at 1 when an operator sends the delivery again
    /// (`postbud retry`, the console): see [`DeliveryContext::sent_before`].
    pub attempt: u32,
    /// Whether an earlier attempt of this delivery may have reached the sink: one ended without
    /// Postbud learning whether it did (an error the channel gave a reference,
    /// [`ChannelError::with_reference`](crate::ChannelError::with_reference)), or the delivery
    /// was delivered before and is being sent again. Whatever the attempt's number: an
    /// operator's retry starts that count again. A sink that answers a repeated idempotency key
    /// with an error is read with this in mind.
    pub sent_before: bool,
    /// How often an operator sent this delivery again after it failed for good (0 at first): a
    /// sink that keeps an idempotency key for good (a failed send's included) needs a new key for
    /// each, e.g. the delivery id and this number.
    pub resend: u32,
    /// Where the provider should send status callbacks for this delivery, when
    /// `server.public_url` is set: `<public_url>/reports/<channel>?delivery=<id>`.
    pub report_url: Option<String>,
}

impl DeliveryContext {
    /// The first attempt of the delivery `delivery_id` through the instance `channel`.
    pub fn new(delivery_id: impl Into<String>, channel: impl Into<String>) -> Self {
        Self {
            delivery_id: delivery_id.into(),
            channel: channel.into(),
            attempt: 1,
            sent_before: false,
            resend: 0,
            report_url: None,
        }
    }

    /// The same delivery, at attempt `attempt` (1 for the first).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The same delivery, an earlier attempt of which may have reached the sink
    /// ([`DeliveryContext::sent_before`]).
    pub fn with_sent_before(mut self, sent_before: bool) -> Self {
        self.sent_before = sent_before;
        self
    }

    /// The same delivery, sent again for the `resend`th time after it failed for good
    /// ([`DeliveryContext::resend`]).
    pub fn with_resend(mut self, resend: u32) -> Self {
        self.resend = resend;
        self
    }

    /// Where the provider should send status callbacks.
    pub fn with_report_url(mut self, url: impl Into<String>) -> Self {
        self.report_url = Some(url.into());
        self
    }
}

/// Proof of a delivery, kept in the delivery's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Receipt {
    /// Human-readable: where it went ("wrote /srv/invoices/A-1.pdf", "250 queued as 4f2a").
    pub detail: String,
    /// The sink's own id for it, when it has one (SMTP queue id, provider message id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl Receipt {
    /// A receipt with a human-readable detail and no sink reference.
    pub fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            reference: None,
        }
    }

    /// Adds the sink's own id.
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }
}
