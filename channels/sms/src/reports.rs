//! Delivery reports: each provider's callback authenticated its own way and read into
//! [`Evidence`].
//!
//! | Provider | Authenticated by | Correlated by |
//! |---|---|---|
//! | Twilio | `X-Twilio-Signature` (auth token, or a SharedKey = `webhook_secret`) | the signed URL's `delivery`, else `MessageSid` |
//! | Sinch | `X-Sinch-Webhook-Signature` when `webhook_secret` is set, else Postbud's signed URL | `client_reference` (the delivery id), else the batch id |
//! | Vonage | `sig` when `signature_secret` is set, else Postbud's signed URL | `client-ref` (the delivery id), else `messageId` |
//! | LINK Mobility | Postbud's signed URL, or `?token=<webhook_secret>` on the gate's URL | `refId` (the delivery id), else `id` |
//! | 46elks, `http` | Postbud's signed URL | the signed URL's delivery |
//!
//! The event id is a digest of what the provider signed, so a replay is recorded once.

pub mod sinch;
pub mod twilio;
pub mod vonage;

use std::collections::BTreeMap;

use postbud_channel::{ChannelError, Correlation, Evidence, EvidenceState, InboundReport};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::providers::Provider;

/// How far a signature's timestamp may be from Postbud's clock, either way (Sinch, Vonage): five
/// minutes, room for clock skew and the provider's own queue, short for a replay.
pub const SIGNATURE_WINDOW: i64 = 300;

/// At most this much of a provider's text goes into a reason.
const REASON_LIMIT: usize = 300;

/// The secrets that authenticate reports.
#[derive(Default)]
pub struct ReportKeys {
    /// Sinch's callback secret, Twilio's SharedKey secret, LINK Mobility's gate URL token.
    pub webhook_secret: Option<SecretString>,
    /// Vonage's signature secret.
    pub signature_secret: Option<SecretString>,
    /// Vonage's signature method.
    pub signature_method: vonage::Method,
}

impl std::fmt::Debug for ReportKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportKeys")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .field(
                "signature_secret",
                &self.signature_secret.as_ref().map(|_| "***"),
            )
            .field("signature_method", &self.signature_method)
            .finish()
    }
}

/// Compares without stopping at the first difference (`subtle`, as the email channel does).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// A provider's text fit for a history line: control characters replaced, length bounded.
pub(crate) fn clean(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REASON_LIMIT)
        .collect();
    cleaned.trim().to_owned()
}

/// Refuses a signature timestamp (Unix seconds) outside the window around `now`.
pub(crate) fn fresh(timestamp: &str, now: i64, name: &str) -> Result<(), ChannelError> {
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| ChannelError::unauthorized(format!("{name} is not a Unix time in seconds")))?;
    if at.abs_diff(now) > SIGNATURE_WINDOW.unsigned_abs() {
        return Err(ChannelError::unauthorized(format!(
            "the signature is stale: {name} is {}s from now, more than the {SIGNATURE_WINDOW}s allowed",
            now - at
        )));
    }
    Ok(())
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A time the provider gives: RFC 3339, or `YYYY-MM-DD hh:mm:ss[.f]` in UTC.
fn time(text: Option<&str>) -> Option<jiff::Timestamp> {
    let text = text?.trim();
    text.parse::<jiff::Timestamp>().ok().or_else(|| {
        text.replacen(' ', "T", 1)
            .parse::<jiff::civil::DateTime>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    })
}

/// What every report of a provider shares.
struct Piece {
    about: Correlation,
    state: EvidenceState,
    reason: String,
    event_id: String,
    at: Option<jiff::Timestamp>,
}

fn unsigned(provider: &str) -> ChannelError {
    ChannelError::unauthorized(format!(
        "{provider} did not sign this report and it did not arrive on the report URL Postbud signed for the delivery"
    ))
}

fn json(body: &[u8], provider: &str) -> Result<Value, ChannelError> {
    serde_json::from_slice(body)
        .map_err(|e| ChannelError::invalid_input(format!("{provider}'s report is not JSON: {e}")))
}

impl Provider {
    /// Authenticates and reads a delivery report.
    pub fn report(
        &self,
        keys: &ReportKeys,
        report: &InboundReport,
    ) -> Result<Vec<Evidence>, ChannelError> {
        self.report_at(keys, report, now())
    }

    /// [`Provider::report`] with the clock at `now` (Unix seconds).
    pub fn report_at(
        &self,
        keys: &ReportKeys,
        report: &InboundReport,
        now: i64,
    ) -> Result<Vec<Evidence>, ChannelError> {
        let secret = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        let signed_for = report.signed_for.clone();
        let pieces = match self {
            Self::Twilio { auth_token, .. } => {
                twilio::verify(
                    auth_token.expose_secret(),
                    secret(&keys.webhook_secret).as_deref(),
                    report,
                )?;
                vec![read_twilio(report)?]
            }
            Self::Sinch { .. } => {
                match secret(&keys.webhook_secret) {
                    Some(key) => sinch::verify(&key, report, now)?,
                    None if signed_for.is_some() => {}
                    None => return Err(unsigned(self.name())),
                }
                read_sinch(report, signed_for)?
            }
            Self::Vonage { .. } => {
                let params = vonage::params(report);
                match secret(&keys.signature_secret) {
                    Some(key) => vonage::verify(&key, keys.signature_method, &params, now)?,
                    None if signed_for.is_some() => {}
                    None => return Err(unsigned(self.name())),
                }
                vec![read_vonage(&params, signed_for)?]
            }
            Self::LinkMobility { .. } => {
                let token = report.query("token");
                let by_token = match (secret(&keys.webhook_secret), token) {
                    (Some(key), Some(token)) => constant_time_eq(key.as_bytes(), token.as_bytes()),
                    _ => false,
                };
                if !by_token && signed_for.is_none() {
                    return Err(unsigned(self.name()));
                }
                vec![read_link(report, signed_for)?]
            }
            Self::Elks { .. } => {
                let delivery = signed_for.ok_or_else(|| unsigned(self.name()))?;
                vec![read_elks(report, delivery)?]
            }
            Self::Http(_) => {
                let delivery = signed_for.ok_or_else(|| unsigned(self.name()))?;
                vec![read_generic(report, delivery)?]
            }
        };
        Ok(pieces
            .into_iter()
            .map(|p| {
                let evidence = Evidence::new(p.about, p.state, self.name(), p.event_id)
                    .with_reason(p.reason)
                    .with_payload(report.body.clone());
                match p.at {
                    Some(at) => evidence.at(at),
                    None => evidence,
                }
            })
            .collect())
    }
}

/// Twilio's `MessageStatus` and its `ErrorCode`.
fn read_twilio(report: &InboundReport) -> Result<Piece, ChannelError> {
    let fields: BTreeMap<String, String> = match serde_json::from_slice::<Value>(&report.body) {
        Ok(Value::Object(members)) => members
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or(v.to_string())))
            .collect(),
        _ => url::form_urlencoded::parse(&report.body)
            .into_owned()
            .collect(),
    };
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| fields.get(*n))
            .map(|v| clean(v))
            .filter(|v| !v.is_empty())
    };
    let status = field(&["MessageStatus", "SmsStatus"])
        .ok_or_else(|| ChannelError::invalid_input("Twilio's report has no MessageStatus"))?;
    let sid = field(&["MessageSid", "SmsSid"]);
    let code = field(&["ErrorCode"]);
    let state = match status.as_str() {
        "delivered" => EvidenceState::Delivered,
        "read" => EvidenceState::Opened,
        "undelivered" => EvidenceState::Bounced,
        // Twilio did not send it on: a queue overflow, a suspended account, a blocked sender.
        "failed" | "canceled" => EvidenceState::Rejected,
        _ => EvidenceState::Accepted,
    };
    let mut reason = format!("MessageStatus={status}");
    if let Some(code) = &code {
        reason.push_str(&format!(" ErrorCode={code}"));
        if let Some(meaning) = twilio_error(code) {
            reason.push_str(&format!(" ({meaning})"));
        }
    }
    if let Some(sid) = &sid {
        reason.push_str(&format!(" MessageSid={sid}"));
    }
    // The URL is covered by Twilio's signature: its `delivery` is Twilio's word.
    let about = match (report.query("delivery"), sid) {
        (Some(delivery), _) => Correlation::Delivery(delivery),
        (None, Some(sid)) => Correlation::Reference(sid),
        (None, None) => {
            return Err(ChannelError::invalid_input(
                "Twilio's report names neither a delivery nor a MessageSid",
            ));
        }
    };
    Ok(Piece {
        about,
        state,
        reason,
        event_id: Evidence::digest_id(&report.body),
        at: None,
    })
}

/// The meaning of Twilio's delivery error codes (the 300xx range).
fn twilio_error(code: &str) -> Option<&'static str> {
    Some(match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "message filtered",
        "30008" => "unknown error",
        "30009" => "missing segment",
        "30010" => "message price exceeds max price",
        _ => return None,
    })
}

/// Sinch's status as evidence: `REJECTED` (by the operator's SMSC) and `ABORTED`/`CANCELLED`
/// (stopped before the SMSC) were never sent on; `FAILED`, `EXPIRED` and `DELETED` bounced;
/// `UNKNOWN` tells nothing beyond the hand-over.
fn sinch_state(status: &str) -> EvidenceState {
    match status {
        "DELIVERED" => EvidenceState::Delivered,
        "FAILED" | "EXPIRED" | "DELETED" => EvidenceState::Bounced,
        "REJECTED" | "ABORTED" | "CANCELLED" => EvidenceState::Rejected,
        _ => EvidenceState::Accepted,
    }
}

/// A per-recipient report (`recipient_delivery_report_sms`), or a batch's summary
/// (`delivery_report_sms`, one piece per status). Other callbacks (an inbound SMS) give none.
fn read_sinch(
    report: &InboundReport,
    signed_for: Option<String>,
) -> Result<Vec<Piece>, ChannelError> {
    let body = json(&report.body, "Sinch")?;
    let text = |v: &Value| v.as_str().map(clean).filter(|s| !s.is_empty());
    let batch = text(&body["batch_id"]);
    let about = match (text(&body["client_reference"]), signed_for, batch.clone()) {
        (Some(reference), _, _) => Correlation::Delivery(reference),
        (None, Some(delivery), _) => Correlation::Delivery(delivery),
        (None, None, Some(batch)) => Correlation::Reference(batch),
        (None, None, None) => {
            return Err(ChannelError::invalid_input(
                "Sinch's report names neither a client_reference nor a batch_id",
            ));
        }
    };
    let batch = batch.unwrap_or_default();
    let digest = Evidence::digest_id(&report.body);
    match body["type"].as_str().unwrap_or_default() {
        "recipient_delivery_report_sms" | "recipient_delivery_report_mms" => {
            let status = text(&body["status"]).unwrap_or_default();
            let mut reason = format!("status={status} code={} batch_id={batch}", body["code"]);
            if let Some(operator) = text(&body["operator"]) {
                reason.push_str(&format!(" operator={operator}"));
            }
            Ok(vec![Piece {
                about,
                state: sinch_state(&status),
                reason,
                event_id: digest,
                at: time(body["operator_status_at"].as_str().or(body["at"].as_str())),
            }])
        }
        "delivery_report_sms" | "delivery_report_mms" => {
            let statuses = body["statuses"].as_array().cloned().unwrap_or_default();
            let many = statuses.len() > 1;
            Ok(statuses
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    let status = text(&entry["status"]).unwrap_or_default();
                    Piece {
                        about: about.clone(),
                        state: sinch_state(&status),
                        reason: format!(
                            "status={status} code={} count={} batch_id={batch}",
                            entry["code"], entry["count"]
                        ),
                        event_id: if many {
                            format!("{digest}#{i}")
                        } else {
                            digest.clone()
                        },
                        at: None,
                    }
                })
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// Vonage's `status` and `err-code` as evidence.
fn read_vonage(
    params: &BTreeMap<String, String>,
    signed_for: Option<String>,
) -> Result<Piece, ChannelError> {
    let field = |name: &str| params.get(name).map(|v| clean(v)).filter(|v| !v.is_empty());
    let status = field("status")
        .ok_or_else(|| ChannelError::invalid_input("Vonage's receipt has no status"))?;
    let message = field("messageId").or_else(|| field("message-id"));
    let about = match (field("client-ref"), signed_for, message.clone()) {
        (Some(reference), _, _) => Correlation::Delivery(reference),
        (None, Some(delivery), _) => Correlation::Delivery(delivery),
        (None, None, Some(message)) => Correlation::Reference(message),
        (None, None, None) => {
            return Err(ChannelError::invalid_input(
                "Vonage's receipt names neither a client-ref nor a messageId",
            ));
        }
    };
    let state = match status.as_str() {
        "delivered" => EvidenceState::Delivered,
        "expired" | "failed" => EvidenceState::Bounced,
        "rejected" => EvidenceState::Rejected,
        // The operator still holds it.
        "buffered" => EvidenceState::Delayed,
        // `accepted`: the operator took it; `unknown`: it gave no final word.
        _ => EvidenceState::Accepted,
    };
    let mut reason = format!("status={status}");
    if let Some(code) = field("err-code") {
        reason.push_str(&format!(" err-code={code}"));
        if let Some(meaning) = vonage_error(&code) {
            reason.push_str(&format!(" ({meaning})"));
        }
    }
    if let Some(message) = &message {
        reason.push_str(&format!(" messageId={message}"));
    }
    // A receipt Vonage sends again is signed anew: its signing fields are left out of the id.
    let signed: String = params
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "sig" | "timestamp" | "nonce"))
        .map(|(name, value)| format!("&{name}={value}"))
        .collect();
    Ok(Piece {
        about,
        state,
        reason,
        event_id: Evidence::digest_id(signed.as_bytes()),
        at: time(params.get("message-timestamp").map(String::as_str)),
    })
}

/// The meaning of Vonage's delivery receipt error codes.
fn vonage_error(code: &str) -> Option<&'static str> {
    Some(match code {
        "0" => "delivered",
        "1" => "unknown",
        "2" => "absent subscriber, temporary",
        "3" => "absent subscriber, permanent",
        "4" => "call barred by user",
        "5" => "portability error",
        "6" => "anti-spam rejection",
        "7" => "handset busy",
        "8" => "network error",
        "9" => "illegal number",
        "10" => "illegal message",
        "11" => "unroutable",
        "12" => "destination unreachable",
        "13" => "subscriber age restriction",
        "14" => "number blocked by carrier",
        "15" => "prepaid insufficient funds",
        "99" => "general error",
        _ => return None,
    })
}

/// LINK Mobility's `resultCode` as evidence (codes as LINK's "Common" platform reports them).
fn link_state(code: i64) -> (EvidenceState, &'static str) {
    use EvidenceState::*;
    match code {
        1001 => (Delivered, "billed and delivered"),
        1007 => (Delivered, "delivered, billed delayed"),
        1000 => (Accepted, "sent to the operator"),
        1005 => (Accepted, "queued"),
        1008 => (Accepted, "billed, before sending"),
        1011 => (Accepted, "billed and sent to the operator"),
        1010 => (Accepted, "expired without the operator's report"),
        1012 => (Delayed, "delayed; LINK will send it again"),
        1002 => (Bounced, "expired"),
        1004 => (Bounced, "mobile full"),
        1006 => (Bounced, "not delivered"),
        1009 => (Bounced, "billed and not delivered"),
        4 => (Bounced, "timeout"),
        2104 => (Bounced, "unknown subscriber"),
        2105 => (Bounced, "destination permanently barred"),
        2106 => (Bounced, "number error"),
        2107 => (Bounced, "destination temporarily barred"),
        2200..=2207 => (Bounced, "the subscriber's operator refused the charge"),
        0..=6 | 104 | 105 => (Rejected, "routing or operator error"),
        3000..=4007 => (Rejected, "the message was refused as invalid"),
        _ => (Accepted, "a result code Postbud does not know"),
    }
}

fn read_link(report: &InboundReport, signed_for: Option<String>) -> Result<Piece, ChannelError> {
    let body = json(&report.body, "LINK Mobility")?;
    let text = |v: &Value| {
        v.as_str()
            .map(clean)
            .or_else(|| v.as_i64().map(|n| n.to_string()))
            .filter(|s| !s.is_empty())
    };
    let code = body["resultCode"].as_i64().ok_or_else(|| {
        ChannelError::invalid_input("LINK Mobility's report has no numeric resultCode")
    })?;
    let id = text(&body["id"]);
    let about = match (text(&body["refId"]), signed_for, id.clone()) {
        (Some(reference), _, _) => Correlation::Delivery(reference),
        (None, Some(delivery), _) => Correlation::Delivery(delivery),
        (None, None, Some(id)) => Correlation::Reference(id),
        (None, None, None) => {
            return Err(ChannelError::invalid_input(
                "LINK Mobility's report names neither a refId nor an id",
            ));
        }
    };
    let (state, meaning) = link_state(code);
    let mut reason = format!("resultCode={code} ({meaning})");
    if let Some(operator) = text(&body["operatorResultCode"]) {
        reason.push_str(&format!(" operatorResultCode={operator}"));
    }
    if let Some(id) = id {
        reason.push_str(&format!(" id={id}"));
    }
    Ok(Piece {
        about,
        state,
        reason,
        event_id: Evidence::digest_id(&report.body),
        at: time(body["timestamp"].as_str()),
    })
}

/// 46elks' `status` (`delivered` or `failed`).
fn read_elks(report: &InboundReport, delivery: String) -> Result<Piece, ChannelError> {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&report.body)
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).map(|v| clean(v)).filter(|v| !v.is_empty());
    let status = field("status")
        .ok_or_else(|| ChannelError::invalid_input("46elks' report has no status"))?;
    let state = match status.as_str() {
        "delivered" => EvidenceState::Delivered,
        "failed" => EvidenceState::Bounced,
        _ => EvidenceState::Accepted,
    };
    Ok(Piece {
        about: Correlation::Delivery(delivery),
        state,
        reason: format!(
            "status={status} id={}",
            field("id").unwrap_or_else(|| "-".into())
        ),
        event_id: Evidence::digest_id(&report.body),
        at: time(form.get("delivered").map(String::as_str)),
    })
}

/// A gateway configured without code: a `status` field (JSON or form) in the usual words.
fn read_generic(report: &InboundReport, delivery: String) -> Result<Piece, ChannelError> {
    let json: Value = serde_json::from_slice(&report.body).unwrap_or(Value::Null);
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&report.body)
        .into_owned()
        .collect();
    let status = json["status"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| form.get("status").cloned())
        .map(|s| clean(&s).to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ChannelError::invalid_input("the gateway's report has no status"))?;
    let state = match status.as_str() {
        "delivered" | "delivrd" => EvidenceState::Delivered,
        "undelivered" | "undeliv" | "failed" | "expired" => EvidenceState::Bounced,
        "rejected" | "rejectd" => EvidenceState::Rejected,
        _ => EvidenceState::Accepted,
    };
    Ok(Piece {
        about: Correlation::Delivery(delivery),
        state,
        reason: format!("status={status}"),
        event_id: Evidence::digest_id(&report.body),
        at: None,
    })
}
