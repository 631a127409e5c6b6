//! Delivery evidence: what happened to a delivery after Postbud handed it over.
//!
//! An attempt ends when the sink accepts the invoice (an SMTP 250, a gateway's 2xx). Whether it
//! reached the customer is told later, from outside: a mail server's delivery status
//! notification, a provider's event webhook, an SMS operator's report, an access point's receipt.
//! A channel turns what it receives into [`Evidence`], correlated by what Postbud controls (the
//! delivery id, the deterministic `Message-ID`, the provider's id from its reply, kept as
//! [`Receipt::reference`](crate::Receipt)); the engine records it once, shows it, and runs the
//! route's fallback when a delivery [bounced or was rejected](EvidenceState::is_failure).

use std::fmt;

use bytes::Bytes;

use crate::ChannelError;

/// How far a delivery got, as the party that reports it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum EvidenceState {
    /// Handed over: the sink took it (what an attempt's [`Receipt`](crate::Receipt) already says).
    Accepted,
    /// Not there yet, and still trying: a mail server's `delayed` (4.x.x), an SMS in the
    /// operator's queue. Recorded; the delivery waits.
    Delayed,
    /// Arrived: the receiving server, the handset or the access point confirms it.
    Delivered,
    /// Opened by its recipient (where a channel can tell).
    Opened,
    /// Bounced for good: the mailbox does not exist, the number is not in service (a 5.x.x, an
    /// `undelivered` report). The delivery failed; its route's fallback runs.
    Bounced,
    /// Refused before it was sent on: a provider's suppression list, a spam verdict, an access
    /// point's validation. The delivery failed; its route's fallback runs.
    Rejected,
}

impl EvidenceState {
    /// Whether it ends the delivery as failed: [`Bounced`](Self::Bounced) and
    /// [`Rejected`](Self::Rejected).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Bounced | Self::Rejected)
    }

    /// The name the history, `postbud status` and `/metrics` show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Delayed => "delayed",
            Self::Delivered => "delivered",
            Self::Opened => "opened",
            Self::Bounced => "bounced",
            Self::Rejected => "rejected",
        }
    }

    /// Every state, in order.
    pub const ALL: [Self; 6] = [
        Self::Accepted,
        Self::Delayed,
        Self::Delivered,
        Self::Opened,
        Self::Bounced,
        Self::Rejected,
    ];

    /// The state named `name` ([`EvidenceState::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for EvidenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which delivery a piece of evidence is about, by what Postbud controls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Correlation {
    /// The delivery id itself ([`DeliveryContext::delivery_id`](crate::DeliveryContext)): from a
    /// VERP return path, a DSN's `ENVID`, a report URL, a provider's custom argument.
    Delivery(String),
    /// The sink's own id the attempt's [`Receipt::reference`](crate::Receipt) kept: a provider's
    /// message id, an SMTP `Message-ID`.
    Reference(String),
}

/// What a party outside Postbud said about one delivery, after the attempt.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evidence {
    /// The delivery it concerns.
    pub about: Correlation,
    /// How far the delivery got.
    pub state: EvidenceState,
    /// Why, in the reporter's words: a server's diagnostic (`550 5.1.1 no such user`), a
    /// provider's reason. Empty when it says nothing.
    pub reason: String,
    /// Who says so: `mx.example.com (DSN)`, `sendgrid`, `twilio`.
    pub reporter: String,
    /// The reporter's own id of this event (a provider's event id, a DSN's `Message-ID`), or a
    /// digest of it when it has none: the same event received twice is recorded once.
    pub event_id: String,
    /// When the reporter says it happened, when it says.
    pub at: Option<jiff::Timestamp>,
    /// The raw event as received, kept (bounded by the engine) for whoever needs to look again,
    /// and removed by retention like the rest of an invoice's personal data.
    pub payload: Bytes,
}

impl Evidence {
    /// `reporter` says the delivery `about` is at `state`, in its event `event_id`.
    pub fn new(
        about: Correlation,
        state: EvidenceState,
        reporter: impl Into<String>,
        event_id: impl Into<String>,
    ) -> Self {
        Self {
            about,
            state,
            reason: String::new(),
            reporter: reporter.into(),
            event_id: event_id.into(),
            at: None,
            payload: Bytes::new(),
        }
    }

    /// With the reporter's reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// With the time the reporter gives.
    pub fn at(mut self, at: jiff::Timestamp) -> Self {
        self.at = Some(at);
        self
    }

    /// An event id for a reporter that gives none: a digest of the raw event, so the same
    /// event received twice is recognised.
    pub fn digest_id(payload: &[u8]) -> String {
        format!("sha256:{}", &crate::sha256_hex(payload)[..32])
    }

    /// With the raw event.
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }
}

impl fmt::Debug for Evidence {
    // The payload holds the customer's address or number: its length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("about", &self.about)
            .field("state", &self.state)
            .field("reason", &self.reason)
            .field("reporter", &self.reporter)
            .field("event_id", &self.event_id)
            .field("at", &self.at)
            .field("payload", &format_args!("{} bytes", self.payload.len()))
            .finish()
    }
}

/// What a channel's `delivered` means, and what it may report later: shown by `postbud status`
/// and the README, so an operator knows what each `delivered` stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvidenceOffer {
    /// What the attempt's success proves: `the SMTP server answered 250`, `the receiver answered
    /// 2xx`, `the file was written and read back`.
    pub handed_over: String,
    /// The states it may report later, through [`Channel::report`](crate::Channel::report) or
    /// its mailbox.
    pub later: Vec<EvidenceState>,
}

impl EvidenceOffer {
    /// An attempt's success means `handed_over`; nothing comes later.
    pub fn new(handed_over: impl Into<String>) -> Self {
        Self {
            handed_over: handed_over.into(),
            later: Vec::new(),
        }
    }

    /// It may also report these states later.
    pub fn later(mut self, states: impl IntoIterator<Item = EvidenceState>) -> Self {
        self.later = states.into_iter().collect();
        self
    }
}

/// What became of evidence handed to an [`EvidenceSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recorded {
    /// Recorded, and acted on where it calls for it (a bounce runs the route's fallback).
    New,
    /// The same event was recorded before: nothing changed.
    Duplicate,
    /// The delivery's attempt has not ended yet (a report can outrun the attempt's own record):
    /// nothing was recorded; hand it over again later (a mailbox leaves the message unread, a
    /// webhook answers 503 so that the provider sends it again).
    NotYet,
    /// Not about a delivery of this channel that Postbud knows (another system's message through
    /// the same provider account, a delivery whose records retention removed): nothing was
    /// recorded, for the reason given. Do not hand it over again.
    Unknown(String),
}

/// Where a channel's own [`EvidenceSource`] hands what it reads: the engine, which records it as
/// it records a webhook's.
#[async_trait::async_trait]
pub trait EvidenceSink: Send + Sync {
    /// Records `evidence` reported for a delivery of the channel instance `channel`. An error
    /// means it could not be recorded now (the store is unavailable): keep it and try again.
    async fn record(&self, channel: &str, evidence: Evidence) -> Result<Recorded, ChannelError>;
}

/// A source of evidence a channel reads itself, rather than receiving it as a webhook: a bounce
/// mailbox. `postbud serve` (and [`App::run`](https://docs.rs/postbud)) runs it for the life of
/// the deployment, and again after a pause when it returns an error.
#[async_trait::async_trait]
pub trait EvidenceSource: Send + Sync + fmt::Debug {
    /// Reads what arrives until `stop` resolves, hands each piece of evidence to `sink` and marks
    /// what the sink took ([`Recorded::New`], [`Recorded::Duplicate`], [`Recorded::Unknown`]) as
    /// read where the source keeps it, so that a restart does not act on it twice; what the sink
    /// answered [`Recorded::NotYet`] or an error for stays unread, to be read again. Returns `Ok`
    /// when stopped, an error when the source failed (the engine runs it again after a pause).
    async fn run(
        &self,
        channel: &str,
        sink: std::sync::Arc<dyn EvidenceSink>,
        stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Result<(), ChannelError>;
}
