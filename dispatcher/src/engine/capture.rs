//! Whether to capture: decided from what Dintero says of the transaction and what the store
//! says was done, before anything is sent. A capture is sent only when neither shows one under
//! way, so a retry after a timeout, a crash or a 202 never captures twice.

use std::time::Duration;

use crate::{
    dintero::{
        CaptureLines, CaptureRequest,
        model::{EventName, Transaction},
    },
    store::Dispatch,
    store::{Millis, Stage},
};

/// The events that complete a capture.
pub(super) const CAPTURE_EVENTS: [EventName; 2] = [EventName::InitiateCapture, EventName::Capture];

/// What a dispatch does about the capture.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum CaptureDecision {
    /// Collection has started (`INITIATE_CAPTURE` or `CAPTURE` succeeded at Dintero, whoever
    /// sent it); `record` says the store does not know it yet.
    Started {
        /// The capture event's name and reference, to record.
        record: Option<(String, Option<String>)>,
    },
    /// A capture Dintero accepted (202) was refused by its event: stop, with Dintero's words.
    Refused(String),
    /// A capture Dintero accepted (202) has no event yet: wait, never send another.
    Waiting {
        /// The accepted request.
        request_id: String,
    },
    /// A capture was sent and no answer heard (a timeout, a lost connection, a 5xx), and
    /// Dintero shows no capture yet: it may still be applied. Nothing is sent before `until`;
    /// then Dintero's events decide.
    InFlight {
        /// When the request was recorded, just before it was sent (store milliseconds).
        requested_at: Millis,
        /// When a capture may be sent again if Dintero still shows none.
        until: Millis,
    },
    /// Dintero shows a capture event that says neither success nor failure: collection may have
    /// started. Nothing is sent; Dintero is read again later.
    Undecided,
    /// Nothing captured or pending: send this request.
    Capture {
        /// The body: the full amount, with its lines when they add up to it.
        request: CaptureRequest,
        /// How the lines went into it, for the history.
        lines: CaptureLines,
    },
}

/// The decision for `tx`, given the dispatch the store holds for it, at `now`. A capture
/// requested and not answered is waited for `grace` (longer than the client waits for an
/// answer, so a capture Dintero applies late shows before another is sent).
pub(super) fn decide(
    tx: &Transaction,
    dispatch: Option<&Dispatch>,
    now: Millis,
    grace: Duration,
) -> CaptureDecision {
    if let Some(event) = tx.capture_event() {
        let known = dispatch.is_some_and(|d| d.captured_at.is_some());
        return CaptureDecision::Started {
            record: (!known).then(|| {
                (
                    event.event.as_str().to_owned(),
                    event.event_reference.clone(),
                )
            }),
        };
    }
    if tx.undecided_capture_event().is_some() {
        return CaptureDecision::Undecided;
    }
    if let Some(request_id) = dispatch.and_then(|d| d.capture_request_id.clone()) {
        if let Some(event) = tx
            .completing_event(&request_id, &CAPTURE_EVENTS)
            .filter(|e| e.failed())
        {
            let why = event
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return CaptureDecision::Refused(format!("capture was refused by Dintero: {why}"));
        }
        return CaptureDecision::Waiting { request_id };
    }
    // Requested (recorded just before sending, which last set `updated_at`), unanswered, and
    // nothing at Dintero yet. Any later write only moves the wait later.
    if let Some(d) = dispatch.filter(|d| {
        d.stage == Stage::Capturing && d.capture_reference.is_some() && d.captured_at.is_none()
    }) {
        let until = d.updated_at.saturating_add(grace.as_millis() as Millis);
        if now < until {
            return CaptureDecision::InFlight {
                requested_at: d.updated_at,
                until,
            };
        }
    }
    let (request, lines) = CaptureRequest::full(tx);
    CaptureDecision::Capture { request, lines }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const GRACE: Duration = Duration::from_secs(60);

    /// The decision long after any request (no grace in the way).
    fn decide_now(tx: &Transaction, dispatch: Option<&Dispatch>) -> CaptureDecision {
        decide(tx, dispatch, 1_000_000_000, GRACE)
    }

    fn shipped(items: Value, shipping: Value, amount: i64) -> Transaction {
        let mut tx = tx(json!([]), items);
        tx.amount = amount;
        tx.shipping_option = Some(serde_json::from_value(shipping).expect("a shipping option"));
        tx
    }

    const ID: &str = "T12345678.capTure";

    fn tx(events: Value, items: Value) -> Transaction {
        serde_json::from_value(json!({
            "id": ID, "status": "AUTHORIZED", "amount": 50000, "currency": "NOK",
            "payment_product": "kravia", "payment_product_type": "kravia.invoice_b2c",
            "items": items, "events": events,
        }))
        .expect("a transaction")
    }

    fn lines() -> Value {
        json!([{"line_id": "1", "amount": 30000, "description": "a"}, {"line_id": "2", "amount": 20000}])
    }

    fn dispatch(captured: bool, request_id: Option<&str>) -> Dispatch {
        let mut dispatch = Dispatch::new(ID, Stage::Capturing);
        dispatch.capture_reference = Some("order-1".into());
        dispatch.capture_request_id = request_id.map(str::to_owned);
        dispatch.captured_at = captured.then_some(1);
        dispatch
    }

    #[test]
    fn a_fresh_authorization_is_captured_with_its_lines() {
        let decision = decide_now(&tx(json!([]), lines()), None);
        let CaptureDecision::Capture { request, lines } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(request.amount, 50000);
        assert_eq!(
            request.capture_reference, None,
            "no reference of the merchant's to send"
        );
        assert_eq!(request.items.as_ref().map(Vec::len), Some(2));
        assert_eq!(lines, CaptureLines::Sent(2));
    }

    #[test]
    fn the_capture_carries_the_merchant_s_reference() {
        let mut tx = tx(json!([]), lines());
        tx.merchant_reference = Some("order-1042".into());
        let CaptureDecision::Capture { request, .. } = decide_now(&tx, None) else {
            panic!("a capture")
        };
        assert_eq!(request.capture_reference.as_deref(), Some("order-1042"));
        // The event reference the merchant set for the settlement report wins.
        tx.metadata
            .insert("event_reference".into(), json!("settle-77"));
        let CaptureDecision::Capture { request, .. } = decide_now(&tx, None) else {
            panic!("a capture")
        };
        assert_eq!(request.capture_reference.as_deref(), Some("settle-77"));
        let body = serde_json::to_value(&request).expect("serialises");
        assert_eq!(body["capture_reference"], "settle-77");
    }

    #[test]
    fn the_shipping_option_is_a_capture_line() {
        let shipping = json!({"id": "bring", "line_id": "shipping", "amount": 9900, "vat": 25,
                              "vat_amount": 1980, "description": "Bring to the door", "operator": "Bring"});
        let CaptureDecision::Capture { request, lines } =
            decide_now(&shipped(lines(), shipping, 59900), None)
        else {
            panic!("a capture")
        };
        assert_eq!(lines, CaptureLines::Sent(3));
        let items = request.items.expect("items");
        assert_eq!(
            items[2],
            json!({"line_id": "shipping", "amount": 9900, "quantity": 1.0, "vat": 25.0,
                   "vat_amount": 1980, "id": "bring", "description": "Bring to the door"})
        );
        let sum: i64 = items
            .iter()
            .map(|i| i["amount"].as_i64().expect("amount"))
            .sum();
        assert_eq!(sum, request.amount);
    }

    #[test]
    fn lines_that_do_not_add_up_or_repeat_an_id_are_left_out() {
        // A rounding difference: the lines miss the amount by one øre.
        let CaptureDecision::Capture { request, lines } = decide_now(
            &shipped(lines(), json!({"line_id": "s", "amount": 100}), 50101),
            None,
        ) else {
            panic!("a capture")
        };
        assert!(request.items.is_none());
        assert_eq!(request.amount, 50101);
        assert_eq!(
            lines.to_string(),
            "without items: the lines sum to 50100, the amount is 50101, so the full amount is captured without lines"
        );
        let twice = json!([{"line_id": "1", "amount": 30000}, {"line_id": "1", "amount": 20000}]);
        let CaptureDecision::Capture { request, lines } = decide_now(&tx(json!([]), twice), None)
        else {
            panic!("a capture")
        };
        assert!(request.items.is_none());
        assert!(
            lines.to_string().contains("line_id `1` is used twice"),
            "{lines}"
        );
    }

    #[test]
    fn a_line_without_line_id_captures_the_amount_without_items() {
        let items = json!([{"line_id": "1", "amount": 30000}, {"amount": 20000}]);
        let CaptureDecision::Capture { request, lines } = decide_now(&tx(json!([]), items), None)
        else {
            panic!("a capture")
        };
        assert!(request.items.is_none());
        assert!(
            lines
                .to_string()
                .starts_with("without items: a line (items) has no line_id"),
            "{lines}"
        );
        let CaptureDecision::Capture { lines, .. } = decide_now(&tx(json!([]), json!([])), None)
        else {
            panic!("a capture")
        };
        assert_eq!(lines, CaptureLines::None);
    }

    #[test]
    fn a_capture_event_at_dintero_is_never_captured_again() {
        for name in ["INITIATE_CAPTURE", "CAPTURE"] {
            let events = json!([{"event": name, "success": true, "event_reference": "elsewhere"}]);
            // Unknown to the store (sent by an attempt that died, or by another system): record.
            assert_eq!(
                decide_now(&tx(events.clone(), lines()), None),
                CaptureDecision::Started {
                    record: Some((name.to_owned(), Some("elsewhere".to_owned())))
                }
            );
            // Known: nothing to record. A pending 202 does not matter once the event is there.
            assert_eq!(
                decide_now(&tx(events, lines()), Some(&dispatch(true, Some("r-1")))),
                CaptureDecision::Started { record: None }
            );
        }
    }

    #[test]
    fn a_failed_capture_event_is_not_a_capture() {
        let events = json!([{"event": "INITIATE_CAPTURE", "success": false}]);
        assert!(matches!(
            decide_now(&tx(events, lines()), None),
            CaptureDecision::Capture { .. }
        ));
    }

    #[test]
    fn an_accepted_capture_is_waited_for_or_refused_never_repeated() {
        let pending = dispatch(false, Some("r-1"));
        assert_eq!(
            decide_now(&tx(json!([]), lines()), Some(&pending)),
            CaptureDecision::Waiting {
                request_id: "r-1".into()
            }
        );
        let other = json!([{"event": "INITIATE_CAPTURE", "success": false, "request_id": "r-0"}]);
        assert_eq!(
            decide_now(&tx(other, lines()), Some(&pending)),
            CaptureDecision::Waiting {
                request_id: "r-1".into()
            },
            "another request's failure says nothing of this one"
        );
        let refused = json!([{"event": "CAPTURE", "success": false, "correlation_request_id": "r-1",
                              "error": {"message": "amount mismatch"}}]);
        let CaptureDecision::Refused(reason) = decide_now(&tx(refused, lines()), Some(&pending))
        else {
            panic!("refused")
        };
        assert!(reason.contains("amount mismatch"), "{reason}");
    }

    #[test]
    fn a_capture_requested_and_unanswered_is_never_sent_again_within_the_grace() {
        let mut requested = dispatch(false, None);
        requested.updated_at = 10_000;
        let tx = tx(json!([]), lines());
        // Within the grace: wait, whoever runs the attempt.
        assert_eq!(
            decide(&tx, Some(&requested), 10_000 + 59_999, GRACE),
            CaptureDecision::InFlight {
                requested_at: 10_000,
                until: 70_000
            }
        );
        // Past it, Dintero still shows nothing: the first one never landed; send.
        assert!(matches!(
            decide(&tx, Some(&requested), 70_000, GRACE),
            CaptureDecision::Capture { .. }
        ));
        // Dintero shows it: started, at any time.
        let landed = json!([{"event": "INITIATE_CAPTURE", "success": true}]);
        assert!(matches!(
            decide(
                &super::tests::tx(landed, lines()),
                Some(&requested),
                10_001,
                GRACE
            ),
            CaptureDecision::Started { .. }
        ));
        // Never requested: nothing to wait for.
        let mut fresh = requested.clone();
        fresh.stage = Stage::New;
        fresh.capture_reference = None;
        assert!(matches!(
            decide(&tx, Some(&fresh), 10_001, GRACE),
            CaptureDecision::Capture { .. }
        ));
    }
}
