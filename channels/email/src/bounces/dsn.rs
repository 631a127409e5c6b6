//! Reading a bounce: an RFC 3464 delivery status notification, or one of the common
//! non-standard bounces, into [`Evidence`] about the delivery it names.
//!
//! MIME is mail-parser's; the `message/delivery-status` part's blocks are header fields, read by
//! mail-parser's header parser too. What is ours is the meaning: which delivery (the `ENVID`,
//! the VERP return path the bounce was sent to, or the returned `Message-ID`), which state
//! (RFC 3464 `Action` and RFC 3463 `Status`), why (`Diagnostic-Code`), and who says so
//! (`Reporting-MTA`).

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use postbud_channel::{Correlation, Evidence, EvidenceState, bytes::Bytes};

use super::{ReturnPath, is_delivery_id};

/// What is parsed of a message at most: a DSN asked with `RET=HDRS` is a few KiB, and a bounce
/// that returns a whole invoice carries nothing needed past this.
pub(crate) const MAX_PARSED: usize = 1024 * 1024;
/// What is kept of a bounce as the evidence's payload.
pub(crate) const MAX_PAYLOAD: usize = 64 * 1024;
/// The longest reason kept.
const MAX_REASON: usize = 500;

/// How a bounce is read: the return path its reports come back to, and the blind-copy addresses
/// whose bounces are not about the customer's copy.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    pub return_path: ReturnPath,
    pub bcc: Vec<String>,
}

/// One recipient's report in a DSN.
#[derive(Debug, Default)]
struct RecipientReport {
    recipient: String,
    action: String,
    status: String,
    diagnostic: String,
    remote_mta: String,
}

impl Reader {
    /// The evidence `raw` holds: none when it is not a bounce about a delivery this reader can
    /// name (a human's reply, spam, a report about a blind copy), one per recipient otherwise.
    /// Never panics, whatever `raw` is.
    pub(crate) fn evidence(&self, raw: &[u8]) -> Vec<Evidence> {
        let parsed = &raw[..raw.len().min(MAX_PARSED)];
        let Some(message) = MessageParser::default().parse(parsed) else {
            return Vec::new();
        };
        let event_id = message
            .message_id()
            .map(|id| clean(&format!("<{id}>")))
            .filter(|id| id.len() > 2 && id.len() <= 250)
            .unwrap_or_else(|| Evidence::digest_id(raw));
        let at = message
            .date()
            .and_then(|d| jiff::Timestamp::from_second(d.to_timestamp()).ok());
        let payload = Bytes::copy_from_slice(&raw[..raw.len().min(MAX_PAYLOAD)]);
        let pieces = match delivery_status(&message) {
            Some(status) => self.standard(&message, status),
            None => self.non_standard(&message),
        };
        let several = pieces.len() > 1;
        pieces
            .into_iter()
            .map(|(about, state, reporter, reason, recipient)| {
                // One event per recipient: the same DSN about two addresses is two events.
                let id = if several {
                    format!("{event_id} {recipient}")
                } else {
                    event_id.clone()
                };
                let mut evidence = Evidence::new(about, state, reporter, id)
                    .with_reason(reason)
                    .with_payload(payload.clone());
                if let Some(at) = at {
                    evidence = evidence.at(at);
                }
                evidence
            })
            .collect()
    }

    /// An RFC 3464 report: a per-message block, then one block per recipient.
    fn standard(&self, message: &Message<'_>, status: &[u8]) -> Vec<Piece> {
        let text = String::from_utf8_lossy(status).replace("\r\n", "\n");
        let mut blocks = text
            .split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .map(fields);
        let Some(per_message) = blocks.next() else {
            return Vec::new();
        };
        let reporting_mta = field(&per_message, "reporting-mta");
        let envelope_id = field(&per_message, "original-envelope-id");
        let Some(about) = self.correlate(message, Some(envelope_id.as_str())) else {
            return Vec::new();
        };
        let reporter = reporter(&reporting_mta, message, "DSN");
        blocks
            .map(|block| RecipientReport {
                recipient: address_of(&field(&block, "final-recipient")),
                action: field(&block, "action").to_ascii_lowercase(),
                status: field(&block, "status"),
                diagnostic: field(&block, "diagnostic-code"),
                remote_mta: address_of(&field(&block, "remote-mta")),
            })
            .filter(|r| !self.is_blind_copy(&r.recipient))
            .filter_map(|r| {
                let class = r.status.trim().chars().next();
                let state = match (r.action.as_str(), class) {
                    ("failed", _) => EvidenceState::Bounced,
                    ("delayed", _) => EvidenceState::Delayed,
                    ("delivered", _) => EvidenceState::Delivered,
                    // Relayed to a system that sends no reports, or expanded to a list: not an
                    // arrival, not a failure.
                    ("relayed" | "expanded", _) => return None,
                    (_, Some('5')) => EvidenceState::Bounced,
                    (_, Some('4')) => EvidenceState::Delayed,
                    (_, Some('2')) => EvidenceState::Delivered,
                    _ => return None,
                };
                let mut reason = match (r.status.is_empty(), r.diagnostic.is_empty()) {
                    (_, false) => {
                        let diagnostic = strip_type(&r.diagnostic);
                        if diagnostic.contains(r.status.as_str()) {
                            diagnostic.to_owned()
                        } else {
                            format!("{} {diagnostic}", r.status)
                        }
                    }
                    (false, true) => format!("{} ({})", r.status, r.action),
                    (true, true) => r.action.clone(),
                };
                if !r.remote_mta.is_empty() && !reason.contains(&r.remote_mta) {
                    reason = format!("{reason} (from {})", r.remote_mta);
                }
                Some((
                    about.clone(),
                    state,
                    reporter.clone(),
                    clean(&reason),
                    r.recipient,
                ))
            })
            .collect()
    }

    /// A bounce without `multipart/report`: taken only when it names one of our deliveries and
    /// reads as a bounce (a mailer daemon's, or with a failed-recipients field, or a status code).
    fn non_standard(&self, message: &Message<'_>) -> Vec<Piece> {
        let Some(about) = self.correlate(message, None) else {
            return Vec::new();
        };
        let from = message
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let subject = message.subject().unwrap_or_default().to_ascii_lowercase();
        let auto_submitted = header(message, "auto-submitted").to_ascii_lowercase();
        let failed_recipients = header(message, "x-failed-recipients");
        if !failed_recipients.is_empty()
            && failed_recipients
                .split(',')
                .all(|r| self.is_blind_copy(&address_of(r)))
        {
            return Vec::new();
        }
        let from_daemon = ["mailer-daemon@", "postmaster@", "mail-daemon@"]
            .iter()
            .any(|d| from.starts_with(d));
        let bounce_subject = [
            "undeliver",
            "delivery status notification",
            "delivery failure",
            "failure notice",
            "returned mail",
            "mail delivery failed",
            "delivery has failed",
            "could not be delivered",
            "nondeliverable",
        ]
        .iter()
        .any(|w| subject.contains(w));
        let clearly_a_bounce = from_daemon || bounce_subject || !failed_recipients.is_empty();
        // Mail systems mark their bounces `auto-replied` too (RFC 3834): an auto-reply is one that
        // does not read as a bounce, or says it is an absence.
        let absence = ["out of office", "automatic reply", "autoreply", "vacation"]
            .iter()
            .any(|w| subject.contains(w));
        if absence || (auto_submitted.starts_with("auto-replied") && !clearly_a_bounce) {
            return Vec::new();
        }
        let text = report_text(message);
        let (state, reason) = match status_line(&text) {
            Some(('5', line)) => (EvidenceState::Bounced, line),
            Some((_, line)) => (EvidenceState::Delayed, line),
            None if clearly_a_bounce => (
                EvidenceState::Bounced,
                message.subject().unwrap_or("a bounce").to_owned(),
            ),
            None => return Vec::new(),
        };
        let sender = if from.is_empty() {
            "unknown sender".to_owned()
        } else {
            from
        };
        vec![(
            about,
            state,
            format!("{} (bounce)", clean(&sender)),
            clean(&reason),
            failed_recipients,
        )]
    }

    /// Which delivery a bounce is about: the `ENVID`, the VERP return path it was sent to, the
    /// returned message's `Message-ID`; in that order.
    fn correlate(&self, message: &Message<'_>, envelope_id: Option<&str>) -> Option<Correlation> {
        if let Some(id) = envelope_id.map(str::trim).filter(|id| is_delivery_id(id)) {
            return Some(Correlation::Delivery(id.to_owned()));
        }
        for name in [
            "delivered-to",
            "x-original-to",
            "envelope-to",
            "x-envelope-to",
            "to",
            "return-path",
        ] {
            for value in message.header_values(name) {
                let raw = value.as_text().map(str::to_owned).unwrap_or_else(|| {
                    // Address fields are parsed: their addresses, joined.
                    value
                        .as_address()
                        .map(|a| {
                            a.iter()
                                .filter_map(|a| a.address())
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default()
                });
                if let Some(id) = self.return_path.deliveries_in(&raw).into_iter().next() {
                    return Some(Correlation::Delivery(id));
                }
            }
        }
        returned_message_id(message).map(Correlation::Reference)
    }

    fn is_blind_copy(&self, recipient: &str) -> bool {
        !recipient.is_empty() && self.bcc.iter().any(|b| b.eq_ignore_ascii_case(recipient))
    }
}

/// (about, state, reporter, reason, recipient)
type Piece = (Correlation, EvidenceState, String, String, String);

/// The body of the `message/delivery-status` (or RFC 6533 `message/global-delivery-status`)
/// part of a `multipart/report`.
fn delivery_status<'a>(message: &'a Message<'_>) -> Option<&'a [u8]> {
    message.parts.iter().find_map(|part| {
        let ct = part.content_type()?;
        let is_status = ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status")
                    || s.eq_ignore_ascii_case("global-delivery-status")
            });
        is_status.then(|| part.contents())
    })
}

/// A block of `Name: value` fields, as mail-parser reads header fields (folded lines joined).
fn fields(block: &str) -> Vec<(String, String)> {
    let mut raw = block.trim_start_matches('\n').to_owned();
    raw.push_str("\n\n");
    let Some(headers) = MessageParser::new().parse_headers(raw.as_bytes()) else {
        return Vec::new();
    };
    headers
        .headers_raw()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// `rfc822; kari@example.no` → `kari@example.no`; `dns; mx.example` → `mx.example`.
fn address_of(typed: &str) -> String {
    strip_type(typed).trim().trim_matches(['<', '>']).to_owned()
}

/// The value after an RFC 3464 type (`smtp; `, `dns; `, `rfc822; `, `X-Postfix; `).
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty()
                && kind.len() <= 20
                && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

fn reporter(reporting_mta: &str, message: &Message<'_>, kind: &str) -> String {
    let mta = address_of(reporting_mta);
    let mta = if mta.is_empty() {
        message
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address())
            .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_owned()))
            .unwrap_or_else(|| "unknown MTA".to_owned())
    } else {
        mta
    };
    clean(&format!("{mta} ({kind})"))
}

fn header(message: &Message<'_>, name: &str) -> String {
    message
        .header_raw(name)
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The `Message-ID` of the message a bounce returns: a `message/rfc822` part's, a
/// `text/rfc822-headers` part's, or a `Message-ID:` line in the text of a bounce that copies the
/// message inline. The bounce's own id never counts.
fn returned_message_id(message: &Message<'_>) -> Option<String> {
    let own = message.message_id();
    for part in message.parts.iter().skip(1) {
        let found = match &part.body {
            PartType::Message(returned) => returned.message_id().map(str::to_owned),
            _ if part.content_type().is_some_and(|ct| {
                ct.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
            }) =>
            {
                MessageParser::new()
                    .parse_headers(part.contents())
                    .and_then(|h| h.message_id().map(str::to_owned))
            }
            PartType::Text(text) => message_id_line(text),
            _ => None,
        };
        if let Some(id) = found.filter(|id| Some(id.as_str()) != own && !id.is_empty()) {
            return Some(clean(&format!("<{}>", id.trim_matches(['<', '>']))));
        }
    }
    if message.parts.len() == 1 {
        return message
            .body_text(0)
            .and_then(|t| message_id_line(&t))
            .filter(|id| Some(id.as_str()) != own)
            .map(|id| clean(&format!("<{id}>")));
    }
    None
}

/// The id in a `Message-ID: <…>` line (a copy of the returned message's headers in text).
fn message_id_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim_start();
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("message-id") {
            return None;
        }
        let value = value.trim();
        let inner = value.strip_prefix('<')?.split_once('>')?.0;
        (!inner.is_empty() && inner.contains('@') && !inner.contains(char::is_whitespace))
            .then(|| inner.to_owned())
    })
}

/// The human-readable text of a bounce, up to the copy of the returned message (whose own
/// text, numbers and dates are not the server's words).
fn report_text(message: &Message<'_>) -> String {
    let mut text = String::new();
    for index in 0..message.text_body.len().min(4) {
        if let Some(part) = message.body_text(index) {
            text.push_str(&part);
            text.push('\n');
        }
        if text.len() > 64 * 1024 {
            break;
        }
    }
    let lower = text.to_ascii_lowercase();
    let cut = [
        "------ this is a copy of the message",
        "----- original message -----",
        "--- below this line is a copy of the message",
        "------- returned message",
        "----- the header of the original message",
    ]
    .iter()
    .filter_map(|marker| lower.find(marker))
    .min()
    .unwrap_or(text.len());
    let mut end = cut.min(64 * 1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The first line with an RFC 3463 status (`5.1.1`) or an SMTP reply code (`550 `), and its class
/// (`5` or `4`): permanent codes are looked for first, so a report quoting an earlier `4xx`
/// before its final `5xx` reads as the failure it is.
fn status_line(text: &str) -> Option<(char, String)> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for class in ['5', '4'] {
        if let Some(line) = lines.iter().find(|line| has_code(line, class)) {
            return Some((class, (*line).to_owned()));
        }
    }
    None
}

fn has_code(line: &str, class: char) -> bool {
    let bytes = line.as_bytes();
    (0..bytes.len()).any(|i| {
        let before_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.');
        if !before_ok || bytes[i] != class as u8 {
            return false;
        }
        let rest = &bytes[i + 1..];
        // d.d.d (RFC 3463): the subject digit is 0-7.
        let enhanced = rest.len() >= 4
            && rest[0] == b'.'
            && (b'0'..=b'7').contains(&rest[1])
            && rest[2] == b'.'
            && rest[3].is_ascii_digit()
            && {
                let tail = rest[3..].iter().take_while(|b| b.is_ascii_digit()).count();
                tail <= 3
                    && rest
                        .get(3 + tail)
                        .is_none_or(|b| !(b.is_ascii_digit() || *b == b'.'))
            };
        // ddd followed by a space or a dash, as in `550 ` or `550-` (SMTP replies).
        let reply = rest.len() >= 3
            && rest[0].is_ascii_digit()
            && rest[1].is_ascii_digit()
            && (rest[2] == b' ' || rest[2] == b'-');
        enhanced || reply
    })
}

/// Control characters out, length bounded: a bounce's text goes to the history and logs.
fn clean(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match cleaned.char_indices().nth(MAX_REASON) {
        Some((end, _)) => format!("{}…", &cleaned[..end]),
        None => cleaned,
    }
}

#[cfg(test)]
mod tests;
