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

use std::{fmt, sync::Arc};

use postbud_channel::{
    BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Directory, EvidenceOffer,
    EvidenceSource, Invoice, Reach, Receipt, Recipient,
};
use postbud_ubl::{Seller, identifiers::ParticipantId};

use self::{
    lookup::{Found, Lookup, LookupSettings},
    provider::{AccessPoint, Submission, idempotency_guid_of},
    storecove::{Storecove, StorecoveSettings},
};

postbud_channel::register_channel! {
    /// The factory of kind `peppol`.
    pub static FACTORY = {
        kind: "peppol",
        description: "EHF / Peppol BIS Billing 3.0 to the buyer's e-invoice inbox through an access point (Storecove), looked up in the Peppol network before capture",
        crate_name: env!("CARGO_PKG_NAME"),
        example: "[channels.peppol]\nkind = \"peppol\"\nprovider = \"storecove\"\napi_url = \"https://api.storecove.com/api/v2\"\napi_key_file = \"/run/secrets/storecove\"\nlegal_entity_id = 123456\nsender = \"0192:745707327\"\nsmp_trust = \"/etc/postbud/peppol-smp-ca.pem\"\n\n[channels.peppol.seller]\nname = \"Merchant AS\"\norganization_number = \"745707327\"\nvat_number = \"NO745707327MVA\"\naddress = { line = \"Storgata 1\", postal_code = \"0151\", city = \"Oslo\", country = \"NO\" }\n",
        config: PeppolConfig,
        build: build,
    };
}

/// Links this crate's kind explicitly.
pub fn register(
    registry: &mut postbud_channel::Registry,
) -> Result<(), postbud_channel::DuplicateKind> {
    registry.add(&FACTORY)
}

/// Sends BIS Billing 3.0 invoices through an access point; its directory is the Peppol lookup.
pub struct PeppolChannel {
    sender: ParticipantId,
    seller: Seller,
    access_point: Arc<dyn AccessPoint>,
    directory: Arc<PeppolDirectory>,
}

impl fmt::Debug for PeppolChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeppolChannel")
            .field("sender", &self.sender.to_string())
            .field("access_point", &self.access_point)
            .finish_non_exhaustive()
    }
}

/// The Peppol lookup as the engine's [`Directory`] for `when.peppol`.
#[derive(Debug)]
pub struct PeppolDirectory {
    lookup: Lookup,
}

impl PeppolDirectory {
    /// Whether the buyer (country and organisation number) receives BIS Billing 3.0 invoices:
    /// an identifier that fails its check is an answer (not reachable), never a lookup.
    pub async fn reach(&self, recipient: &Recipient) -> Result<Reach, ChannelError> {
        let participant = match buyer_participant(recipient) {
            Ok(participant) => participant,
            Err(why) => return Ok(Reach::Unreachable(why)),
        };
        Ok(match self.lookup.find(&participant).await? {
            Found::Registered { smp, endpoint, .. } => Reach::Reachable(format!(
                "{participant} receives BIS Billing 3.0 invoices (SMP {smp}, access point {endpoint})"
            )),
            Found::NotRegistered { reason, .. } => Reach::Unreachable(reason),
        })
    }
}

#[async_trait::async_trait]
impl Directory for PeppolDirectory {
    fn network(&self) -> &str {
        "peppol"
    }

    async fn look_up(&self, recipient: &Recipient) -> Result<Reach, ChannelError> {
        self.reach(recipient).await
    }
}

/// The buyer's participant id, or why there is none.
fn buyer_participant(recipient: &Recipient) -> Result<ParticipantId, String> {
    let Some(number) = recipient.organization_number.as_deref() else {
        return Err("the buyer has no organisation number".into());
    };
    let Some(country) = recipient.country.as_deref() else {
        return Err("the buyer's billing address has no country".into());
    };
    ParticipantId::of_business(country, number)
        .map_err(|e| format!("the buyer's identifier cannot be used over Peppol: {e}"))
}

fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    let c: PeppolConfig = ctx.config.extract()?;
    let cfg = &ctx.config;
    if c.provider != "storecove" {
        return Err(cfg.error(
            "provider",
            format!(
                "`{}` is not a provider Postbud knows: expected \"storecove\" (or plug in your own `AccessPoint`)",
                c.provider.escape_debug()
            ),
        ));
    }
    let sender: ParticipantId = c.sender.parse().map_err(|e| cfg.error("sender", e))?;
    let seller_id = c
        .seller
        .check()
        .map_err(|e| cfg.error(&format!("seller.{}", e.key), e.reason))?;
    if seller_id != sender && sender.scheme() == seller_id.scheme() {
        return Err(cfg.error(
            "sender",
            format!("`{sender}` is not the seller's organisation number ({seller_id}): the invoice would say one sender and the network another"),
        ));
    }
    let dns = c
        .dns
        .as_deref()
        .map(|d| {
            d.parse()
                .map_err(|e| cfg.error("dns", format!("`{d}` is not an address:port ({e})")))
        })
        .transpose()?;
    let lookup = Lookup::new(LookupSettings {
        sml_zone: c.sml_zone.clone(),
        smp_trust: cfg.path("smp_trust", &c.smp_trust),
        dns,
        smp_ca_file: c.smp_ca_file.as_deref().map(|p| cfg.path("smp_ca_file", p)),
        allow: c.allow.clone(),
        timeout: c.timeout,
        cache_max: c.lookup_cache,
    })
    .map_err(|e| cfg.error("smp_trust", e))?;
    let access_point = Storecove::new(StorecoveSettings {
        api_url: c.api_url.clone(),
        api_key: c.api_key.clone(),
        legal_entity_id: c.legal_entity_id,
        timeout: c.timeout,
        poll_interval: c.poll_interval,
        allow: c.allow.clone(),
    })
    .map_err(|e| match e.split_once(": ") {
        // The provider's messages begin with the key they are about.
        Some((key, why)) if PeppolConfig::is_key(key) => cfg.error(key, why),
        _ => cfg.error("api_url", e),
    })?;
    Ok(Box::new(PeppolChannel {
        sender,
        seller: c.seller,
        access_point: Arc::new(access_point),
        directory: Arc::new(PeppolDirectory { lookup }),
    }))
}

#[async_trait::async_trait]
impl Channel for PeppolChannel {
    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        let customer = &invoice.customer;
        let mut recipient = Recipient::default();
        recipient.country = customer.country.clone();
        recipient.organization_number = customer.organization_number.clone();
        // Routed here without a lookup, or the number changed after it: never sent over Peppol
        // with an identifier the access point would refuse.
        let receiver = buyer_participant(&recipient).map_err(ChannelError::invalid_input)?;
        let ubl =
            postbud_ubl::invoice(&self.seller, invoice).map_err(ChannelError::invalid_input)?;
        let guid = idempotency_guid_of(&ctx.delivery_id, ctx.resend);
        let submitted = self
            .access_point
            .submit(&Submission {
                delivery_id: &ctx.delivery_id,
                idempotency_guid: guid.clone(),
                invoice_number: &invoice.invoice_number,
                sender: &self.sender,
                receiver: &receiver,
                ubl: ubl.as_bytes(),
                attempt: ctx.attempt,
                sent_before: ctx.sent_before,
            })
            .await?;
        // The reference is the idempotency GUID, not the provider's id: it is known before the
        // answer, so a status event about a submission whose answer was lost still finds it.
        Ok(Receipt::new(format!("to {receiver}: {}", submitted.detail)).with_reference(guid))
    }

    async fn check(&self) -> Result<String, ChannelError> {
        let own = match self.directory.lookup.find(&self.sender).await? {
            Found::Registered { smp, endpoint, .. } => {
                format!(
                    "sender {} is registered (SMP {smp}, access point {endpoint})",
                    self.sender
                )
            }
            // A wrong `sml_zone` looks the same from here (everyone is "not registered"):
            // the merchant knows whether it registered, so it is told where to look.
            Found::NotRegistered { reason, .. } => format!(
                "sender {} is not registered to receive BIS Billing 3.0 ({reason}); it can still send. If it is registered, `sml_zone` names another network than its SMP's (production: `{}`), and no buyer will be found either",
                self.sender,
                lookup::PRODUCTION_ZONE
            ),
        };
        let provider = self.access_point.check().await?;
        Ok(format!("{own}; {provider}"))
    }

    fn reference_before(&self, ctx: &DeliveryContext) -> Option<String> {
        // The GUID the submission goes under, as the receipt will name it.
        Some(idempotency_guid_of(&ctx.delivery_id, ctx.resend))
    }

    fn evidence(&self) -> EvidenceOffer {
        self.access_point.evidence()
    }

    fn evidence_source(&self) -> Option<Arc<dyn EvidenceSource>> {
        self.access_point.evidence_source()
    }

    fn directory(&self) -> Option<Arc<dyn Directory>> {
        Some(Arc::clone(&self.directory) as Arc<dyn Directory>)
    }
}
