//! The Storecove access point through the `AccessPoint` trait, against the sandbox's Storecove
//! stand-in (strict as the published API): submissions, the idempotency GUID that keeps a
//! retried invoice from being sent twice, refusals classified, and the pull queue read into
//! evidence, acknowledged only once the sink took it.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use postbud_channel::{
    ChannelError, Correlation, ErrorKind, Evidence, EvidenceSink, EvidenceSource, EvidenceState,
    Recorded, testing,
};
use postbud_peppol::{
    provider::{AccessPoint, Submission, idempotency_guid},
    storecove::{Storecove, StorecoveSettings},
};
use postbud_sandbox::storecove::{
    self as standin, Endpoint, Fault, FaultKind, StorecoveConfig, Validator,
};
use postbud_ubl::identifiers::ParticipantId;

const BUYER: &str = "974760673";

fn seller() -> postbud_ubl::Seller {
    serde_json::from_value(serde_json::json!({
        "name": "Nordlys Sykler AS",
        "organization_number": "745707327",
        "vat_number": "NO745707327MVA",
        "address": {"line": "Storgata 1", "postal_code": "0151", "city": "Oslo", "country": "NO"},
    }))
    .expect("seller")
}

/// The example invoice's UBL, to a buyer with organisation number `buyer`.
fn ubl(buyer: &str) -> Vec<u8> {
    let mut invoice = testing::invoice();
    invoice.customer.organization_number = Some(buyer.into());
    postbud_ubl::invoice(&seller(), &invoice)
        .expect("UBL")
        .into_bytes()
}

struct Fixture {
    standin: Arc<standin::Storecove>,
    sender: ParticipantId,
    receiver: ParticipantId,
    ubl: Vec<u8>,
}

impl Fixture {
    async fn start(config: StorecoveConfig) -> Self {
        Self {
            standin: Arc::new(standin::Storecove::start(config).await.expect("stand-in")),
            sender: "0192:745707327".parse().expect("sender"),
            receiver: format!("0192:{BUYER}").parse().expect("receiver"),
            ubl: ubl(BUYER),
        }
    }

    fn settings(&self, key: &str) -> StorecoveSettings {
        let mut settings = StorecoveSettings::new(
            self.standin.api_url().parse().expect("url"),
            key.to_owned().into(),
            standin::LEGAL_ENTITY_ID,
        );
        settings.timeout = Duration::from_secs(5);
        settings.poll_interval = Duration::from_millis(40);
        settings
    }

    fn provider(&self) -> Storecove {
        Storecove::new(self.settings(standin::API_KEY)).expect("provider")
    }

    fn submission<'a>(&'a self, delivery_id: &'a str) -> Submission<'a> {
        submission(delivery_id, &self.sender, &self.receiver, &self.ubl)
    }
}

fn submission<'a>(
    delivery_id: &'a str,
    sender: &'a ParticipantId,
    receiver: &'a ParticipantId,
    ubl: &'a [u8],
) -> Submission<'a> {
    Submission::new(delivery_id, "SBX123-000042", sender, receiver, ubl)
}

#[tokio::test]
async fn a_submission_is_accepted_once_and_its_repeat_is_not_sent_again() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    let first = provider
        .submit(&f.submission("dlv-1"))
        .await
        .expect("first");
    let subs = f.standin.submissions();
    assert_eq!(subs.len(), 1);
    assert_eq!(first.provider_id.as_deref(), Some(subs[0].guid.as_str()));
    assert_eq!(
        subs[0].idempotency_guid.as_deref(),
        Some(idempotency_guid("dlv-1").as_str())
    );
    assert_eq!(
        (subs[0].scheme.as_str(), subs[0].id.as_str()),
        ("NO:ORG", BUYER)
    );
    assert_eq!(
        f.standin.ubl(),
        vec![f.ubl.clone()],
        "the UBL arrives as sent"
    );

    let again = provider
        .submit(&f.submission("dlv-1"))
        .await
        .expect("repeat");
    assert_eq!(again.provider_id, None);
    assert!(again.detail.contains("not sent again"), "{}", again.detail);
    assert_eq!(f.standin.submissions().len(), 1, "never sent twice");

    // Another delivery is another submission.
    provider
        .submit(&f.submission("dlv-2"))
        .await
        .expect("second delivery");
    assert_eq!(f.standin.submissions().len(), 2);
}

#[tokio::test]
async fn concurrent_attempts_of_one_delivery_make_one_submission() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    let one = f.submission("dlv-c");
    let (a, b, c) = tokio::join!(
        provider.submit(&one),
        provider.submit(&one),
        provider.submit(&one),
    );
    let answers = [a.expect("a"), b.expect("b"), c.expect("c")];
    assert_eq!(
        answers.iter().filter(|s| s.provider_id.is_some()).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(f.standin.submissions().len(), 1);
}

#[tokio::test]
async fn a_lost_answer_then_a_retry_makes_one_submission() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    f.standin
        .inject(Fault::once(Endpoint::Submit, FaultKind::LoseAnswer));
    let lost = provider
        .submit(&f.submission("dlv-lost"))
        .await
        .expect_err("no answer");
    assert!(lost.is_temporary(), "{lost}");
    assert!(
        lost.message()
            .starts_with("Storecove submission of invoice SBX123-000042: "),
        "{lost}"
    );
    assert_eq!(f.standin.submissions().len(), 1, "Storecove processed it");
    let retried = provider
        .submit(&f.submission("dlv-lost").with_attempt(2, false))
        .await
        .expect("the retry is accepted");
    assert_eq!(retried.provider_id, None);
    assert_eq!(
        f.standin.submissions().len(),
        1,
        "and did not send it twice"
    );
}

#[tokio::test]
async fn a_refused_key_names_api_key_and_never_shows_it() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = Storecove::new(f.settings("wrong-key-hunter2")).expect("provider");
    let error = provider
        .submit(&f.submission("dlv-k"))
        .await
        .expect_err("401");
    assert_eq!(error.kind(), ErrorKind::Unauthorized, "{error}");
    assert!(!error.is_temporary());
    assert_eq!(error.config_key(), Some("api_key"));
    let checked = provider.check().await.expect_err("401");
    assert_eq!(checked.config_key(), Some("api_key"));
    for shown in [
        error.to_string(),
        format!("{error:?}"),
        checked.to_string(),
        format!("{provider:?}"),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert!(f.standin.submissions().is_empty());

    // A 403 injected on a good key is the key's fault too.
    let good = f.provider();
    f.standin
        .inject(Fault::once(Endpoint::Submit, FaultKind::Status(403)));
    let forbidden = good.submit(&f.submission("dlv-k")).await.expect_err("403");
    assert_eq!(forbidden.config_key(), Some("api_key"));
}

#[tokio::test]
async fn the_check_submits_nothing_and_says_what_it_found() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let found = f.provider().check().await.expect("check");
    assert!(
        found.contains(&standin::LEGAL_ENTITY_ID.to_string()),
        "{found}"
    );
    assert!(f.standin.submissions().is_empty());
    let mut other = f.settings(standin::API_KEY);
    other.legal_entity_id = 42;
    let missing = Storecove::new(other)
        .expect("provider")
        .check()
        .await
        .expect_err("404");
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    assert_eq!(missing.config_key(), Some("legal_entity_id"));
}

#[tokio::test]
async fn throttling_and_outages_are_temporary_and_send_nothing() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    f.standin
        .inject(Fault::once(Endpoint::Submit, FaultKind::RateLimited(7)));
    let slow = provider
        .submit(&f.submission("dlv-t"))
        .await
        .expect_err("429");
    assert_eq!(slow.kind(), ErrorKind::RateLimited);
    assert!(slow.is_temporary());
    assert_eq!(slow.retry_after(), Some(Duration::from_secs(7)));
    for code in [500, 502, 503] {
        f.standin
            .inject(Fault::once(Endpoint::Submit, FaultKind::Status(code)));
        let down = provider
            .submit(&f.submission("dlv-t"))
            .await
            .expect_err("5xx");
        assert!(down.is_temporary(), "{down}");
        assert_eq!(down.kind(), ErrorKind::Unavailable);
        assert!(down.message().contains(&code.to_string()), "{down}");
    }
    assert!(f.standin.submissions().is_empty());

    // Nobody listening: temporary.
    let mut gone = f.settings(standin::API_KEY);
    gone.api_url = "http://127.0.0.1:9/api/v2".parse().expect("url");
    let nobody = Storecove::new(gone)
        .expect("provider")
        .submit(&f.submission("dlv-t"))
        .await
        .expect_err("no server");
    assert!(nobody.is_temporary(), "{nobody}");

    provider
        .submit(&f.submission("dlv-t"))
        .await
        .expect("then it goes through");
    assert_eq!(f.standin.submissions().len(), 1);
}

/// Storecove documents that a repeated `idempotencyGuid` gets a 422, not its words. Where the
/// words are not recognisably "already used", a 422 after an earlier attempt may still be that
/// repeat: the outcome is unknown (no retry, no fallback), never a refusal that would let the
/// fallback send the invoice a second time. A first attempt's 422 is a refusal whatever its
/// words: no earlier request carried the key.
#[tokio::test]
async fn a_repeat_worded_otherwise_after_a_lost_answer_leaves_the_outcome_unknown() {
    for wording in [
        r#"{"message":"Unprocessable Entity"}"#,
        r#"[{"source":"document","details":"could not be processed"}]"#,
        "",
    ] {
        let f = Fixture::start(StorecoveConfig {
            repeat_answer: Some(wording.into()),
            ..StorecoveConfig::default()
        })
        .await;
        let provider = f.provider();
        f.standin
            .inject(Fault::once(Endpoint::Submit, FaultKind::LoseAnswer));
        provider
            .submit(&f.submission("dlv-lost"))
            .await
            .expect_err("no answer");
        let error = provider
            .submit(&f.submission("dlv-lost").with_attempt(2, true))
            .await
            .expect_err("a 422 in words it does not know");
        assert!(error.outcome_unknown(), "{wording}: {error}");
        assert!(!error.is_temporary(), "{error}");
        let guid = idempotency_guid("dlv-lost");
        assert!(error.message().contains(&guid), "{error}");
        assert!(error.message().contains("an earlier attempt"), "{error}");
        // At attempt 1 again (an operator's retry), it is still a delivery tried before.
        let error = provider
            .submit(&f.submission("dlv-lost").with_attempt(1, true))
            .await
            .expect_err("the same 422");
        assert!(error.outcome_unknown(), "{wording}: {error}");
        assert_eq!(f.standin.submissions().len(), 1, "sent once");

        // A first attempt's 422 is the document's refusal, whatever the repeat's words.
        let other: ParticipantId = "0192:923609016".parse().expect("id");
        let refused = provider
            .submit(&submission("dlv-r", &f.sender, &other, &f.ubl))
            .await
            .expect_err("422");
        assert!(!refused.outcome_unknown(), "{refused}");
        assert_eq!(refused.kind(), ErrorKind::InvalidInput);
    }
    // Worded as the stand-in does by default, the repeat is recognised at any attempt.
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    provider
        .submit(&f.submission("dlv-k"))
        .await
        .expect("first");
    let again = provider
        .submit(&f.submission("dlv-k").with_attempt(3, false))
        .await
        .expect("recognised");
    assert!(again.detail.contains("not sent again"), "{}", again.detail);
}

#[tokio::test]
async fn a_refused_document_is_permanent_with_storecove_s_reason() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    // Routed to one buyer, addressed in the UBL to another.
    let other: ParticipantId = "0192:923609016".parse().expect("id");
    let error = provider
        .submit(&submission("dlv-r", &f.sender, &other, &f.ubl))
        .await
        .expect_err("422");
    assert!(!error.is_temporary());
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("EndpointID"), "{error}");
    assert!(error.message().contains("SBX123-000042"), "{error}");

    for garbage in [
        &b"not xml at all"[..],
        b"<Invoice>",
        b"<x:Invoice xmlns:x=\"urn:other\"/>",
    ] {
        let error = provider
            .submit(&submission("dlv-g", &f.sender, &f.receiver, garbage))
            .await
            .expect_err("422");
        assert!(!error.is_temporary(), "{error}");
        assert!(error.message().contains("422"), "{error}");
    }

    // A Swedish buyer routes as SE:ORGNR: the scheme name, not the ICD.
    let swedish: ParticipantId = "0007:2120000787".parse().expect("id");
    let error = provider
        .submit(&submission("dlv-se", &f.sender, &swedish, &f.ubl))
        .await
        .expect_err("the UBL's buyer is Norwegian");
    assert!(error.message().contains("SE:ORGNR"), "{error}");
    assert!(f.standin.submissions().is_empty());
}

#[tokio::test]
async fn the_stand_in_s_validator_refusal_reaches_the_caller() {
    let validator: Validator = Arc::new(|ubl: &[u8]| {
        if String::from_utf8_lossy(ubl).contains("NO745707327MVA") {
            Err("[NO-R-001] fatal: sandbox finding".into())
        } else {
            Ok(())
        }
    });
    let f = Fixture::start(StorecoveConfig {
        validator: Some(validator),
        ..StorecoveConfig::default()
    })
    .await;
    let error = f
        .provider()
        .submit(&f.submission("dlv-v"))
        .await
        .expect_err("refused");
    assert!(error.message().contains("NO-R-001"), "{error}");
    assert!(!error.is_temporary());
}

// ---- The pull queue ----------------------------------------------------------------------

/// What the sink answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// `New` the first time an event id comes, `Duplicate` after.
    Take,
    NotYet,
    Unknown,
    Fail,
}

/// One call to the sink: the evidence, and the queue's instances at that moment.
#[derive(Clone)]
struct Seen {
    evidence: Evidence,
    queued_then: Vec<String>,
}

struct Recording {
    standin: Arc<standin::Storecove>,
    answer: Mutex<Answer>,
    seen: Mutex<Vec<Seen>>,
}

#[async_trait::async_trait]
impl EvidenceSink for Recording {
    async fn record(&self, channel: &str, evidence: Evidence) -> Result<Recorded, ChannelError> {
        assert_eq!(channel, "peppol");
        let queued_then = self.standin.queued().into_iter().map(|i| i.guid).collect();
        let mut seen = self.seen.lock().unwrap();
        let before = seen
            .iter()
            .any(|s| s.evidence.event_id == evidence.event_id);
        let answer = *self.answer.lock().unwrap();
        seen.push(Seen {
            evidence,
            queued_then,
        });
        match answer {
            Answer::Take if before => Ok(Recorded::Duplicate),
            Answer::Take => Ok(Recorded::New),
            Answer::NotYet => Ok(Recorded::NotYet),
            Answer::Unknown => Ok(Recorded::Unknown("not ours".into())),
            Answer::Fail => Err(ChannelError::unavailable("the store is down")),
        }
    }
}

impl Recording {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

struct Running {
    sink: Arc<Recording>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ChannelError>>,
}

impl Running {
    fn start(f: &Fixture, source: Arc<dyn EvidenceSource>) -> Self {
        let sink = Arc::new(Recording {
            standin: Arc::clone(&f.standin),
            answer: Mutex::new(Answer::Take),
            seen: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let for_task = Arc::clone(&sink);
        let task = tokio::spawn(async move {
            source
                .run(
                    "peppol",
                    for_task,
                    Box::pin(async move {
                        let _ = stopped.await;
                    }),
                )
                .await
        });
        Self {
            sink,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) -> Result<(), ChannelError> {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("stops")
            .expect("joins")
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn succeeded_is_delivered_failed_is_rejected_each_acknowledged_after_recording() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    assert!(
        provider
            .evidence()
            .later
            .contains(&EvidenceState::Delivered)
    );
    for id in ["dlv-ok", "dlv-bad", "dlv-none"] {
        provider.submit(&f.submission(id)).await.expect("submitted");
    }
    let ok = f.standin.succeed(&idempotency_guid("dlv-ok")).expect("ok");
    let bad = f
        .standin
        .fail(
            &idempotency_guid("dlv-bad"),
            "failed",
            "the receiver's AP refused it",
        )
        .expect("bad");
    let none = f
        .standin
        .fail(&idempotency_guid("dlv-none"), "no_action_taken", "")
        .expect("none");
    let running = Running::start(&f, provider.evidence_source().expect("a source"));
    wait_for("three acknowledgements", || {
        f.standin.acknowledged().len() == 3
    })
    .await;
    assert_eq!(
        f.standin.acknowledged(),
        vec![ok.clone(), bad.clone(), none.clone()]
    );
    assert!(f.standin.queued().is_empty());
    let seen = running.sink.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (s, (delivery, instance, state)) in seen.iter().zip([
        ("dlv-ok", &ok, EvidenceState::Delivered),
        ("dlv-bad", &bad, EvidenceState::Rejected),
        ("dlv-none", &none, EvidenceState::Rejected),
    ]) {
        assert_eq!(
            s.evidence.about,
            Correlation::Reference(idempotency_guid(delivery))
        );
        assert_eq!(s.evidence.state, state, "{delivery}");
        assert_eq!(s.evidence.reporter, "storecove");
        assert!(s.evidence.at.is_some());
        assert!(
            s.queued_then.contains(instance),
            "{delivery}: recorded while still queued"
        );
    }
    let payload: serde_json::Value =
        serde_json::from_slice(&seen[0].evidence.payload).expect("payload");
    assert!(
        payload["evidence"]["evidence"]["receiving_accesspoint"].is_string(),
        "{payload}"
    );
    assert!(
        seen[1].evidence.reason.contains("refused it"),
        "{}",
        seen[1].evidence.reason
    );
    assert!(seen[2].evidence.reason.contains("no_action_taken"));
    running.stop().await.expect("stopped cleanly");
}

#[tokio::test]
async fn an_event_the_sink_cannot_take_yet_stays_queued_and_comes_again() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    provider
        .submit(&f.submission("dlv-wait"))
        .await
        .expect("submitted");
    let instance = f
        .standin
        .succeed(&idempotency_guid("dlv-wait"))
        .expect("ok");
    let running = Running::start(&f, provider.evidence_source().expect("a source"));
    running.sink.set(Answer::NotYet);
    wait_for("offered three times", || running.sink.count() >= 3).await;
    assert!(f.standin.acknowledged().is_empty());
    assert_eq!(f.standin.queued().len(), 1);
    running.sink.set(Answer::Fail);
    let before = running.sink.count();
    wait_for("offered again after a sink error", || {
        running.sink.count() >= before + 2
    })
    .await;
    assert!(f.standin.acknowledged().is_empty(), "an error keeps it");
    running.sink.set(Answer::Take);
    wait_for("acknowledged", || {
        f.standin.acknowledged() == vec![instance.clone()]
    })
    .await;
    let ids: Vec<String> = running
        .sink
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.evidence.event_id.clone())
        .collect();
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "the same event each time: {ids:?}"
    );
    running.stop().await.expect("stopped");
}

#[tokio::test]
async fn garbled_foreign_and_unknown_events_are_acknowledged_without_looping() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    provider
        .submit(&f.submission("dlv-after"))
        .await
        .expect("submitted");
    let garbled = f.standin.queue_raw("{not json");
    let control = f.standin.queue_raw("\u{0}\u{7}\u{1b}[2J");
    let no_key = f.standin.queue_raw(r#"{"guid":"x","status":"succeeded"}"#);
    let foreign = f.standin.queue_raw(
        r#"{"guid":"x","idempotencyGuid":"00000000-0000-8000-8000-000000000000","status":"failed"}"#,
    );
    let ours = f
        .standin
        .succeed(&idempotency_guid("dlv-after"))
        .expect("ok");
    let running = Running::start(&f, provider.evidence_source().expect("a source"));
    running.sink.set(Answer::Unknown);
    wait_for("all acknowledged", || f.standin.acknowledged().len() == 5).await;
    assert_eq!(
        f.standin.acknowledged(),
        vec![garbled, control, no_key, foreign, ours]
    );
    // Only the two with an idempotencyGuid reached the sink, once each.
    assert_eq!(running.sink.count(), 2);
    running.stop().await.expect("stopped");
}

#[tokio::test]
async fn a_receipt_waits_for_its_evidence_and_a_refused_key_stops_the_source() {
    let f = Fixture::start(StorecoveConfig::default()).await;
    let provider = f.provider();
    provider
        .submit(&f.submission("dlv-ev"))
        .await
        .expect("submitted");
    f.standin.succeed(&idempotency_guid("dlv-ev")).expect("ok");
    f.standin.inject(Fault {
        on: Endpoint::Evidence,
        kind: FaultKind::Status(404),
        times: 2,
    });
    let running = Running::start(&f, provider.evidence_source().expect("a source"));
    wait_for("acknowledged", || f.standin.acknowledged().len() == 1).await;
    let evidence_reads = f
        .standin
        .requests()
        .iter()
        .filter(|(_, p)| p.ends_with("/evidence/sending"))
        .count();
    assert_eq!(evidence_reads, 3, "two 404s, then the evidence");
    assert_eq!(running.sink.count(), 1, "recorded once, with the evidence");
    let payload: serde_json::Value =
        serde_json::from_slice(&running.sink.seen.lock().unwrap()[0].evidence.payload)
            .expect("json");
    assert!(payload["evidence"].is_object(), "{payload}");
    running.stop().await.expect("stopped");

    // A key Storecove refuses ends the run with the key named; the engine runs it again later.
    let refused = Storecove::new(f.settings("stale-key")).expect("provider");
    let running = Running::start(&f, refused.evidence_source().expect("a source"));
    let error = tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("ends")
        .expect("joins")
        .expect_err("401");
    assert_eq!(error.config_key(), Some("api_key"));
}
