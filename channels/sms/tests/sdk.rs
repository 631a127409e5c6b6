//! Delivery report signatures against the providers' own SDKs (PyPI `twilio`, `sinch`,
//! `vonage-http-client`, and `nexmo` for Vonage's `md5hash`): Postbud accepts what each SDK
//! signs and refuses what it would not, and each SDK accepts what the stand-in signs.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use postbud_channel::{ChannelError, Correlation, Evidence, EvidenceState, InboundReport};
use postbud_sandbox::sms;
use postbud_sms::{
    providers::Provider,
    reports::{ReportKeys, vonage::Method},
};
use secrecy::SecretString;
use serde_json::{Value, json};

const WHY: &str = "python3 with the SMS providers' SDKs (PyPI twilio, sinch, vonage-http-client, nexmo) not found";

/// Answers `requests` with `sdk_oracle.py`, or `None` (the test skips, saying so) when Python or
/// the SDKs are missing; a failure under `POSTBUD_REQUIRE_SERVICES=1`.
fn oracle(test: &str, requests: &[Value]) -> Option<Vec<Value>> {
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|p| {
        Command::new(p)
            .args([
                "-c",
                "import twilio.request_validator, sinch, vonage_http_client, nexmo",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = python else {
        assert_ne!(
            std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "{test}: {WHY}"
        );
        postbud_sandbox::skipped(&format!(
            "{test}: {WHY} (pip install twilio sinch vonage-http-client nexmo)"
        ));
        return None;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_oracle.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the oracle starts");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for request in requests {
            writeln!(stdin, "{request}").expect("write");
        }
    }
    let answers: Vec<Value> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect();
    assert!(child.wait().expect("wait").success(), "the oracle failed");
    assert_eq!(answers.len(), requests.len());
    Some(answers)
}

fn twilio() -> Provider {
    Provider::Twilio {
        base: "https://api.twilio.com".into(),
        account_sid: sms::TWILIO_SID.into(),
        auth_token: SecretString::from(sms::TWILIO_TOKEN),
    }
}

fn keys(webhook_secret: Option<&str>) -> ReportKeys {
    ReportKeys {
        webhook_secret: webhook_secret.map(SecretString::from),
        ..ReportKeys::default()
    }
}

fn report(url: &str, headers: &[(&str, &str)], body: &[u8]) -> InboundReport {
    InboundReport::new(
        url,
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body.to_vec().into(),
    )
}

fn form(params: &BTreeMap<String, String>) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes()
}

fn refused(result: Result<Vec<Evidence>, ChannelError>, says: &str) {
    match result {
        Err(e) => {
            assert_eq!(e.kind(), postbud_channel::ErrorKind::Unauthorized, "{e}");
            assert!(e.message().contains(says), "{e}");
        }
        Ok(evidence) => panic!("accepted: {evidence:?}"),
    }
}

#[test]
fn postbud_verifies_what_twilios_sdk_signs_in_both_modes() {
    let test = "postbud_verifies_what_twilios_sdk_signs_in_both_modes";
    let url = "https://inv.example/reports/sms?delivery=D-1&sig=00";
    let params: BTreeMap<String, String> = [
        ("MessageSid", "SM0123"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("To", "+4791238888"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // (secret, algorithm, settings header, the URL the SDK signs)
    let modes = [
        (sms::TWILIO_TOKEN, "HMAC_SHA1", None, url.to_owned()),
        (
            sms::TWILIO_TOKEN,
            "HMAC_SHA1",
            None,
            url.replace("inv.example/", "inv.example:443/"),
        ),
        (
            sms::TWILIO_SHARED_KEY.1,
            "HMAC_SHA1",
            Some("key=webhooks_sharedkey_1,algorithm=HMAC_SHA1"),
            url.to_owned(),
        ),
        (
            sms::TWILIO_SHARED_KEY.1,
            "HMAC_SHA256",
            Some("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"),
            url.to_owned(),
        ),
    ];
    let requests: Vec<Value> = modes
        .iter()
        .map(|(secret, algorithm, _, signed_url)| {
            json!({"op": "twilio_sign", "secret": secret, "url": signed_url, "params": params, "algorithm": algorithm})
        })
        .collect();
    let Some(answers) = oracle(test, &requests) else {
        return;
    };
    let body = form(&params);
    for ((_, algorithm, settings, signed_url), answer) in modes.iter().zip(&answers) {
        let signature = answer["signature"].as_str().expect("signature");
        let mut headers = vec![("X-Twilio-Signature", signature)];
        if let Some(settings) = settings {
            headers.push(("X-Twilio-Webhooks-Signature-Settings", settings));
        }
        let evidence = twilio()
            .report(
                &keys(Some(sms::TWILIO_SHARED_KEY.1)),
                &report(url, &headers, &body),
            )
            .unwrap_or_else(|e| panic!("{algorithm} over {signed_url}: {e}"));
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].about, Correlation::Delivery("D-1".into()));
        assert_eq!(evidence[0].state, EvidenceState::Bounced);
        assert!(
            evidence[0].reason.contains("ErrorCode=30003"),
            "{evidence:?}"
        );
        assert_eq!(evidence[0].reporter, "Twilio");
        assert_eq!(&evidence[0].payload[..], &body[..]);

        // A changed parameter, or the SharedKey's settings without its secret, is refused.
        let mut forged = params.clone();
        forged.insert("MessageStatus".into(), "delivered".into());
        refused(
            twilio().report(
                &keys(Some(sms::TWILIO_SHARED_KEY.1)),
                &report(url, &headers, &form(&forged)),
            ),
            "does not match",
        );
        if settings.is_some() {
            refused(
                twilio().report(&keys(None), &report(url, &headers, &body)),
                "webhook_secret",
            );
        }
    }
    // The auth token's signature under a SharedKey's settings (another secret) does not verify.
    let token_signed = answers[0]["signature"].as_str().expect("signature");
    refused(
        twilio().report(
            &keys(Some(sms::TWILIO_SHARED_KEY.1)),
            &report(
                url,
                &[
                    ("X-Twilio-Signature", token_signed),
                    (
                        "X-Twilio-Webhooks-Signature-Settings",
                        "key=k,algorithm=HMAC_SHA1",
                    ),
                ],
                &body,
            ),
        ),
        "does not match",
    );
}

#[test]
fn a_twilio_json_body_is_covered_by_its_sha256_in_the_url() {
    let test = "a_twilio_json_body_is_covered_by_its_sha256_in_the_url";
    let body = r#"{"MessageSid":"SM77","MessageStatus":"delivered"}"#;
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    };
    let url = format!("https://inv.example/reports/sms?bodySHA256={hash}");
    let Some(answers) = oracle(
        test,
        &[
            json!({"op": "twilio_sign", "secret": sms::TWILIO_TOKEN, "url": url, "params": {}, "algorithm": "HMAC_SHA1"}),
        ],
    ) else {
        return;
    };
    let signature = answers[0]["signature"].as_str().expect("signature");
    let Some(valid) = oracle(
        test,
        &[
            json!({"op": "twilio_validate", "secret": sms::TWILIO_TOKEN, "url": url, "body": body, "signature": signature}),
        ],
    ) else {
        return;
    };
    assert_eq!(valid[0]["valid"], true, "the SDK's own check of the vector");
    let evidence = twilio()
        .report(
            &keys(None),
            &report(&url, &[("X-Twilio-Signature", signature)], body.as_bytes()),
        )
        .expect("verified");
    assert_eq!(evidence[0].state, EvidenceState::Delivered);
    assert_eq!(evidence[0].about, Correlation::Reference("SM77".into()));
    refused(
        twilio().report(
            &keys(None),
            &report(
                &url,
                &[("X-Twilio-Signature", signature)],
                body.replace("delivered", "undelivered").as_bytes(),
            ),
        ),
        "bodySHA256",
    );
}

#[test]
fn twilios_sdk_verifies_what_the_stand_in_signs() {
    let test = "twilios_sdk_verifies_what_the_stand_in_signs";
    let url = "http://127.0.0.1:4010/reports/sms?delivery=D-2&sig=ab";
    let params: BTreeMap<String, String> = [
        ("MessageSid", "SM9"),
        ("MessageStatus", "delivered"),
        ("Body", "a & b = c"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let requests: Vec<Value> = [
        (sms::TWILIO_TOKEN, "HMAC_SHA1"),
        (sms::TWILIO_SHARED_KEY.1, "HMAC_SHA1"),
        (sms::TWILIO_SHARED_KEY.1, "HMAC_SHA256"),
    ]
    .into_iter()
    .map(|(secret, algorithm)| {
        let signature = sms::twilio_signature_with(secret, algorithm, url, &params);
        json!({"op": "twilio_validate", "secret": secret, "url": url, "params": params, "signature": signature, "algorithm": algorithm})
    })
    .collect();
    let Some(answers) = oracle(test, &requests) else {
        return;
    };
    for (request, answer) in requests.iter().zip(answers) {
        assert_eq!(answer["valid"], true, "{request}");
    }
}

fn sinch() -> Provider {
    Provider::Sinch {
        base: "https://eu.sms.api.sinch.com".into(),
        service_plan_id: sms::SINCH_PLAN.0.into(),
        api_token: SecretString::from(sms::SINCH_PLAN.1),
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[test]
fn postbud_verifies_what_sinchs_sdk_signs_and_refuses_stale_or_forged_reports() {
    let test = "postbud_verifies_what_sinchs_sdk_signs_and_refuses_stale_or_forged_reports";
    let body = json!({"type": "recipient_delivery_report_sms", "batch_id": "01BATCH", "recipient": "+4791238888",
        "code": 402, "status": "FAILED", "at": "2026-12-06T12:00:00.000Z", "client_reference": "D-3"})
    .to_string();
    let now = now();
    let timestamps = [now, now - 600, now + 600];
    let requests: Vec<Value> = timestamps
        .iter()
        .map(|t| json!({"op": "sinch_sign", "secret": sms::SINCH_WEBHOOK_SECRET, "body": body, "nonce": "n-1", "timestamp": t}))
        .collect();
    let Some(answers) = oracle(test, &requests) else {
        return;
    };
    let url = "https://inv.example/reports/sms";
    let signed = |signature: &str, timestamp: i64, body: &str| {
        report(
            url,
            &[
                ("X-Sinch-Webhook-Signature", signature),
                ("X-Sinch-Webhook-Signature-Nonce", "n-1"),
                (
                    "X-Sinch-Webhook-Signature-Timestamp",
                    &timestamp.to_string(),
                ),
            ],
            body.as_bytes(),
        )
    };
    let secret = keys(Some(sms::SINCH_WEBHOOK_SECRET));
    let fresh = answers[0]["signature"].as_str().expect("signature");
    let evidence = sinch()
        .report(&secret, &signed(fresh, now, &body))
        .expect("verified");
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].about, Correlation::Delivery("D-3".into()));
    assert_eq!(evidence[0].state, EvidenceState::Bounced);
    assert!(evidence[0].reason.contains("code=402"), "{evidence:?}");
    assert_eq!(evidence[0].reporter, "Sinch");
    // The same report again (a replay) carries the same event id: the engine records it once.
    let again = sinch()
        .report(&secret, &signed(fresh, now, &body))
        .expect("verified");
    assert_eq!(again[0].event_id, evidence[0].event_id);

    for (answer, timestamp) in answers[1..].iter().zip(&timestamps[1..]) {
        let signature = answer["signature"].as_str().expect("signature");
        refused(
            sinch().report(&secret, &signed(signature, *timestamp, &body)),
            "stale",
        );
    }
    refused(
        sinch().report(
            &secret,
            &signed(fresh, now, &body.replace("FAILED", "DELIVERED")),
        ),
        "does not match",
    );
    refused(
        sinch().report(&secret, &report(url, &[], body.as_bytes())),
        "missing",
    );
    // Without a webhook_secret, a report is taken only on the URL Postbud signed.
    refused(
        sinch().report(&keys(None), &signed(fresh, now, &body)),
        "did not sign",
    );
    let on_signed_url = sinch()
        .report(
            &keys(None),
            &report(url, &[], body.as_bytes()).signed_for("D-3"),
        )
        .expect("on the signed URL");
    assert_eq!(on_signed_url[0].state, EvidenceState::Bounced);
}

#[test]
fn sinchs_sdk_verifies_what_the_stand_in_signs() {
    let test = "sinchs_sdk_verifies_what_the_stand_in_signs";
    let body = json!({"type": "delivery_report_sms", "batch_id": "01B", "statuses": [{"code": 0, "status": "DELIVERED", "count": 1}], "total_message_count": 1}).to_string();
    let headers: BTreeMap<&str, String> =
        sms::sinch_headers(sms::SINCH_WEBHOOK_SECRET, body.as_bytes(), "nonce-7", now())
            .into_iter()
            .collect();
    let mut forged = headers.clone();
    forged.insert("x-sinch-webhook-signature-nonce", "nonce-8".into());
    let Some(answers) = oracle(
        test,
        &[
            json!({"op": "sinch_validate", "secret": sms::SINCH_WEBHOOK_SECRET, "headers": headers, "body": body}),
            json!({"op": "sinch_validate", "secret": sms::SINCH_WEBHOOK_SECRET, "headers": forged, "body": body}),
        ],
    ) else {
        return;
    };
    assert_eq!(answers[0]["valid"], true);
    assert_eq!(answers[1]["valid"], false, "the SDK is a real check");
}

fn vonage() -> Provider {
    Provider::Vonage {
        base: "https://rest.nexmo.com".into(),
        api_key: sms::VONAGE_KEY.0.into(),
        api_secret: SecretString::from(sms::VONAGE_KEY.1),
    }
}

const METHODS: [(&str, Method); 5] = [
    ("md5hash", Method::Md5hash),
    ("md5", Method::Md5),
    ("sha1", Method::Sha1),
    ("sha256", Method::Sha256),
    ("sha512", Method::Sha512),
];

fn receipt(timestamp: i64) -> BTreeMap<String, String> {
    [
        ("msisdn", "4791238888"),
        ("to", "Merchant"),
        ("messageId", "0A000000123"),
        ("status", "failed"),
        ("err-code", "3"),
        ("client-ref", "D-4"),
        ("message-timestamp", "2026-12-06 12:00:00"),
        ("api-key", sms::VONAGE_KEY.0),
        ("nonce", "a&b=c"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("timestamp".to_owned(), timestamp.to_string())])
    .collect()
}

#[test]
fn postbud_verifies_what_vonages_sdks_sign_with_every_method() {
    let test = "postbud_verifies_what_vonages_sdks_sign_with_every_method";
    let now = now();
    let secret = sms::VONAGE_SIGNATURE_SECRET;
    let requests: Vec<Value> = METHODS
        .iter()
        .flat_map(|(name, _)| {
            [now, now - 600].map(|t| json!({"op": "vonage_sign", "secret": secret, "method": name, "params": receipt(t)}))
        })
        .collect();
    let Some(answers) = oracle(test, &requests) else {
        return;
    };
    let url = "https://inv.example/reports/sms";
    for (i, (name, method)) in METHODS.iter().enumerate() {
        let keys = ReportKeys {
            signature_secret: Some(SecretString::from(secret)),
            signature_method: *method,
            ..ReportKeys::default()
        };
        let sign = |n: usize, t: i64| {
            let mut params = receipt(t);
            params.insert(
                "sig".into(),
                answers[2 * i + n]["signature"]
                    .as_str()
                    .expect("signature")
                    .into(),
            );
            params
        };
        // As a form (POST) and as JSON (POST-JSON); the signature in either case.
        let signed = sign(0, now);
        let mut shouted = signed.clone();
        shouted.insert("sig".into(), signed["sig"].to_ascii_uppercase());
        for body in [
            form(&signed),
            serde_json::to_vec(&signed).expect("json"),
            form(&shouted),
        ] {
            let evidence = vonage()
                .report(&keys, &report(url, &[], &body))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(evidence[0].about, Correlation::Delivery("D-4".into()));
            assert_eq!(evidence[0].state, EvidenceState::Bounced);
            assert!(evidence[0].reason.contains("err-code=3"), "{evidence:?}");
        }
        refused(
            vonage().report(&keys, &report(url, &[], &form(&sign(1, now - 600)))),
            "stale",
        );
        let mut forged = signed.clone();
        forged.insert("status".into(), "delivered".into());
        refused(
            vonage().report(&keys, &report(url, &[], &form(&forged))),
            "does not match",
        );
        let mut unsigned = signed.clone();
        unsigned.remove("sig");
        refused(
            vonage().report(&keys, &report(url, &[], &form(&unsigned))),
            "no `sig`",
        );
    }
    // Signed anew (Vonage's retry: another timestamp and nonce), the same receipt keeps its id.
    let keys = ReportKeys {
        signature_secret: Some(SecretString::from(secret)),
        signature_method: Method::Md5hash,
        ..ReportKeys::default()
    };
    let resigned = |t: i64, nonce: &str| {
        let mut params = receipt(t);
        params.insert("nonce".into(), nonce.into());
        let sig = sms::vonage_signature(secret, "md5hash", &params);
        params.insert("sig".into(), sig);
        vonage()
            .report(&keys, &report(url, &[], &form(&params)))
            .expect("verified")[0]
            .event_id
            .clone()
    };
    assert_eq!(resigned(now, "one"), resigned(now - 1, "two"));
}

#[test]
fn vonages_sdks_verify_what_the_stand_in_signs() {
    let test = "vonages_sdks_verify_what_the_stand_in_signs";
    let requests: Vec<Value> = METHODS
        .iter()
        .map(|(name, _)| {
            let mut params = receipt(now());
            let sig = sms::vonage_signature(sms::VONAGE_SIGNATURE_SECRET, name, &params);
            params.insert("sig".into(), sig);
            json!({"op": "vonage_validate", "secret": sms::VONAGE_SIGNATURE_SECRET, "method": name, "params": params})
        })
        .collect();
    let Some(answers) = oracle(test, &requests) else {
        return;
    };
    for (request, answer) in requests.iter().zip(answers) {
        assert_eq!(answer["valid"], true, "{request}");
    }
}
