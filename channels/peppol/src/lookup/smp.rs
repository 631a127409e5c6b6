//! The SMP's answer: `GET {smp}/{participant}/services/{document type}` (both percent-encoded
//! with their schemes, `iso6523-actorid-upis%3A%3A0192%3A745707327`) over https, the
//! `SignedServiceMetadata` (Peppol SMP 1.x, `busdox` namespace) verified by [`super::xmldsig`],
//! then read: the participant and document type must be the ones asked, and the billing
//! process must have an AS4 (`peppol-transport-as4-v2_0`) endpoint active now. A `Redirect`
//! to another SMP is followed once; its answer is verified the same way.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use postbud_channel::{
    ChannelError, ErrorKind, RetryClass,
    http::{self, target::Allow},
};
use postbud_ubl::identifiers::ParticipantId;
use roxmltree::{Document, Node};
use rustls_pki_types::UnixTime;

use super::{BILLING_PROCESS, INVOICE_DOCUMENT_TYPE, xmldsig};

/// The SMP publishing namespace (Peppol SMP 1.x).
pub const BUSDOX: &str = "http://busdox.org/serviceMetadata/publishing/1.0/";
/// The identifiers' namespace.
pub const IDS: &str = "http://busdox.org/transport/identifiers/1.0/";
/// WS-Addressing, for the endpoint's address.
pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
/// The participant identifier scheme.
pub const PARTICIPANT_SCHEME: &str = "iso6523-actorid-upis";
/// The document type identifier scheme.
pub const DOCUMENT_SCHEME: &str = "busdox-docid-qns";
/// The process identifier scheme.
pub const PROCESS_SCHEME: &str = "cenbii-procid-ubl";
/// The only transport profile in use (AS2 profiles were removed in 2023).
pub const AS4: &str = "peppol-transport-as4-v2_0";

/// Most of an SMP answer that is read (real ones are a few kilobytes).
pub const ANSWER_LIMIT: usize = 512 * 1024;

/// What Java's `URLEncoder` leaves alone, as the SMPs expect it: letters, digits and `-._*`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

/// A percent-encoded path segment.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

/// The service metadata URL of `participant`'s invoice document type at `smp`.
pub fn metadata_url(smp: &url::Url, participant: &ParticipantId) -> String {
    format!(
        "{}/{}/services/{}",
        smp.as_str().trim_end_matches('/'),
        encode(&format!("{PARTICIPANT_SCHEME}::{participant}")),
        encode(&format!("{DOCUMENT_SCHEME}::{INVOICE_DOCUMENT_TYPE}"))
    )
}

/// What the SMP says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// The receiving access point's AS4 endpoint.
    Endpoint(String),
    /// No BIS Billing 3.0 invoice for the participant, and why.
    None(String),
}

/// Who asks the SMPs: the client (rustls, no redirects, the SSRF guard as its resolver), the
/// operator's exceptions, the signers' CAs and the timeout.
#[derive(Debug, Clone)]
pub struct SmpClient {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// Private hosts an SMP may be at.
    pub allow: Allow,
    /// Who may sign answers.
    pub trust: xmldsig::Trust,
}

impl SmpClient {
    /// The service of `participant` at `smp`, following one redirect.
    pub async fn service(
        &self,
        smp: &url::Url,
        participant: &ParticipantId,
    ) -> Result<Service, ChannelError> {
        let url = metadata_url(smp, participant);
        match self.get(&url, participant).await? {
            Answer::Service(service) => Ok(service),
            Answer::Redirect(href) => {
                let target = url::Url::parse(&href)
                    .map_err(|e| refused(format!("{url} redirects to `{href}`, not a URL: {e}")))?;
                if target.scheme() != "https" {
                    return Err(refused(format!(
                        "{url} redirects to `{href}`: an SMP must be https"
                    )));
                }
                match self.get(target.as_str(), participant).await? {
                    Answer::Service(service) => Ok(service),
                    Answer::Redirect(again) => Err(refused(format!(
                        "{url} redirects to {href}, which redirects again to {again}: one redirect at most"
                    ))),
                }
            }
        }
    }

    async fn get(&self, url: &str, participant: &ParticipantId) -> Result<Answer, ChannelError> {
        let parsed = url::Url::parse(url).map_err(|e| refused(format!("`{url}`: {e}")))?;
        http::target::check_url(&parsed, &self.allow)
            .map_err(|why| refused(format!("the SMP is not a fit target: {why}")))?;
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/xml, text/xml")
            .send()
            .await
            .map_err(|e| http::transport_error(e).map_message(|m| format!("SMP {url}: {m}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Answer::Service(Service::None(format!(
                "the SMP lists no BIS Billing 3.0 invoice for {participant} ({url} answered 404)"
            ))));
        }
        if !status.is_success() {
            let retry_after = http::retry_after(response.headers());
            let body = http::read_prefix(response, http::ANSWER_LIMIT).await;
            let mut error = http::refusal(
                status,
                retry_after,
                format!("SMP {url} answered {status}: {}", http::excerpt(&body)),
            );
            if status.is_redirection() {
                error = error.map_message(|m| format!("{m} (HTTP redirects are not followed)"));
            }
            // Whatever the SMP answers, it is not "not registered" and not the invoice's fault:
            // the dispatch waits and asks again (an SMP being moved, a 403 being fixed).
            return Err(error.with_retry_class(RetryClass::Temporary));
        }
        let body = http::read_limited(response, ANSWER_LIMIT)
            .await
            .map_err(|e| ChannelError::from(e).map_message(|m| format!("SMP {url}: {m}")))?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| refused(format!("SMP {url}: the answer is not UTF-8")))?;
        let document = Document::parse(text)
            .map_err(|e| refused(format!("SMP {url}: the answer is not XML: {e}")))?;
        // Exclusive C14N leaves comments out of what the signature covers, and a value read
        // around one would not be the value signed: an SMP answer carries neither comments
        // nor processing instructions, so one that does is refused.
        if document.descendants().any(|n| n.is_comment() || n.is_pi()) {
            return Err(refused(format!(
                "SMP {url}: the answer carries a comment or processing instruction, which its signature does not cover"
            )));
        }
        xmldsig::verify(&document, &self.trust, UnixTime::now())
            .map_err(|why| refused(format!("SMP {url}: {why}")))?;
        read(&document, participant).map_err(|why| refused(format!("SMP {url}: {why}")))
    }
}

/// An SMP answer that breaks the rules: an error the dispatch retries (an SMP being fixed, a
/// certificate being renewed), never "not registered".
fn refused(message: String) -> ChannelError {
    ChannelError::new(ErrorKind::Refused, message).with_retry_class(RetryClass::Temporary)
}

/// A verified answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Service(Service),
    Redirect(String),
}

/// Reads a verified `SignedServiceMetadata`. Only the document element's own `ServiceMetadata`
/// child is read (never one inside the signature, which the digest does not cover).
fn read(document: &Document<'_>, participant: &ParticipantId) -> Result<Answer, String> {
    let root = document.root_element();
    if !root.has_tag_name((BUSDOX, "SignedServiceMetadata")) {
        return Err(format!(
            "the answer is `{}`, not a busdox SignedServiceMetadata",
            root.tag_name().name()
        ));
    }
    let metadata = only(root, BUSDOX, "ServiceMetadata")?;
    if let Some(redirect) = child(metadata, BUSDOX, "Redirect") {
        let href = redirect
            .attribute("href")
            .ok_or("the Redirect has no href")?;
        return Ok(Answer::Redirect(href.to_owned()));
    }
    let information = only(metadata, BUSDOX, "ServiceInformation")?;
    let (scheme, value) = identifier(only(information, IDS, "ParticipantIdentifier")?)?;
    if scheme != PARTICIPANT_SCHEME || !value.eq_ignore_ascii_case(&participant.to_string()) {
        return Err(format!(
            "the metadata is for participant `{scheme}::{value}`, not {participant}"
        ));
    }
    let (scheme, value) = identifier(only(information, IDS, "DocumentIdentifier")?)?;
    if scheme != DOCUMENT_SCHEME || value != INVOICE_DOCUMENT_TYPE {
        return Err(format!(
            "the metadata is for document type `{scheme}::{value}`, not the BIS Billing 3.0 invoice"
        ));
    }
    let processes = only(information, BUSDOX, "ProcessList")?;
    let billing = children(processes, BUSDOX, "Process").find(|process| {
        only(*process, IDS, "ProcessIdentifier")
            .and_then(identifier)
            .is_ok_and(|(scheme, value)| scheme == PROCESS_SCHEME && value == BILLING_PROCESS)
    });
    let Some(billing) = billing else {
        return Ok(Answer::Service(Service::None(format!(
            "the SMP lists the invoice for {participant} but not the billing process {BILLING_PROCESS}"
        ))));
    };
    let now = jiff::Timestamp::now();
    let mut passed = Vec::new();
    for endpoint in children(
        only(billing, BUSDOX, "ServiceEndpointList")?,
        BUSDOX,
        "Endpoint",
    ) {
        let profile = endpoint.attribute("transportProfile").unwrap_or_default();
        if profile != AS4 {
            passed.push(format!("transport profile `{profile}`"));
            continue;
        }
        if let Some(from) = date(endpoint, "ServiceActivationDate")?
            && now < from
        {
            passed.push(format!("an AS4 endpoint active from {from}"));
            continue;
        }
        if let Some(until) = date(endpoint, "ServiceExpirationDate")?
            && now > until
        {
            passed.push(format!("an AS4 endpoint expired at {until}"));
            continue;
        }
        let address = text_of(only(
            only(endpoint, WSA, "EndpointReference")?,
            WSA,
            "Address",
        )?)?;
        let address = address.trim();
        let url = url::Url::parse(address)
            .map_err(|e| format!("the AS4 endpoint `{address}` is not a URL: {e}"))?;
        if url.scheme() != "https" {
            return Err(format!("the AS4 endpoint `{address}` is not https"));
        }
        return Ok(Answer::Service(Service::Endpoint(address.to_owned())));
    }
    Ok(Answer::Service(Service::None(format!(
        "the SMP has no active AS4 endpoint for {participant}'s invoices (found: {})",
        if passed.is_empty() {
            "none".to_owned()
        } else {
            passed.join(", ")
        }
    ))))
}

fn children<'a, 'i>(
    node: Node<'a, 'i>,
    namespace: &'static str,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> + use<'a, 'i> {
    node.children()
        .filter(move |n| n.has_tag_name((namespace, name)))
}

fn child<'a, 'i>(
    node: Node<'a, 'i>,
    namespace: &'static str,
    name: &'static str,
) -> Option<Node<'a, 'i>> {
    children(node, namespace, name).next()
}

fn only<'a, 'i>(
    node: Node<'a, 'i>,
    namespace: &'static str,
    name: &'static str,
) -> Result<Node<'a, 'i>, String> {
    let mut found = children(node, namespace, name);
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(format!("{} has no {name}", node.tag_name().name())),
        (Some(_), Some(_)) => Err(format!(
            "{} has more than one {name}",
            node.tag_name().name()
        )),
    }
}

fn identifier<'a>(node: Node<'a, '_>) -> Result<(&'a str, &'a str), String> {
    let scheme = node
        .attribute("scheme")
        .ok_or_else(|| format!("{} has no scheme", node.tag_name().name()))?;
    Ok((scheme, whole_text(node)?))
}

/// All of an element's text (not only its first text node), refusing element content where a
/// value is expected.
fn text_of(node: Node<'_, '_>) -> Result<String, String> {
    if node.children().any(|c| c.is_element()) {
        return Err(format!(
            "{} holds elements where a value belongs",
            node.tag_name().name()
        ));
    }
    Ok(node.children().filter_map(|c| c.text()).collect())
}

/// [`text_of`], trimmed, for a value that must be one text node (identifiers).
fn whole_text<'a>(node: Node<'a, '_>) -> Result<&'a str, String> {
    let mut texts = node.children().filter(|c| c.is_text());
    match (texts.next(), texts.next()) {
        (None, _) => Ok(""),
        (Some(one), None) if !node.children().any(|c| c.is_element()) => {
            Ok(one.text().unwrap_or_default().trim())
        }
        _ => Err(format!("{} is not one value", node.tag_name().name())),
    }
}

/// An `xs:dateTime` (with or without an offset; UTC when without) or an `xs:date`.
fn date(endpoint: Node<'_, '_>, name: &'static str) -> Result<Option<jiff::Timestamp>, String> {
    let Some(node) = child(endpoint, BUSDOX, name) else {
        return Ok(None);
    };
    let text = text_of(node)?;
    let text = text.trim();
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(at));
    }
    if let Ok(at) = text.parse::<jiff::civil::DateTime>() {
        return at
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| Some(z.timestamp()))
            .map_err(|e| e.to_string());
    }
    if let Ok(day) = text.trim_end_matches('Z').parse::<jiff::civil::Date>() {
        return day
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| Some(z.timestamp()))
            .map_err(|e| e.to_string());
    }
    Err(format!("{name} `{text}` is not an xs:dateTime"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_percent_encoded_as_smps_expect() {
        let participant: ParticipantId = "0192:745707327".parse().expect("id");
        let url = metadata_url(
            &"https://smp.example/smp/".parse().expect("url"),
            &participant,
        );
        assert_eq!(
            url,
            "https://smp.example/smp/iso6523-actorid-upis%3A%3A0192%3A745707327/services/busdox-docid-qns%3A%3Aurn%3Aoasis%3Anames%3Aspecification%3Aubl%3Aschema%3Axsd%3AInvoice-2%3A%3AInvoice%23%23urn%3Acen.eu%3Aen16931%3A2017%23compliant%23urn%3Afdc%3Apeppol.eu%3A2017%3Apoacc%3Abilling%3A3.0%3A%3A2.1"
        );
    }
}
