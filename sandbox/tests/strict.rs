//! The sandbox refuses what Dintero refuses and loses answers as a network does: each test
//! talks to it over HTTP, as a client would, and checks the answer and what it left behind.

use std::time::Duration;

use postbud_sandbox::{Fault, FaultKind, Operation, Sandbox, SandboxConfig, Seed};
use serde_json::{Value, json};

async fn capture(sandbox: &Sandbox, token: &str, id: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/transactions/{id}/capture", sandbox.api_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("capture answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn fault(operation: Operation, kind: FaultKind) -> Fault {
    Fault {
        operation,
        transaction: None,
        kind,
        times: 1,
        skip: 0,
    }
}

/// The message of Dintero's error body.
fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_capture_beyond_the_remaining_authorized_amount_is_refused() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let id = sandbox.seed(Seed::default());
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 30000})).await;
    assert_eq!(status, 200, "{body}");
    // 20000 of 50000 are left: 20001 is too much, 20000 fits, and then nothing is left.
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 20001})).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("20000 of 50000 left"), "{body}");
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 20000})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 1})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(sandbox.captures(&id), 2);
}

#[tokio::test]
async fn a_capture_accepted_with_202_holds_its_amount_until_its_event_fails() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let id = sandbox.seed(Seed::default());
    sandbox.inject(fault(
        Operation::Capture,
        FaultKind::Accepted {
            after_gets: 1,
            fail: true,
        },
    ));
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 50000})).await;
    assert_eq!(status, 202, "{body}");
    // Still pending, it counts as a success would: nothing is left to capture.
    sandbox.inject(fault(
        Operation::Capture,
        FaultKind::Accepted {
            after_gets: 1,
            fail: false,
        },
    ));
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 50000})).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 1})).await;
    assert_eq!(status, 400, "{body}");
    // One read releases both events: the failed one and the successful one.
    let tx: Value = reqwest::Client::new()
        .get(format!("{}/transactions/{id}", sandbox.api_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    let captures: Vec<bool> = tx["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "INITIATE_CAPTURE")
        .map(|e| e["success"] == true)
        .collect();
    assert_eq!(captures, [false, true], "{tx}");
    let (status, body) = capture(&sandbox, &token, &id, &json!({"amount": 1})).await;
    assert_eq!(status, 400, "the successful capture took it all: {body}");
}

#[tokio::test]
async fn capture_items_must_be_unique_and_sum_to_the_amount() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let id = sandbox.seed(Seed::default());
    let refused = [
        (
            json!({"amount": 50000, "items": [{"line_id": "1", "amount": 25000}, {"line_id": "1", "amount": 25000}]}),
            "`items[1].line_id` \"1\" repeats `items[0].line_id`",
        ),
        (
            json!({"amount": 50000, "items": [{"line_id": "1", "amount": 49999}]}),
            "the items sum to 49999, not to `amount` 50000",
        ),
        (
            json!({"amount": 50000, "items": []}),
            "the items sum to 0, not to `amount` 50000",
        ),
    ];
    for (body, why) in refused {
        let (status, answer) = capture(&sandbox, &token, &id, &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(message(&answer).contains(why), "{body} -> {answer}");
    }
    assert_eq!(sandbox.captures(&id), 0);
    let (status, answer) = capture(
        &sandbox,
        &token,
        &id,
        &json!({"amount": 50000, "items": [{"line_id": "1", "amount": 49999}, {"line_id": "rounding", "amount": 1}]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn no_boolean_or_fraction_or_out_of_range_number_is_taken_for_an_integer() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let id = sandbox.seed(Seed {
        items: Some(vec![json!({"line_id": "1", "amount": 1})]),
        ..Seed::default()
    });
    for (body, field) in [
        (
            json!({"amount": true}),
            "`amount` must be an integer, not true",
        ),
        (
            json!({"amount": 1.0}),
            "`amount` must be an integer, not 1.0",
        ),
        (json!({"amount": "1"}), "`amount` must be an integer"),
        (json!({"amount": 2_147_483_648_i64}), "outside int32"),
        (
            json!({"amount": 1, "items": [{"line_id": "1", "amount": true}]}),
            "`items[0].amount` must be an integer, not true",
        ),
        (
            json!({"amount": 1, "items": [{"line_id": "1", "amount": 1, "vat_amount": false}]}),
            "`items[0].vat_amount` has the wrong type",
        ),
    ] {
        let (status, answer) = capture(&sandbox, &token, &id, &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(message(&answer).contains(field), "{body} -> {answer}");
    }
    assert_eq!(sandbox.captures(&id), 0);
    // A seed's lines go through the same check.
    let seeded = reqwest::Client::new()
        .post(format!("{}/sandbox/transactions", sandbox.url()))
        .json(&json!({"items": [{"line_id": "1", "amount": true}]}))
        .send()
        .await
        .expect("seed");
    assert_eq!(seeded.status(), 400);
}

#[tokio::test]
async fn a_capture_whose_answer_is_lost_has_happened_all_the_same() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let kinds = [
        FaultKind::StatusAfterApplying { status: 503 },
        FaultKind::DropAfterApplying,
        FaultKind::SlowResponse { ms: 1_000 },
    ];
    for kind in kinds {
        let id = sandbox.seed(Seed::default());
        sandbox.inject(fault(Operation::Capture, kind.clone()));
        let answer = http
            .post(format!("{}/transactions/{id}/capture", sandbox.api_url()))
            .bearer_auth(&token)
            .json(&json!({"amount": 50000}))
            .send()
            .await;
        match (&kind, answer) {
            (FaultKind::StatusAfterApplying { .. }, Ok(r)) => assert_eq!(r.status(), 503),
            (FaultKind::DropAfterApplying, Err(e)) => {
                assert!(!e.is_timeout(), "dropped, not slow: {e:?}")
            }
            (FaultKind::SlowResponse { .. }, Err(e)) => assert!(e.is_timeout(), "{e:?}"),
            (kind, other) => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(sandbox.captures(&id), 1, "{kind:?}: the capture happened");
        let events = sandbox.transaction(&id).expect("tx")["events"].clone();
        assert!(
            events
                .as_array()
                .expect("events")
                .iter()
                .any(|e| e["event"] == "INITIATE_CAPTURE" && e["success"] == true),
            "{kind:?}: {events}"
        );
    }
}

#[tokio::test]
async fn a_token_is_refused_once_its_expires_in_has_passed() {
    let sandbox = Sandbox::start(SandboxConfig {
        token_ttl: 1,
        ..SandboxConfig::default()
    })
    .await
    .expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let id = sandbox.seed(Seed::default());
    let read = || {
        reqwest::Client::new()
            .get(format!("{}/transactions/{id}", sandbox.api_url()))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(read().await.expect("read").status(), 200);
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let refused = read().await.expect("read");
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(
        message(&body),
        "Access forbidden, invalid JWT token was used"
    );
}

#[tokio::test]
async fn the_cdn_is_another_origin_whose_links_expire_and_take_no_authorization() {
    let sandbox = Sandbox::start(SandboxConfig {
        // Long enough for the link's uses below on a loaded machine, before it expires.
        cdn_link_ttl: Duration::from_secs(3),
        ..SandboxConfig::default()
    })
    .await
    .expect("start");
    let id = sandbox.seed(Seed::default());
    let invoice_url = sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let before = jiff::Timestamp::now();
    let descriptor: Value = reqwest::get(&invoice_url)
        .await
        .expect("descriptor")
        .json()
        .await
        .expect("json");
    let after = jiff::Timestamp::now();
    let link = descriptor["url"].as_str().expect("url").to_owned();
    assert!(
        link.starts_with(&format!("{}/", sandbox.cdn_url())),
        "{link}"
    );
    assert_ne!(sandbox.cdn_url(), sandbox.url(), "another origin");
    let expires_at: jiff::Timestamp = descriptor["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("a time");
    // The link was made between `before` and `after`, and lives the configured time.
    let (earliest, latest) = (
        expires_at.duration_since(after),
        expires_at.duration_since(before),
    );
    assert!(
        latest >= jiff::SignedDuration::from_millis(2_990)
            && earliest <= jiff::SignedDuration::from_millis(3_010),
        "expires {earliest:?} after the answer, {latest:?} after the request"
    );
    assert!(
        sandbox
            .dintero_toml()
            .contains(&format!("document_hosts = [\"{}\"]", sandbox.cdn_url())),
        "{}",
        sandbox.dintero_toml()
    );

    let http = reqwest::Client::new();
    let with_token = http
        .get(&link)
        .bearer_auth("a-dintero-token")
        .send()
        .await
        .expect("answered");
    assert_eq!(with_token.status(), 400);
    assert_eq!(sandbox.stats().cdn_with_authorization, 1);
    let pdf = http.get(&link).send().await.expect("answered");
    assert_eq!(pdf.status(), 200);
    assert_eq!(
        pdf.bytes().await.expect("bytes").as_ref(),
        sandbox.pdf(&id).expect("pdf")
    );
    let forged = link.replace("signature=", "signature=0");
    assert_eq!(
        http.get(&forged).send().await.expect("answered").status(),
        403
    );
    // The API's origin serves no CDN path.
    let on_api = format!("{}/files/f-{id}.pdf", sandbox.url());
    assert_eq!(
        http.get(&on_api).send().await.expect("answered").status(),
        404
    );

    let wait = expires_at.duration_since(jiff::Timestamp::now());
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default() + Duration::from_millis(20))
        .await;
    let expired = http.get(&link).send().await.expect("answered");
    assert_eq!(expired.status(), 403);
    assert!(
        expired.text().await.expect("text").contains("expired"),
        "says why"
    );
    assert_eq!(sandbox.stats().cdn_expired, 1);
}

#[tokio::test]
async fn sessions_pay_takes_no_boolean_for_a_line_amount() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let answer = reqwest::Client::new()
        .post(format!("{}/sessions/pay", sandbox.api_url()))
        .bearer_auth(&token)
        .json(&json!({
            "payment": {"payment_product_type": "kravia.invoice_b2c", "operation": "invoice_payment", "days_until_due": 14},
            "session": {"order": {"amount": 100, "currency": "NOK", "merchant_reference": "bool-line",
                "billing_address": {"first_name": "Kari"},
                "items": [{"line_id": "1", "amount": 100}, {"line_id": "2", "amount": true}]}},
        }))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.expect("json");
    assert!(
        message(&body).contains("`session.order.items[1].amount` must be an integer, not true"),
        "{body}"
    );
}
