//! The Peppol lookup: whether a participant receives a BIS Billing 3.0 invoice, asked of the
//! network itself. The participant id is hashed into its SML name (SHA-256, base32, under
//! `iso6523-actorid-upis.<zone>`), the name's U-NAPTR `Meta:SMP` record gives the SMP, and the
//! SMP's signed service metadata for the invoice document type and the billing process is read
//! over https and its XML signature verified against the SMP CA the deployment trusts.
//!
//! "Not registered" (NXDOMAIN, no such document type or process) is an answer; a timeout, a
//! 5xx, a signature that does not verify or a signer the deployment does not trust is an error,
//! and the dispatch that asked is retried with nothing captured.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use postbud_channel::{ChannelError, http::target};
use postbud_ubl::identifiers::ParticipantId;

mod c14n;
mod cache;
pub mod dns;
pub mod sml;
pub mod smp;
pub mod xmldsig;

/// The BIS Billing 3.0 invoice's document type identifier (under `busdox-docid-qns`).
pub const INVOICE_DOCUMENT_TYPE: &str = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1";

/// The billing process identifier (under `cenbii-procid-ubl`).
pub const BILLING_PROCESS: &str = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0";

/// The production SML zone.
pub const PRODUCTION_ZONE: &str = "participant.sml.prod.tech.peppol.org";

/// What the lookup found about one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Found {
    /// Registered for the invoice document type and the billing process: the receiving access
    /// point's endpoint, as the SMP's verified metadata gives it.
    Registered {
        /// The SMP the SML pointed at.
        smp: String,
        /// The receiving access point's AS4 endpoint.
        endpoint: String,
        /// How long the answer may be kept.
        ttl: Duration,
    },
    /// Not a receiver of BIS Billing 3.0 invoices, and why (NXDOMAIN, the SMP has no such
    /// document type or process).
    NotRegistered {
        /// Why, for the dispatch's history.
        reason: String,
        /// How long the answer may be kept.
        ttl: Duration,
    },
}

/// What the lookup is configured with (the channel's table).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LookupSettings {
    /// The SML zone (`participant.sml.prod.tech.peppol.org`).
    pub sml_zone: String,
    /// PEM file of the CA certificate(s) whose certificates may sign SMP answers.
    pub smp_trust: std::path::PathBuf,
    /// Ask this DNS resolver (`127.0.0.1:5353`) instead of the system's.
    pub dns: Option<std::net::SocketAddr>,
    /// Extra roots for the SMPs' TLS.
    pub smp_ca_file: Option<std::path::PathBuf>,
    /// Private hosts or addresses an SMP may be at.
    pub allow: Vec<String>,
    /// Each DNS query and each SMP request.
    pub timeout: Duration,
    /// Longest an answer is kept, whatever its DNS time to live.
    pub cache_max: Duration,
}

impl LookupSettings {
    /// The settings for the production SML with the SMP CA(s) in `smp_trust`: the system's
    /// resolver, the system's TLS roots, no private SMPs, 10 seconds per query or request, and
    /// answers kept an hour at most.
    pub fn new(smp_trust: impl Into<std::path::PathBuf>) -> Self {
        Self {
            sml_zone: PRODUCTION_ZONE.into(),
            smp_trust: smp_trust.into(),
            dns: None,
            smp_ca_file: None,
            allow: Vec::new(),
            timeout: Duration::from_secs(10),
            cache_max: Duration::from_secs(3600),
        }
    }
}

/// The lookup, configured by the channel's table.
#[derive(Debug)]
pub struct Lookup {
    zone: String,
    dns: SocketAddr,
    timeout: Duration,
    cache_max: Duration,
    smp: smp::SmpClient,
    cache: Arc<cache::Cache>,
}

impl Lookup {
    /// The lookup with its settings; an error names what is wrong (an unreadable trust file).
    pub fn new(settings: LookupSettings) -> Result<Self, String> {
        let trust_path = &settings.smp_trust;
        let pem = std::fs::read(trust_path)
            .map_err(|e| format!("smp_trust `{}`: {e}", trust_path.display()))?;
        let trust = xmldsig::Trust::from_pem(&pem)
            .map_err(|e| format!("smp_trust `{}`: {e}", trust_path.display()))?;
        let dns = match settings.dns {
            Some(server) => server,
            None => dns::system_server()?,
        };
        let allow = target::Allow::new(settings.allow.clone()).without_loopback();
        let mut http = postbud_channel::http::client(settings.timeout)
            .dns_resolver(Arc::new(target::GuardedResolver(allow.clone())));
        if let Some(path) = &settings.smp_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("smp_ca_file `{}`: {e}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "smp_ca_file `{}` is not PEM certificates: {e}",
                    path.display()
                )
            })?;
            if roots.is_empty() {
                return Err(format!(
                    "smp_ca_file `{}` holds no certificate",
                    path.display()
                ));
            }
            http = http.tls_certs_merge(roots);
        }
        let http = http
            .build()
            .map_err(|e| format!("the SMP HTTP client: {e}"))?;
        Ok(Self {
            zone: settings.sml_zone,
            dns,
            timeout: settings.timeout,
            cache_max: settings.cache_max,
            smp: smp::SmpClient { http, allow, trust },
            cache: Arc::default(),
        })
    }

    /// Whether `participant` receives BIS Billing 3.0 invoices (cached for the answer's time
    /// to live). An error is temporary or a configuration problem, never "not registered".
    ///
    /// Concurrent finds for one participant that is not cached each ask the network; the
    /// answers are the same, and the cache keeps the last.
    pub async fn find(&self, participant: &ParticipantId) -> Result<Found, ChannelError> {
        let key = participant.to_string().to_lowercase();
        if let Some(found) = self.cache.get(&key) {
            return Ok(found);
        }
        let name = sml::name(participant, &self.zone);
        let found = match dns::find_smp(self.dns, &name, self.timeout).await? {
            dns::Answer::None { reason, ttl } => Found::NotRegistered {
                reason: format!("{participant}: {reason}"),
                ttl: ttl.min(self.cache_max),
            },
            dns::Answer::Smp { url, ttl } => {
                let ttl = ttl.min(self.cache_max);
                match self.smp.service(&url, participant).await? {
                    smp::Service::Endpoint(endpoint) => Found::Registered {
                        smp: url.to_string(),
                        endpoint,
                        ttl,
                    },
                    smp::Service::None(reason) => Found::NotRegistered { reason, ttl },
                }
            }
        };
        let ttl = match &found {
            Found::Registered { ttl, .. } | Found::NotRegistered { ttl, .. } => *ttl,
        };
        self.cache.put(key, found.clone(), ttl);
        Ok(found)
    }
}
