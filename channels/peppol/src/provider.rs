//! The access point a channel sends through, behind a small trait so a merchant can plug in its
//! own: [`AccessPoint`]. Storecove is the first ([`crate::storecove`]).

use std::{fmt, sync::Arc};

use postbud_channel::{ChannelError, EvidenceOffer, EvidenceSource};
use postbud_ubl::identifiers::ParticipantId;

/// One invoice to hand to the access point.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Submission<'a> {
    /// Postbud's delivery id (the same on every attempt).
    pub delivery_id: &'a str,
    /// The GUID derived from the delivery id ([`idempotency_guid`]): the provider's
    /// idempotency key, and the reference its status events are correlated by.
    pub idempotency_guid: String,
    /// The invoice number, for messages.
    pub invoice_number: &'a str,
    /// Who sends: the merchant's own participant id.
    pub sender: &'a ParticipantId,
    /// Who receives: the buyer's participant id.
    pub receiver: &'a ParticipantId,
    /// The BIS Billing 3.0 UBL Invoice, the PDF embedded.
    pub ubl: &'a [u8],
    /// The delivery's attempt, 1 for the first (again after an operator's retry).
    pub attempt: u32,
    /// Whether an earlier attempt may have reached the provider with its answer lost
    /// ([`postbud_channel::DeliveryContext::sent_before`]): a provider that answers a repeated key
    /// with an error must then not be read as refusing the invoice unless it says why.
    pub sent_before: bool,
}

impl<'a> Submission<'a> {
    /// The invoice `ubl` of delivery `delivery_id` from `sender` to `receiver`, with the
    /// delivery's [`idempotency_guid`].
    pub fn new(
        delivery_id: &'a str,
        invoice_number: &'a str,
        sender: &'a ParticipantId,
        receiver: &'a ParticipantId,
        ubl: &'a [u8],
    ) -> Self {
        Self {
            delivery_id,
            idempotency_guid: idempotency_guid(delivery_id),
            invoice_number,
            sender,
            receiver,
            ubl,
            attempt: 1,
            sent_before: false,
        }
    }

    /// The same submission at attempt `attempt` (1 for the first), an earlier attempt of which
    /// may have reached the provider when `sent_before`.
    pub fn with_attempt(mut self, attempt: u32, sent_before: bool) -> Self {
        self.attempt = attempt;
        self.sent_before = sent_before;
        self
    }
}

/// What the access point answered to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Submitted {
    /// Human-readable, for the delivery's history ("Storecove submission 9c1f… accepted").
    pub detail: String,
    /// The provider's own id for the submission, when its answer gave one (a repeat that the
    /// provider refuses as already submitted gives none).
    pub provider_id: Option<String>,
}

impl Submitted {
    /// An accepted submission.
    pub fn new(detail: impl Into<String>, provider_id: Option<String>) -> Self {
        Self {
            detail: detail.into(),
            provider_id,
        }
    }
}

/// A Peppol access point provider's API.
#[async_trait::async_trait]
pub trait AccessPoint: Send + Sync + fmt::Debug {
    /// Submits the invoice. A submission the provider already has under the same
    /// [`Submission::idempotency_guid`] is accepted, never sent twice.
    async fn submit(&self, submission: &Submission<'_>) -> Result<Submitted, ChannelError>;

    /// Probes the API with the configured credentials, without submitting.
    async fn check(&self) -> Result<String, ChannelError>;

    /// What the provider reports after a submission.
    fn evidence(&self) -> EvidenceOffer;

    /// Where its status events come from (a pull queue), run by `postbud serve`.
    fn evidence_source(&self) -> Option<Arc<dyn EvidenceSource>>;
}

/// The idempotency GUID of a delivery: 36 characters, the shape of a UUID (version 8, RFC 9562),
/// derived from the SHA-256 of the delivery id, so every attempt (and every process) sends the
/// same one.
pub fn idempotency_guid(delivery_id: &str) -> String {
    idempotency_guid_of(delivery_id, 0)
}

/// [`idempotency_guid`] of the `resend`th send of a delivery that failed for good
/// ([`postbud_channel::DeliveryContext::resend`]): Storecove processes only the first submission
/// under a GUID, a failed one included, so each resend has its own (the first is the delivery
/// id's own, as before resends were counted).
pub fn idempotency_guid_of(delivery_id: &str, resend: u32) -> String {
    use sha2::{Digest, Sha256};
    let key = match resend {
        0 => delivery_id.to_owned(),
        n => format!("{delivery_id}#resend-{n}"),
    };
    let digest = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // variant RFC 9562
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guid_is_stable_uuid_shaped_and_distinct_per_delivery() {
        let a = idempotency_guid("d-1");
        assert_eq!(a, idempotency_guid("d-1"));
        assert_ne!(a, idempotency_guid("d-2"));
        assert_eq!(a, idempotency_guid_of("d-1", 0));
        let resent = idempotency_guid_of("d-1", 1);
        assert_eq!(resent, idempotency_guid_of("d-1", 1));
        assert!(![a.as_str(), idempotency_guid_of("d-1", 2).as_str()].contains(&resent.as_str()));
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
    }
}
