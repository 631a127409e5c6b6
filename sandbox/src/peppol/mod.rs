//! The Peppol network as the lookup meets it: an SML (a DNS server on a loopback UDP port that
//! answers the U-NAPTR `Meta:SMP` record of registered participants and NXDOMAIN with an SOA
//! for the rest) and an SMP over https (a test CA's certificate) serving
//! `SignedServiceMetadata` signed by a key whose certificate a test "SMP CA" issued.
//!
//! The SML names are computed here with `data-encoding`'s base32, not with the lookup's code,
//! so the two check each other; the signed documents are written in their canonical form (each
//! namespace declared where it is used, no empty-element tags), so the digest is taken over the
//! bytes as written, independently of the lookup's canonicalization. `signxml` checks both.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use postbud_sandbox::peppol::{Fault, Peppol};
//! let peppol = Peppol::start().await?;
//! peppol.register("0192:745707327", "https://ap.example/as4");
//! peppol.fault("0192:745707327", Fault::TamperedEndpoint);
//! println!("dns {} trust {:?} ca {:?}", peppol.dns_addr(), peppol.trust_pem(), peppol.ca_file());
//! # Ok(()) }
//! ```

mod dns;
mod pki;
mod smp;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use pki::SIGNING_KEY;

/// The SML zone the sandbox answers for (the test SML's).
pub const ZONE: &str = "participant.sml.test.tech.peppol.org";

/// The BIS Billing 3.0 invoice document type the SMP serves (its own copy of the id).
pub const INVOICE: &str = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1";

/// The billing process.
pub const BILLING: &str = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0";

/// What goes wrong for one participant, on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The endpoint address is changed after signing.
    TamperedEndpoint,
    /// The endpoint address is changed after signing and the digest recomputed to match, the
    /// signature over `SignedInfo` left as it was: only checking that signature catches it.
    ResignedDigest,
    /// Signed for another participant (this id and an `X`), with a comment put before the `X`
    /// after signing: exclusive C14N leaves comments out, so the digest still matches, and a
    /// reader of the first text node alone would take it for this participant's answer.
    CommentInValue,
    /// The SMP answers a signed `Redirect` to a second SMP path, which answers properly.
    Redirect,
    /// The second SMP path redirects again.
    DoubleRedirect,
    /// The SMP has no invoice document type for the participant (404).
    MissingDocumentType,
    /// The invoice is listed, but under another process than billing.
    OtherProcess,
    /// The only AS4 endpoint expired yesterday.
    ExpiredEndpoint,
    /// Signed by a certificate of a CA the tests do not trust.
    UntrustedSigner,
    /// Signed by an expired certificate of the trusted SMP CA.
    ExpiredSigner,
    /// The answer carries no signature.
    Unsigned,
    /// The SMP answers 500.
    ServerError,
    /// The SMP waits this long before answering.
    Slow(Duration),
    /// The DNS server never answers this participant's query.
    DnsSilent,
    /// The DNS server answers SERVFAIL.
    DnsServfail,
    /// The SMP serves this exact body (a document signed elsewhere, e.g. by `signxml`).
    Body(String),
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// By lowercased participant id: the endpoint, the NAPTR TTL and the fault.
    participants: HashMap<String, Participant>,
    /// By SML label.
    dns_queries: HashMap<String, usize>,
    smp_requests: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct Participant {
    pub(crate) id: String,
    pub(crate) endpoint: String,
    pub(crate) ttl: u32,
    pub(crate) fault: Option<Fault>,
}

pub(crate) type Shared = Arc<Mutex<Registry>>;

pub(crate) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running SML and SMP; stopped on drop.
#[derive(Debug)]
pub struct Peppol {
    registry: Shared,
    dns_addr: SocketAddr,
    smp_url: String,
    dir: tempfile::TempDir,
    signer_pem: String,
    signer: Arc<smp::Signer>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Peppol {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Peppol {
    /// Starts the SML and the SMP on free loopback ports.
    pub async fn start() -> std::io::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = pki::Pki::new().map_err(std::io::Error::other)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("tls-ca.pem"), &pki.tls_ca)?;
        std::fs::write(dir.path().join("smp-ca.pem"), &pki.smp_ca)?;
        std::fs::write(dir.path().join("signer.pem"), &pki.signer_pem)?;
        std::fs::write(dir.path().join("signer.key"), SIGNING_KEY)?;
        let registry = Shared::default();
        let (smp_url, signer, smp_task) = smp::start(Arc::clone(&registry), &pki).await?;
        let (dns_addr, dns_task) = dns::start(Arc::clone(&registry), smp_url.clone()).await?;
        Ok(Self {
            registry,
            dns_addr,
            smp_url,
            dir,
            signer_pem: pki.signer_pem,
            signer,
            tasks: vec![smp_task, dns_task],
        })
    }

    /// Registers `participant` (`0192:745707327`) with its AS4 `endpoint`, its NAPTR record
    /// living 300 seconds.
    pub fn register(&self, participant: &str, endpoint: &str) {
        self.register_with_ttl(participant, endpoint, 300);
    }

    /// Registers `participant` with a NAPTR TTL of `ttl` seconds.
    pub fn register_with_ttl(&self, participant: &str, endpoint: &str, ttl: u32) {
        lock(&self.registry).participants.insert(
            participant.to_lowercase(),
            Participant {
                id: participant.to_owned(),
                endpoint: endpoint.to_owned(),
                ttl,
                fault: None,
            },
        );
    }

    /// Makes `fault` happen for a registered `participant` from now on (`None` clears it).
    pub fn fault(&self, participant: &str, fault: impl Into<Option<Fault>>) {
        if let Some(p) = lock(&self.registry)
            .participants
            .get_mut(&participant.to_lowercase())
        {
            p.fault = fault.into();
        }
    }

    /// The DNS server (`127.0.0.1:<port>`): the lookup's `dns`.
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// The SMP's base URL (`https://127.0.0.1:<port>/smp`), as the NAPTR records give it.
    pub fn smp_url(&self) -> &str {
        &self.smp_url
    }

    /// The SMP CA's certificate (PEM): the lookup's `smp_trust`.
    pub fn trust_pem(&self) -> PathBuf {
        self.dir.path().join("smp-ca.pem")
    }

    /// The CA of the SMP's TLS certificate (PEM): the lookup's `smp_ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls-ca.pem")
    }

    /// The signer's certificate (PEM) and key (PKCS#8 PEM) files, for an independent signer.
    pub fn signer_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("signer.pem"),
            self.dir.path().join("signer.key"),
        )
    }

    /// The signer's certificate (PEM).
    pub fn signer_pem(&self) -> &str {
        &self.signer_pem
    }

    /// DNS queries for `participant`'s SML name so far, registered or not.
    pub fn dns_queries(&self, participant: &str) -> usize {
        lock(&self.registry)
            .dns_queries
            .get(&dns::label(participant))
            .copied()
            .unwrap_or(0)
    }

    /// Requests for `participant`'s service metadata so far (redirect targets included).
    pub fn smp_requests(&self, participant: &str) -> usize {
        lock(&self.registry)
            .smp_requests
            .get(&participant.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// The signed service metadata the SMP would serve `participant` now (with its fault), as
    /// the lookup would get it from the SMP path; `None` when it is not registered.
    pub fn signed_metadata(&self, participant: &str) -> Option<String> {
        let p = lock(&self.registry)
            .participants
            .get(&participant.to_lowercase())
            .cloned()?;
        Some(self.signer.answer(&p, smp::Hop::First))
    }
}
