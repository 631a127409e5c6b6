//! Amazon SES's events inside a verified SNS notification: notifications (`notificationType`
//! `Bounce`, `Complaint`, `Delivery`) and event publishing through a configuration set
//! (`eventType`, adding `Send`, `Reject`, `DeliveryDelay`, `Open`, …). The delivery id comes
//! back in the message tags of event publishing (`mail.tags.postbud_delivery`, from the
//! `X-SES-MESSAGE-TAGS` header); without it, the `Message-ID` of `mail.commonHeaders`.

use postbud_channel::{Evidence, EvidenceState};
use serde_json::Value;

use super::{DELIVERY_KEY, clean, correlation, payload, sns::Message, text};

const REPORTER: &str = "amazon-ses";

/// The evidence of a verified notification: one piece, or none for events that say nothing
/// about delivery (complaints, clicks) or name nothing Postbud sent.
pub(crate) fn evidence(notification: &Message) -> Vec<Evidence> {
    let Ok(event) = serde_json::from_str::<Value>(&notification.message) else {
        tracing::info!(message_id = %notification.message_id, "an SNS notification that is not an SES event: ignored");
        return Vec::new();
    };
    piece(&event, &notification.message_id)
        .into_iter()
        .collect()
}

fn piece(event: &Value, sns_message_id: &str) -> Option<Evidence> {
    let kind = text(event, "eventType").or_else(|| text(event, "notificationType"))?;
    let (state, reason, detail) = match kind {
        "Bounce" => {
            let bounce = event.get("bounce")?;
            let state = match text(bounce, "bounceType") {
                Some("Transient") => EvidenceState::Delayed,
                // Permanent, and Undetermined: a bounce came back and SES cannot say it will
                // pass; the fallback is the safer answer for an invoice.
                _ => EvidenceState::Bounced,
            };
            let reason = format!(
                "{} ({}): {}",
                text(bounce, "bounceType").unwrap_or("bounce"),
                text(bounce, "bounceSubType").unwrap_or_default(),
                recipients(bounce.get("bouncedRecipients"))
            );
            (state, reason, bounce)
        }
        "DeliveryDelay" => {
            let delay = event.get("deliveryDelay")?;
            let reason = format!(
                "{}: {}",
                text(delay, "delayType").unwrap_or("delayed"),
                recipients(delay.get("delayedRecipients"))
            );
            (EvidenceState::Delayed, reason, delay)
        }
        "Delivery" => {
            let delivery = event.get("delivery")?;
            let reason = text(delivery, "smtpResponse")
                .unwrap_or_default()
                .to_owned();
            (EvidenceState::Delivered, reason, delivery)
        }
        "Reject" => {
            let reject = event.get("reject")?;
            let reason = text(reject, "reason").unwrap_or_default().to_owned();
            (EvidenceState::Rejected, reason, reject)
        }
        "Send" => (EvidenceState::Accepted, String::new(), event.get("send")?),
        "Open" => (EvidenceState::Opened, String::new(), event.get("open")?),
        // A complaint means the message arrived and its recipient called it spam: nothing a
        // delivery's state says; `Click`, `Subscription`, `Rendering Failure` neither.
        _ => return None,
    };
    let mail = event.get("mail");
    let delivery = mail
        .and_then(|m| m.get("tags"))
        .and_then(|t| t.get(DELIVERY_KEY))
        .and_then(|v| match v {
            Value::Array(values) => values.first().and_then(Value::as_str),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        });
    let message_id = mail
        .and_then(|m| m.get("commonHeaders"))
        .and_then(|h| text(h, "messageId"));
    let about = correlation(delivery, message_id)?;
    let mut evidence = Evidence::new(about, state, REPORTER, clean(sns_message_id))
        .with_reason(clean(&reason))
        .with_payload(payload(event));
    let at = text(detail, "timestamp")
        .or_else(|| mail.and_then(|m| text(m, "timestamp")))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    if let Some(at) = at {
        evidence = evidence.at(at);
    }
    Some(evidence)
}

/// `status diagnostic` of each recipient, joined.
fn recipients(list: Option<&Value>) -> String {
    list.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|r| {
                    [text(r, "status"), text(r, "diagnosticCode")]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postbud_channel::Correlation;

    fn bounce(kind: &str) -> Value {
        serde_json::json!({
            "eventType": "Bounce",
            "bounce": {"bounceType": kind, "bounceSubType": "General", "feedbackId": "f-1",
                "timestamp": "2026-12-06T08:00:00.000Z", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
                "bouncedRecipients": [{"emailAddress": "kari@example.no", "action": "failed", "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
            "mail": {"timestamp": "2026-12-06T07:59:00.000Z", "messageId": "0100-ses",
                "commonHeaders": {"messageId": "<dlv-1@merchant.example>"},
                "tags": {DELIVERY_KEY: ["dlv-1"], "ses:configuration-set": ["postbud"]}}
        })
    }

    #[test]
    fn bounces_map_by_type_and_carry_each_recipients_diagnostic() {
        let permanent = piece(&bounce("Permanent"), "sns-1").expect("evidence");
        assert_eq!(permanent.state, EvidenceState::Bounced);
        assert_eq!(permanent.about, Correlation::Delivery("dlv-1".into()));
        assert_eq!(permanent.event_id, "sns-1");
        assert!(
            permanent.reason.contains("550 5.1.1 user unknown"),
            "{}",
            permanent.reason
        );
        assert_eq!(
            piece(&bounce("Transient"), "s").map(|e| e.state),
            Some(EvidenceState::Delayed)
        );
        let mut notification = bounce("Permanent");
        let object = notification.as_object_mut().expect("object");
        object.remove("eventType");
        object.insert("notificationType".into(), "Bounce".into());
        object["mail"].as_object_mut().expect("mail").remove("tags");
        assert_eq!(
            piece(&notification, "s").map(|e| e.about),
            Some(Correlation::Reference("<dlv-1@merchant.example>".into()))
        );
    }

    #[test]
    fn other_events_map_to_their_states_and_complaints_are_left_out() {
        let event = |kind: &str, key: &str, body: Value| {
            let mut event = bounce("Permanent");
            event["eventType"] = kind.into();
            event[key] = body;
            piece(&event, "s").map(|e| e.state)
        };
        assert_eq!(
            event(
                "Delivery",
                "delivery",
                serde_json::json!({"smtpResponse": "250 ok"})
            ),
            Some(EvidenceState::Delivered)
        );
        assert_eq!(
            event(
                "Reject",
                "reject",
                serde_json::json!({"reason": "Bad content"})
            ),
            Some(EvidenceState::Rejected)
        );
        assert_eq!(
            event(
                "DeliveryDelay",
                "deliveryDelay",
                serde_json::json!({"delayType": "MailboxFull"})
            ),
            Some(EvidenceState::Delayed)
        );
        assert_eq!(
            event("Open", "open", serde_json::json!({})),
            Some(EvidenceState::Opened)
        );
        assert_eq!(event("Complaint", "complaint", serde_json::json!({})), None);
    }
}
