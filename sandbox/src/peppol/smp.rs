//! The SMP: `GET /smp/{iso6523-actorid-upis::id}/services/{busdox-docid-qns::doctype}` over
//! https, the identifiers percent-encoded (a raw `:` is refused with 400, as an unparsable id
//! is), answering the signed service metadata of a registered participant, 404 for anyone
//! else or another document type, and the participant's fault. `/smp2/…` and `/smp3/…` are the
//! targets of the redirects.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use ring::{
    rand::SystemRandom,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest as _, Sha256};

use super::{BILLING, Fault, INVOICE, Participant, Shared, lock, pki::Pki};

const BUSDOX: &str = "http://busdox.org/serviceMetadata/publishing/1.0/";
const IDS: &str = "http://busdox.org/transport/identifiers/1.0/";
const WSA: &str = "http://www.w3.org/2005/08/addressing";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Which SMP path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    First,
    Second,
    Third,
}

/// Signs the answers.
pub(crate) struct Signer {
    base: String,
    key: RsaKeyPair,
    signer: Vec<u8>,
    untrusted: Vec<u8>,
    expired: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("base", &self.base).finish()
    }
}

pub(crate) async fn start(
    registry: Shared,
    pki: &Pki,
) -> std::io::Result<(String, Arc<Signer>, tokio::task::JoinHandle<()>)> {
    let certificate = CertificateDer::from_pem_slice(pki.tls_certificate.as_bytes())
        .map_err(std::io::Error::other)?;
    let key =
        PrivateKeyDer::from_pem_slice(pki.tls_key.as_bytes()).map_err(std::io::Error::other)?;
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .map_err(std::io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let origin = format!("https://{addr}");
    let signing_key =
        rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(super::SIGNING_KEY.as_bytes())
            .map_err(std::io::Error::other)?;
    let signer = Arc::new(Signer {
        base: origin.clone(),
        key: RsaKeyPair::from_pkcs8(signing_key.secret_pkcs8_der())
            .map_err(|e| std::io::Error::other(e.to_string()))?,
        signer: pki.signer.clone(),
        untrusted: pki.untrusted_signer.clone(),
        expired: pki.expired_signer.clone(),
    });
    let answers = Arc::clone(&signer);
    let app = Router::new().fallback(move |request: Request| {
        let registry = Arc::clone(&registry);
        let signer = Arc::clone(&answers);
        async move { handle(&registry, &signer, request).await }
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(app),
                    )
                    .await;
            });
        }
    });
    Ok((format!("{origin}/smp"), signer, task))
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, text.to_owned()).into_response()
}

async fn handle(registry: &Shared, signer: &Signer, request: Request) -> Response {
    if request.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    let ["", base, participant, "services", document] = segments[..] else {
        return plain(StatusCode::NOT_FOUND, "no such resource");
    };
    let hop = match base {
        "smp" => Hop::First,
        "smp2" => Hop::Second,
        "smp3" => Hop::Third,
        _ => return plain(StatusCode::NOT_FOUND, "no such SMP"),
    };
    if participant.contains(':') || document.contains(':') {
        return plain(
            StatusCode::BAD_REQUEST,
            "the identifiers must be percent-encoded (`%3A%3A`)",
        );
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8().map(|d| d.into_owned());
    let (Ok(participant), Ok(document)) = (decode(participant), decode(document)) else {
        return plain(StatusCode::BAD_REQUEST, "not UTF-8");
    };
    let Some(participant) = participant.strip_prefix("iso6523-actorid-upis::") else {
        return plain(StatusCode::BAD_REQUEST, "unparsable participant identifier");
    };
    let Some(document) = document.strip_prefix("busdox-docid-qns::") else {
        return plain(
            StatusCode::BAD_REQUEST,
            "unparsable document type identifier",
        );
    };
    let found = {
        let mut registry = lock(registry);
        let found = registry
            .participants
            .get(&participant.to_lowercase())
            .cloned();
        if found.is_some() {
            *registry
                .smp_requests
                .entry(participant.to_lowercase())
                .or_default() += 1;
        }
        found
    };
    let Some(participant) = found else {
        return plain(StatusCode::NOT_FOUND, "unknown participant");
    };
    match &participant.fault {
        Some(Fault::ServerError) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the SMP's database is down",
            );
        }
        Some(Fault::Slow(wait)) => tokio::time::sleep(*wait).await,
        Some(Fault::MissingDocumentType) => {
            return plain(StatusCode::NOT_FOUND, "no such document type");
        }
        _ => {}
    }
    if document != INVOICE {
        return plain(StatusCode::NOT_FOUND, "no such document type");
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Body::from(signer.answer(&participant, hop)))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

fn text(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Signer {
    /// The answer of path `hop` for `participant`, with its fault.
    pub(crate) fn answer(&self, participant: &Participant, hop: Hop) -> String {
        let fault = participant.fault.as_ref();
        if let Some(Fault::Body(body)) = fault {
            return body.clone();
        }
        let redirect_to = match (fault, hop) {
            (Some(Fault::Redirect | Fault::DoubleRedirect), Hop::First) => Some("smp2"),
            (Some(Fault::DoubleRedirect), Hop::Second) => Some("smp3"),
            _ => None,
        };
        let inner = match redirect_to {
            Some(path) => {
                let href = format!(
                    "{}/{path}/{}/services/{}",
                    self.base,
                    encode(&format!("iso6523-actorid-upis::{}", participant.id)),
                    encode(&format!("busdox-docid-qns::{INVOICE}"))
                );
                format!(
                    "<ServiceMetadata><Redirect href=\"{}\"><CertificateUID>Postbud Sandbox SMP signer</CertificateUID></Redirect></ServiceMetadata>",
                    text(&href).replace('"', "&quot;")
                )
            }
            None => self.metadata(participant),
        };
        let certificate = match fault {
            Some(Fault::UntrustedSigner) => &self.untrusted,
            Some(Fault::ExpiredSigner) => &self.expired,
            _ => &self.signer,
        };
        let document = if fault == Some(&Fault::Unsigned) {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SignedServiceMetadata xmlns=\"{BUSDOX}\">{inner}</SignedServiceMetadata>"
            )
        } else {
            self.sign(&inner, certificate)
        };
        if fault == Some(&Fault::ResignedDigest) {
            // The tampered document with its own digest, carrying the genuine document's
            // signature value (over a `SignedInfo` with the genuine digest).
            let tampered = self.sign(
                &inner.replace(
                    &text(&participant.endpoint),
                    "https://ap.attacker.example/as4",
                ),
                certificate,
            );
            return tampered.replace(signature_value(&tampered), signature_value(&document));
        }
        if fault == Some(&Fault::CommentInValue) {
            // Signed for another participant (the id and an `X`), then a comment put before
            // the `X`: the digest still matches (C14N leaves comments out), and a reader of the
            // first text node alone would take it for this participant's.
            let other = Participant {
                id: format!("{}X", participant.id),
                ..participant.clone()
            };
            let signed = self.sign(&self.metadata(&other), certificate);
            let id = text(&participant.id);
            return signed.replace(
                &format!(">{id}X</ids:ParticipantIdentifier>"),
                &format!(">{id}<!---->X</ids:ParticipantIdentifier>"),
            );
        }
        if fault == Some(&Fault::TamperedEndpoint) {
            return document.replace(
                &text(&participant.endpoint),
                "https://ap.attacker.example/as4",
            );
        }
        document
    }

    fn metadata(&self, participant: &Participant) -> String {
        let process = if participant.fault == Some(Fault::OtherProcess) {
            "urn:fdc:peppol.eu:2017:poacc:selfbilling:01:1.0"
        } else {
            BILLING
        };
        let expiration = if participant.fault == Some(Fault::ExpiredEndpoint) {
            let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
            format!(
                "<ServiceExpirationDate>{}</ServiceExpirationDate>",
                yesterday.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        } else {
            String::new()
        };
        let ap_certificate = base64::engine::general_purpose::STANDARD.encode(&self.signer);
        format!(
            "<ServiceMetadata><ServiceInformation>\
             <ids:ParticipantIdentifier xmlns:ids=\"{IDS}\" scheme=\"iso6523-actorid-upis\">{id}</ids:ParticipantIdentifier>\
             <ids:DocumentIdentifier xmlns:ids=\"{IDS}\" scheme=\"busdox-docid-qns\">{INVOICE}</ids:DocumentIdentifier>\
             <ProcessList><Process>\
             <ids:ProcessIdentifier xmlns:ids=\"{IDS}\" scheme=\"cenbii-procid-ubl\">{process}</ids:ProcessIdentifier>\
             <ServiceEndpointList><Endpoint transportProfile=\"peppol-transport-as4-v2_0\">\
             <wsa:EndpointReference xmlns:wsa=\"{WSA}\"><wsa:Address>{endpoint}</wsa:Address></wsa:EndpointReference>\
             <RequireBusinessLevelSignature>false</RequireBusinessLevelSignature>\
             <ServiceActivationDate>2020-01-01T00:00:00Z</ServiceActivationDate>{expiration}\
             <Certificate>{ap_certificate}</Certificate>\
             <ServiceDescription>Postbud sandbox access point</ServiceDescription>\
             <TechnicalContactUrl>https://ap.example/contact</TechnicalContactUrl>\
             </Endpoint></ServiceEndpointList></Process></ProcessList>\
             </ServiceInformation></ServiceMetadata>",
            id = text(&participant.id),
            endpoint = text(&participant.endpoint),
        )
    }

    /// The signed document: written in its exclusive canonical form, so the digest is the
    /// SHA-256 of the bytes as written without the signature.
    fn sign(&self, inner: &str, certificate: &[u8]) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let unsigned =
            format!("<SignedServiceMetadata xmlns=\"{BUSDOX}\">{inner}</SignedServiceMetadata>");
        let digest = b64(&Sha256::digest(unsigned.as_bytes()));
        let info = format!(
            "<CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></CanonicalizationMethod>\
             <SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"></SignatureMethod>\
             <Reference URI=\"\"><Transforms>\
             <Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"></Transform>\
             <Transform Algorithm=\"{EXC_C14N}\"></Transform></Transforms>\
             <DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"></DigestMethod>\
             <DigestValue>{digest}</DigestValue></Reference>"
        );
        let canonical_info = format!("<SignedInfo xmlns=\"{DSIG}\">{info}</SignedInfo>");
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                canonical_info.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing with a valid key");
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SignedServiceMetadata xmlns=\"{BUSDOX}\">{inner}\
             <Signature xmlns=\"{DSIG}\"><SignedInfo>{info}</SignedInfo>\
             <SignatureValue>{}</SignatureValue>\
             <KeyInfo><X509Data><X509Certificate>{}</X509Certificate></X509Data></KeyInfo>\
             </Signature></SignedServiceMetadata>",
            b64(&signature),
            b64(certificate)
        )
    }
}

/// The text of a signed document's `SignatureValue`.
fn signature_value(document: &str) -> &str {
    let start = document.find("<SignatureValue>").expect("signed") + "<SignatureValue>".len();
    let end = document[start..].find("</SignatureValue>").expect("closed") + start;
    &document[start..end]
}

/// Percent-encodes a path segment (everything but letters, digits and `-._*`).
fn encode(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'*');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}
