//! Storecove's API as the access point: `POST /document_submissions` with the UBL as raw
//! document data and the idempotency GUID, status events from the pull queue
//! (`GET/DELETE /webhook_instances`), evidence from `/document_submissions/{guid}/evidence`.

use std::{sync::Arc, time::Duration};

use postbud_channel::{ChannelError, EvidenceOffer, EvidenceSource};
use secrecy::SecretString;

use crate::provider::{AccessPoint, Submission, Submitted};

/// What the Storecove provider is configured with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StorecoveSettings {
    /// `https://api.storecove.com/api/v2`.
    pub api_url: url::Url,
    /// The Bearer API key.
    pub api_key: SecretString,
    /// The merchant's legal entity at Storecove.
    pub legal_entity_id: u64,
    /// Each request.
    pub timeout: Duration,
    /// How often the pull queue is read when it was empty.
    pub poll_interval: Duration,
    /// Private hosts or addresses the API may be at (the sandbox on loopback needs none).
    pub allow: Vec<String>,
}

/// Storecove.
#[derive(Debug)]
pub struct Storecove {
    _private: (),
}

impl Storecove {
    /// The provider with its settings.
    pub fn new(settings: StorecoveSettings) -> Result<Self, String> {
        let _ = settings;
        unimplemented!("the Storecove lane fills this in")
    }
}

#[async_trait::async_trait]
impl AccessPoint for Storecove {
    async fn submit(&self, submission: &Submission<'_>) -> Result<Submitted, ChannelError> {
        let _ = submission;
        unimplemented!()
    }

    async fn check(&self) -> Result<String, ChannelError> {
        unimplemented!()
    }

    fn evidence(&self) -> EvidenceOffer {
        unimplemented!()
    }

    fn evidence_source(&self) -> Option<Arc<dyn EvidenceSource>> {
        unimplemented!()
    }
}
