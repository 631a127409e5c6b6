//! The callbacks and account webhooks the sandbox sends on its own: signed as Dintero signs
//! (checked by Node.js's `URL`, `URLSearchParams` and `crypto`, the reference code's own parts,
//! not by the sandbox's code), and retried as Dintero retries.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    routing::any,
};
use postbud_sandbox::{Sandbox, SandboxConfig, Seed};
use serde_json::{Value, json};

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    /// Path and raw query, as sent.
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Script {
    /// The next requests' answers, in order: a status, given after a hold; 200 at once when
    /// they run out.
    answers: VecDeque<(u16, Duration)>,
    received: Vec<Received>,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        async fn record(
            State(script): State<Arc<Mutex<Script>>>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let (hold, status) = {
                let mut s = script.lock().expect("lock");
                s.received.push(Received {
                    method: method.to_string(),
                    target: uri
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    headers,
                    body,
                });
                let (status, hold) = s.answers.pop_front().unwrap_or((200, Duration::ZERO));
                (hold, status)
            };
            tokio::time::sleep(hold).await;
            StatusCode::from_u16(status).expect("a status")
        }
        let app = Router::new()
            .fallback(any(record))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, script }
    }

    fn answer(&self, statuses: &[u16]) {
        self.script
            .lock()
            .expect("lock")
            .answers
            .extend(statuses.iter().map(|s| (*s, Duration::ZERO)));
    }

    /// The next request is answered 200, too late.
    fn hold_next(&self, hold: Duration) {
        self.script
            .lock()
            .expect("lock")
            .answers
            .push_back((200, hold));
    }

    fn received(&self) -> Vec<Received> {
        self.script.lock().expect("lock").received.clone()
    }

    /// Waits until `n` requests came, then a little longer to catch any extra one.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.received().len() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests came: {:?}",
                self.received().len(),
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.received()
    }
}

/// `Dintero-Signature` of a received callback, computed by Node as Dintero's reference code does.
fn node_callback_signature(
    secret: &str,
    account: &str,
    method: &str,
    url: &str,
    t: &str,
) -> Option<String> {
    const SCRIPT: &str = r#"
const crypto = require('crypto');
const [secret, account, method, raw, t] = process.argv.slice(1);
const url = new URL(raw);
url.searchParams.sort();
const signed = [t, account, method, url.hostname, url.pathname, url.searchParams.toString()].join('\n');
process.stdout.write(`t=${t},v0-hmac-sha256=${crypto.createHmac('sha256', secret).update(signed).digest('hex')}`);
"#;
    postbud_sandbox::node(SCRIPT, &[secret, account, method, url, t])
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
}

fn config() -> SandboxConfig {
    SandboxConfig {
        callback_secret: Some("cb-secret".into()),
        callback_attempts: 3,
        webhook_attempts: 3,
        push_backoff: Duration::from_millis(50),
        callback_timeout: Duration::from_millis(400),
        webhook_timeout: Duration::from_millis(400),
        ..SandboxConfig::default()
    }
}

/// Checks a received callback's signature with Node; returns its `t`.
fn assert_signed_as_dintero(receiver: &Receiver, r: &Received) {
    let signature = header(r, "dintero-signature");
    let t = signature
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .expect("t=");
    let url = format!("{}{}", receiver.base, r.target);
    let Some(expected) = node_callback_signature("cb-secret", "T12345678", &r.method, &url, t)
    else {
        return;
    };
    assert_eq!(signature, expected, "{} {url}", r.method);
}

#[tokio::test]
async fn callbacks_are_signed_as_dintero_signs_them_awkward_queries_included() {
    let sandbox = Sandbox::start(config()).await.expect("start");
    let receiver = Receiver::start().await;
    // `~` (which URLSearchParams writes %7E), `*` (raw), a space (`+`), a non-ASCII name, and a
    // repeated name whose order the stable sort keeps.
    let url = format!(
        "{}/dintero/callback?zeta=a~b*c%20d&report_event=VOID&%C3%A6=%C3%B8&report_event=CAPTURE",
        receiver.base
    );
    let id = sandbox.seed(Seed {
        callback_url: Some(url.clone()),
        ..Seed::default()
    });
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "one callback: {got:?}");
    let r = &got[0];
    assert_eq!(r.method, "GET");
    assert!(
        r.target.contains(&format!("transaction_id={id}")),
        "{}",
        r.target
    );
    assert!(
        r.target.contains("merchant_reference=order-"),
        "{}",
        r.target
    );
    assert_signed_as_dintero(&receiver, r);

    // A void the URL asks to hear of comes with `event` and `event_id`, signed the same way.
    let token = sandbox.access_token().await.expect("a token");
    let voided = reqwest::Client::new()
        .post(format!("{}/transactions/{id}/void", sandbox.api_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("void");
    assert_eq!(voided.status(), 200);
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let void_event_id = sandbox.transaction(&id).expect("tx")["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event"] == "VOID")
        .expect("a VOID event")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(got[1].target.contains("event=VOID"), "{}", got[1].target);
    assert!(
        got[1].target.contains(&format!("event_id={void_event_id}")),
        "{}",
        got[1].target
    );
    assert_signed_as_dintero(&receiver, &got[1]);

    // `method=POST`: the transaction as the body, and POST in the signed string.
    let post_url = format!("{}/cb?method=POST", receiver.base);
    let id = sandbox.seed(Seed {
        callback_url: Some(post_url),
        ..Seed::default()
    });
    let got = receiver.wait_for(3).await;
    let r = &got[2];
    assert_eq!(r.method, "POST");
    let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(body["id"], id.as_str());
    assert_signed_as_dintero(&receiver, r);
}

#[tokio::test]
async fn a_callback_is_retried_on_5xx_timeouts_and_connection_errors_but_not_on_4xx() {
    let sandbox = Sandbox::start(config()).await.expect("start");
    let receiver = Receiver::start().await;
    let url = format!("{}/cb", receiver.base);
    let seed = |url: &str| {
        sandbox.seed(Seed {
            callback_url: Some(url.to_owned()),
            ..Seed::default()
        })
    };
    let attempts = |id: &str| -> Vec<u16> {
        sandbox
            .stats()
            .callbacks
            .iter()
            .filter(|(t, _)| t == id)
            .map(|(_, s)| *s)
            .collect()
    };

    // 503, then a timeout, then 200: three attempts, the last one taken.
    receiver.answer(&[503]);
    receiver.hold_next(Duration::from_millis(700));
    let id = seed(&url);
    receiver.wait_for(3).await;
    assert_eq!(attempts(&id), [503, 0, 200]);

    // A 404 is final.
    receiver.answer(&[404]);
    let id = seed(&url);
    receiver.wait_for(4).await;
    assert_eq!(attempts(&id), [404]);

    // Nobody listening: `callback_attempts` tries, then it gives up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let id = seed(&format!("http://{closed}/cb"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while attempts(&id).len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", attempts(&id));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(attempts(&id), [0, 0, 0], "bounded");
}

async fn subscribe(sandbox: &Sandbox, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/accounts/T12345678/hooks/subscriptions",
            sandbox.api_url()
        ))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn account_webhooks_are_signed_with_hmac_sha1_of_the_body_and_retried() {
    let sandbox = Sandbox::start(config()).await.expect("start");
    let receiver = Receiver::start().await;
    let token = sandbox.access_token().await.expect("a token");
    let body = json!({
        "config": {"url": format!("{}/dintero/webhook", receiver.base), "content_type": "application/json",
                   "secret": {"type": "HMAC-SHA1", "value": "hook-secret"}, "insecure_ssl": 0},
        "events": ["checkout_transaction", "checkout_authorization"], "active": true,
    });
    let created = subscribe(&sandbox, &token, &body).await;
    assert_eq!(created.status(), 201);
    let shown: Value = created.json().await.expect("json");
    assert_eq!(
        shown["config"]["secret"],
        json!({"type": "HMAC-SHA1"}),
        "the secret is never read back"
    );
    let ping = receiver.wait_for(1).await;
    assert_eq!(header(&ping[0], "event"), "ping");

    // The first delivery of each event is refused with a 500, the next taken.
    receiver.answer(&[500, 500]);
    let id = sandbox.seed(Seed::default());
    let got = receiver.wait_for(5).await;
    let deliveries: Vec<&Received> = got[1..].iter().collect();
    assert_eq!(deliveries.len(), 4, "two events, each twice: {got:?}");
    for r in &deliveries {
        assert_eq!(r.method, "POST");
        assert_eq!(header(r, "content-type"), "application/json");
        assert!(header(r, "user-agent").starts_with("Dintero-Hook/"));
        let payload: Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(payload["event"], header(r, "event"));
        assert_eq!(payload["event_delivery"], header(r, "event-delivery"));
        assert_eq!(payload["account_id"], "T12345678");
        let tx_id = payload
            .pointer("/authorization/transaction_id")
            .or_else(|| payload.pointer("/transaction/id"));
        assert_eq!(tx_id, Some(&json!(id)), "{payload}");
        // Dintero's sample, in Node: the hex HMAC-SHA1 of the body as sent.
        let Some(expected) = node_hmac_sha1("hook-secret", &r.body) else {
            return;
        };
        assert_eq!(header(r, "event-signature"), expected);
    }
    // A retry is the same delivery: the same id and the same bytes.
    let by_event = |event: &str| -> Vec<&&Received> {
        deliveries
            .iter()
            .filter(|r| header(r, "event") == event)
            .collect()
    };
    for event in ["checkout_authorization", "checkout_transaction"] {
        let pair = by_event(event);
        assert_eq!(pair.len(), 2, "{event}");
        assert_eq!(
            header(pair[0], "event-delivery"),
            header(pair[1], "event-delivery")
        );
        assert_eq!(pair[0].body, pair[1].body);
    }

    // A capture updates the transaction: one `checkout_transaction` more.
    let captured = reqwest::Client::new()
        .post(format!("{}/transactions/{id}/capture", sandbox.api_url()))
        .bearer_auth(&token)
        .json(&json!({"amount": 50000}))
        .send()
        .await
        .expect("capture");
    assert_eq!(captured.status(), 200);
    let got = receiver.wait_for(6).await;
    assert_eq!(header(&got[5], "event"), "checkout_transaction");
    // Unlike a callback, a webhook is sent again after a 4xx ("any response outside of the 200
    // range"), up to `webhook_attempts`.
    receiver.answer(&[400, 400, 400]);
    sandbox.set_status(&id, "CAPTURED");
    let got = receiver.wait_for(9).await;
    assert_eq!(got.len(), 9, "three attempts, then given up: {got:?}");
}

/// The hex HMAC-SHA1 of `body` with `secret`, by Node's `crypto`.
fn node_hmac_sha1(secret: &str, body: &[u8]) -> Option<String> {
    const SCRIPT: &str = "const c = require('crypto'); process.stdout.write(c.createHmac('sha1', process.argv[1]).update(Buffer.from(process.argv[2], 'base64')).digest('hex'));";
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    postbud_sandbox::node(SCRIPT, &[secret, &encoded])
}

#[tokio::test]
async fn a_subscription_is_refused_unless_it_fits_the_schema() {
    let sandbox = Sandbox::start(config()).await.expect("start");
    let token = sandbox.access_token().await.expect("a token");
    let url = "http://127.0.0.1:9/hook";
    for (body, why) in [
        (
            json!({"config": {"url": url, "insecure_ssl": false}, "events": ["checkout_transaction"]}),
            "`config.insecure_ssl` must be an integer, not false",
        ),
        (
            json!({"config": {"url": url}, "events": []}),
            "`events` is required",
        ),
        (
            json!({"config": {"url": url}, "events": ["checkout_everything"]}),
            "`events[0]` `checkout_everything` is not one of",
        ),
        (
            json!({"config": {"url": url, "secret": {"type": "HMAC-SHA256", "value": "x"}}, "events": ["checkout_transaction"]}),
            "`config.secret.type` must be \"HMAC-SHA1\"",
        ),
        (
            json!({"events": ["checkout_transaction"]}),
            "`config` is required",
        ),
    ] {
        let answer = subscribe(&sandbox, &token, &body).await;
        assert_eq!(answer.status(), 400, "{body}");
        let answer: Value = answer.json().await.expect("json");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(why),
            "{body} -> {answer}"
        );
    }
    let body = json!({"config": {"url": url}, "events": ["checkout_transaction"]});
    assert_eq!(
        subscribe(&sandbox, "not-a-token", &body).await.status(),
        401
    );
}
