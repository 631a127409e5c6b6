//! `[channels.<name>]` of kind `peppol`.

use std::time::Duration;

use postbud_ubl::Seller;
use secrecy::SecretString;
use serde::Deserialize;

/// The table of a `peppol` channel.
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub struct PeppolConfig {
    /// The access point provider: `storecove`.
    pub provider: String,
    /// The provider's API (`https://api.storecove.com/api/v2`).
    #[schemars(with = "String")]
    pub api_url: url::Url,
    /// The provider's API key (sent as a Bearer token).
    #[schemars(with = "String")]
    pub api_key: SecretString,
    /// The merchant's legal entity at the provider.
    pub legal_entity_id: u64,
    /// The merchant's own participant id (`0192:745707327`).
    pub sender: String,
    /// The SML zone the lookup asks.
    #[serde(default = "production_zone")]
    pub sml_zone: String,
    /// PEM file of the CA certificate(s) whose certificates may sign SMP answers (the
    /// OpenPeppol SMP CA).
    pub smp_trust: String,
    /// Ask this DNS resolver (`127.0.0.1:5353`) instead of the system's.
    #[serde(default)]
    pub dns: Option<String>,
    /// Extra roots for the SMPs' and the provider's TLS (PEM).
    #[serde(default)]
    pub smp_ca_file: Option<String>,
    /// Private hosts or addresses the lookup and the provider may reach (default none).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Each DNS query, SMP request and API request.
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Longest a lookup's answer is kept, whatever its DNS time to live.
    #[serde(default = "one_hour", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub lookup_cache: Duration,
    /// How often the provider's status queue is read when it was empty.
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
    /// What the UBL says about the merchant.
    pub seller: Seller,
}

impl PeppolConfig {
    /// Whether `key` is one of the table's own keys (a message that begins with one is about it).
    pub(crate) fn is_key(key: &str) -> bool {
        matches!(
            key,
            "provider"
                | "api_url"
                | "api_key"
                | "legal_entity_id"
                | "sender"
                | "sml_zone"
                | "smp_trust"
                | "dns"
                | "smp_ca_file"
                | "allow"
                | "timeout"
                | "lookup_cache"
                | "poll_interval"
        )
    }
}

fn production_zone() -> String {
    crate::lookup::PRODUCTION_ZONE.into()
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}
