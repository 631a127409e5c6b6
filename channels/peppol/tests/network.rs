//! The Peppol channel through the library's face, against the sandbox's Dintero, Peppol network
//! (SML over UDP, a signed SMP over https) and Storecove: a Norwegian B2B invoice to a registered
//! buyer is looked up, captured once, submitted once (valid under the official rules) and
//! `delivered` on the receiving access point's receipt; a buyer the network does not list, or
//! whose organisation number fails its check, gets the email route with the reason; a tampered or
//! untrusted SMP answer captures nothing and sends nothing.

use std::{sync::Arc, time::Duration};

use postbud::{App, Settings, Verdict, ids};
use postbud_sandbox::{
    Sandbox, SandboxConfig, Seed,
    peppol::{Fault as SmpFault, Peppol, ZONE},
    storecove::{Endpoint, Fault, FaultKind, Storecove, StorecoveConfig},
};
use serde_json::json;

/// A registered buyer (a valid organisation number: mod 11).
const BUYER: &str = "974760673";
/// Another registered buyer.
const SECOND: &str = "810000007";
/// A valid number the network does not list.
const UNLISTED: &str = "923609016";

struct Network {
    dintero: Sandbox,
    peppol: Peppol,
    storecove: Storecove,
    dir: tempfile::TempDir,
}

impl Network {
    async fn start() -> Self {
        Self::start_with(StorecoveConfig::default()).await
    }

    /// The network with the Storecove stand-in configured as `storecove` (its validator is
    /// always the official rules).
    async fn start_with(storecove: StorecoveConfig) -> Self {
        let validator: postbud_sandbox::storecove::Validator =
            Arc::new(
                |ubl: &[u8]| match postbud_sandbox::peppol_rules::check(ubl) {
                    Some(findings) if !findings.fatal().is_empty() => Err(findings.to_string()),
                    _ => Ok(()),
                },
            );
        let network = Self {
            dintero: Sandbox::start(SandboxConfig::default())
                .await
                .expect("sandbox"),
            peppol: Peppol::start().await.expect("the Peppol network"),
            storecove: Storecove::start(StorecoveConfig {
                validator: Some(validator),
                ..storecove
            })
            .await
            .expect("storecove"),
            dir: tempfile::tempdir().expect("dir"),
        };
        network
            .peppol
            .register(&format!("0192:{BUYER}"), "https://ap.buyer.example/as4");
        network
            .peppol
            .register(&format!("0192:{SECOND}"), "https://ap.second.example/as4");
        network
    }

    fn settings(&self) -> Settings {
        self.settings_with_backoff("100ms", "300ms")
    }

    /// The settings with retries waiting from `base` up to `max`.
    fn settings_with_backoff(&self, base: &str, max: &str) -> Settings {
        let dir = self.dir.path().display();
        let toml = format!(
            r#"{dintero}
[store]
url = "sqlite://{dir}/postbud.db"

[engine]
backoff_base = "{base}"
backoff_max = "{max}"
max_attempts = 1000

[channels.peppol]
kind = "peppol"
provider = "storecove"
api_url = "{api_url}"
api_key = "{api_key}"
legal_entity_id = {entity}
sender = "0192:745707327"
sml_zone = "{ZONE}"
dns = "{dns}"
smp_trust = "{trust}"
smp_ca_file = "{ca}"
allow = ["127.0.0.1"]
timeout = "3s"
poll_interval = "100ms"
[channels.peppol.seller]
name = "Merchant AS"
organization_number = "745707327"
vat_number = "NO745707327MVA"
address = {{ line = "Storgata 1", postal_code = "0151", city = "Oslo", country = "NO" }}

[channels.customer-email]
kind = "folder"
path = "{dir}/email"

[[routes]]
when = {{ product_type = "kravia.invoice_b2b", peppol = true }}
deliver = ["peppol"]
fallback = ["customer-email"]

[[routes]]
deliver = ["customer-email"]
"#,
            dintero = self.dintero.dintero_toml(),
            base = base,
            max = max,
            api_url = self.storecove.api_url(),
            api_key = postbud_sandbox::storecove::API_KEY,
            entity = postbud_sandbox::storecove::LEGAL_ENTITY_ID,
            dns = self.peppol.dns_addr(),
            trust = self.peppol.trust_pem().display(),
            ca = self.peppol.ca_file().display(),
        );
        Settings::from_toml(&toml).expect("settings")
    }

    async fn app(&self) -> Arc<App> {
        Arc::new(App::open(&self.settings()).await.expect("app opens"))
    }

    fn b2b(&self, organization_number: &str) -> String {
        self.dintero.seed(Seed {
            product_type: Some("kravia.invoice_b2b".into()),
            billing_address: Some(json!({
                "business_name": "Kjøper AS",
                "organization_number": organization_number,
                "first_name": "Kari",
                "last_name": "Nordmann",
                "email": "kari@kjoper.example",
                "address_line": "Kirkegata 2",
                "postal_code": "0153",
                "postal_place": "Oslo",
                "country": "NO"
            })),
            ..Seed::default()
        })
    }
}

async fn history(app: &App, id: &str) -> String {
    app.store()
        .history(id)
        .await
        .expect("history")
        .iter()
        .map(|h| format!("{} {}\n", h.event, h.detail))
        .collect()
}

#[tokio::test]
async fn a_b2b_invoice_to_a_registered_buyer_is_captured_once_submitted_once_and_delivered_on_the_receipt()
 {
    let net = Network::start().await;
    let app = net.app().await;
    let id = net.b2b(BUYER);

    let outcome = app.deliver_now(&id).await.expect("deliver");

    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(net.dintero.captures(&id), 1);
    let submissions = net.storecove.submissions();
    assert_eq!(submissions.len(), 1, "{submissions:?}");
    let delivery = ids::delivery_id(&id, "peppol");
    let guid = postbud_peppol::provider::idempotency_guid(&delivery);
    assert!(
        net.storecove.submission(&guid).is_some(),
        "submitted under the delivery's GUID"
    );
    // What arrived is valid under the official OpenPeppol and CEN rules (the stand-in refused
    // it otherwise), and carries the buyer's and the seller's identifiers.
    let ubl = String::from_utf8(net.storecove.ubl().remove(0)).expect("UTF-8");
    assert!(
        ubl.contains(&format!(
            "<cbc:EndpointID schemeID=\"0192\">{BUYER}</cbc:EndpointID>"
        )),
        "{ubl}"
    );
    assert!(ubl.contains("<cbc:EndpointID schemeID=\"0192\">745707327</cbc:EndpointID>"));
    if let Some(findings) = postbud_sandbox::peppol_rules::check(ubl.as_bytes()) {
        assert!(findings.fatal().is_empty(), "{findings}");
    }
    let log = history(&app, &id).await;
    assert!(
        log.contains("peppol: reachable, 0192:974760673 receives BIS Billing 3.0"),
        "{log}"
    );

    // Delivering again asks nothing new and sends nothing.
    let again = app.deliver_now(&id).await.expect("again");
    assert_eq!(again.verdict(), Verdict::Delivered);
    assert_eq!(net.storecove.submissions().len(), 1);
    assert_eq!(net.dintero.captures(&id), 1);

    // The receiving access point's receipt arrives through the provider's queue.
    net.storecove.succeed(&guid).expect("the stand-in knows it");
    let job = run_until(&app, &delivery, |job| {
        job.evidence.as_deref() == Some("delivered")
    })
    .await;
    assert_eq!(job.state, postbud::JobState::Done);
    assert!(
        net.storecove.queued().is_empty(),
        "the event is acknowledged once recorded"
    );
}

#[tokio::test]
async fn a_buyer_the_network_does_not_list_or_whose_number_fails_gets_email_with_the_reason() {
    let net = Network::start().await;
    let app = net.app().await;

    for (number, reason) in [(UNLISTED, "not registered"), ("987654321", "mod-11")] {
        let id = net.b2b(number);
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
        assert_eq!(net.dintero.captures(&id), 1);
        let log = history(&app, &id).await;
        assert!(
            log.contains("queued for customer-email")
                && log.contains("peppol: not reachable")
                && log.contains(reason),
            "{number}: {log}"
        );
        let channels: Vec<_> = outcome
            .jobs
            .iter()
            .filter_map(|j| j.channel.as_deref())
            .collect();
        assert_eq!(channels, ["customer-email"], "{outcome}");
    }
    assert!(
        net.storecove.submissions().is_empty(),
        "nothing went over Peppol"
    );

    // `postbud check`: the merchant's own participant id is looked up, the provider probed.
    let checks = app.check().await;
    let (_, peppol) = checks
        .iter()
        .find(|(name, _)| name == "peppol")
        .expect("checked");
    let said = peppol.as_ref().expect("the check passes");
    assert!(
        said.contains("sender 0192:745707327 is not registered to receive BIS Billing 3.0")
            && said.contains("it can still send")
            && said.contains("`sml_zone` names another network"),
        "{said}"
    );
    // Registered since (a fresh process: the "not registered" above is kept for its TTL).
    net.peppol
        .register("0192:745707327", "https://ap.merchant.example/as4");
    let checks = net.app().await.check().await;
    let (_, peppol) = checks
        .iter()
        .find(|(name, _)| name == "peppol")
        .expect("checked");
    let said = peppol.as_ref().expect("the check passes");
    assert!(
        said.contains("sender 0192:745707327 is registered"),
        "{said}"
    );
}

#[tokio::test]
async fn a_tampered_or_untrusted_smp_answer_captures_nothing_and_sends_nothing() {
    let net = Network::start().await;
    let app = net.app().await;

    // A buyer each: a good answer is cached for its time to live, so each fault is met fresh.
    for (fault, buyer) in [
        (SmpFault::TamperedEndpoint, BUYER),
        (SmpFault::UntrustedSigner, SECOND),
    ] {
        let participant = format!("0192:{buyer}");
        net.peppol.fault(&participant, fault.clone());
        let id = net.b2b(buyer);
        let outcome = app
            .deliver_waiting(&id, Duration::from_secs(1))
            .await
            .expect("deliver");
        assert_ne!(
            outcome.verdict(),
            Verdict::Delivered,
            "{fault:?}: {outcome}"
        );
        assert_eq!(net.dintero.captures(&id), 0, "{fault:?}: nothing captured");
        assert!(
            outcome
                .to_string()
                .contains("the lookup before routing failed")
                && outcome.to_string().contains("nothing was captured"),
            "{fault:?}: {outcome}"
        );

        // Once the SMP answers as it should, the retry goes through: one capture, one
        // submission.
        net.peppol.fault(&participant, None);
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(
            outcome.verdict(),
            Verdict::Delivered,
            "{fault:?}: {outcome}"
        );
        assert_eq!(net.dintero.captures(&id), 1);
    }
    assert_eq!(net.storecove.submissions().len(), 2);
}

/// The network with a Storecove that words its 422 to a repeated idempotencyGuid in a way Postbud
/// does not know, and whose next submissions meet `faults`, in order.
async fn repeats_worded_otherwise(faults: &[FaultKind]) -> Network {
    let net = Network::start_with(StorecoveConfig {
        repeat_answer: Some(r#"{"message":"Unprocessable Entity"}"#.into()),
        ..StorecoveConfig::default()
    })
    .await;
    for fault in faults {
        net.storecove
            .inject(Fault::once(Endpoint::Submit, fault.clone()));
    }
    net
}

/// Storecove's 422 to a repeated idempotencyGuid, worded in a way Postbud does not know, after an
/// attempt whose answer was lost: Storecove has the invoice, so neither a second submission nor
/// the email fallback may go out; the invoice needs a person, who is told what to look at.
#[tokio::test]
async fn a_repeat_storecove_words_otherwise_stops_for_a_person_and_sends_nothing_else() {
    let net = repeats_worded_otherwise(&[FaultKind::LoseAnswer]).await;
    let app = net.app().await;
    let id = net.b2b(BUYER);

    let outcome = app.deliver_now(&id).await.expect("deliver");

    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    assert_eq!(net.dintero.captures(&id), 1);
    assert_eq!(net.storecove.submissions().len(), 1, "submitted once");
    let delivery = ids::delivery_id(&id, "peppol");
    let job = job_of(&app, &delivery).await;
    assert_eq!(job.state, postbud::JobState::Dead, "{job:?}");
    let error = job.last_error.unwrap_or_default();
    let guid = postbud_peppol::provider::idempotency_guid(&delivery);
    assert!(error.contains(&guid), "{error}");
    assert!(error.contains("may already have this invoice"), "{error}");
    assert_no_fallback(&app, &id).await;
    assert!(
        !net.dir.path().join("email").exists()
            || std::fs::read_dir(net.dir.path().join("email"))
                .expect("dir")
                .next()
                .is_none(),
        "nothing in the email folder"
    );

    // Storecove's own report of the submission (its events name the idempotencyGuid) settles
    // it: the receiving access point's receipt makes the delivery done and the invoice
    // delivered, with nothing sent again.
    net.storecove.succeed(&guid).expect("the stand-in has it");
    let job = run_until(&app, &delivery, |job| job.state == postbud::JobState::Done).await;
    assert_eq!(job.evidence.as_deref(), Some("delivered"), "{job:?}");
    let outcome = app.deliver_now(&id).await.expect("status");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(net.storecove.submissions().len(), 1);
}

/// Asserts that the invoice `id` has no email fallback.
async fn assert_no_fallback(app: &App, id: &str) {
    let fallback = ids::delivery_id(id, "customer-email");
    let job = app.store().job(&fallback).await.expect("job");
    assert!(job.is_none(), "no fallback: {job:?}");
}

/// The job `id`, which must be there.
async fn job_of(app: &App, id: &str) -> postbud::Job {
    app.store().job(id).await.expect("job").expect("there")
}

/// Runs the app (its evidence sources with it) until the job `id` exists and satisfies `done`.
async fn run_until(app: &Arc<App>, id: &str, done: impl Fn(&postbud::Job) -> bool) -> postbud::Job {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let app = Arc::clone(app);
        tokio::spawn(async move {
            app.run(async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let job = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            // A fallback is made by the report itself: not there before it.
            if let Some(job) = app.store().job(id).await.expect("job")
                && done(&job)
            {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} did not get there"));
    let _ = stop.send(());
    running.await.expect("run ends");
    job
}

/// Storecove had the submission whose answer was lost: its status event, read while the delivery
/// waits for its retry, settles it; the retry is never made, nothing is submitted twice, and the
/// invoice is delivered without the fallback.
#[tokio::test]
async fn the_access_point_s_report_settles_a_delivery_waiting_after_a_lost_answer() {
    let net = Network::start().await;
    net.storecove
        .inject(Fault::once(Endpoint::Submit, FaultKind::LoseAnswer));
    // The retry an hour away: the report comes first.
    let app = Arc::new(
        App::open(&net.settings_with_backoff("1h", "1h"))
            .await
            .expect("app opens"),
    );
    let id = net.b2b(BUYER);

    let outcome = app.deliver_now(&id).await.expect("deliver");

    assert_eq!(outcome.verdict(), Verdict::Pending, "{outcome}");
    let delivery = ids::delivery_id(&id, "peppol");
    let guid = postbud_peppol::provider::idempotency_guid(&delivery);
    let job = job_of(&app, &delivery).await;
    assert_eq!(
        (job.state, job.outcome_unknown, job.reference.as_deref()),
        (postbud::JobState::Queued, true, Some(guid.as_str())),
        "waiting, the GUID kept: {job:?}"
    );
    net.storecove.succeed(&guid).expect("Storecove has it");
    let job = run_until(&app, &delivery, |job| job.state == postbud::JobState::Done).await;
    assert_eq!(
        (job.evidence.as_deref(), job.attempts),
        (Some("delivered"), 1),
        "{job:?}"
    );
    assert_eq!(net.storecove.submissions().len(), 1);
    assert!(net.storecove.queued().is_empty(), "the event acknowledged");
    let outcome = app.deliver_now(&id).await.expect("status");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_no_fallback(&app, &id).await;
}

/// The GUID is on the delivery before Storecove answers: a status event that outruns the answer
/// (or follows the worker's death) finds its delivery.
#[tokio::test]
async fn the_guid_is_kept_before_the_submission_goes_out() {
    let net = Network::start().await;
    net.storecove
        .inject(Fault::once(Endpoint::Submit, FaultKind::HoldAnswer(2)));
    let app = net.app().await;
    let id = net.b2b(BUYER);
    let delivering = tokio::spawn({
        let (app, id) = (Arc::clone(&app), id.clone());
        async move { app.deliver_now(&id).await }
    });
    tokio::time::timeout(Duration::from_secs(20), async {
        while net.storecove.submissions().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("submitted");
    let delivery = ids::delivery_id(&id, "peppol");
    let job = job_of(&app, &delivery).await;
    let guid = postbud_peppol::provider::idempotency_guid(&delivery);
    assert_eq!(
        (job.state, job.reference.as_deref()),
        (postbud::JobState::Running, Some(guid.as_str())),
        "kept while Storecove holds its answer"
    );
    let outcome = delivering.await.expect("task").expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
}

/// The same after an operator's retry, which starts the attempts again at 1: the answer to the
/// first attempt was lost, the key was then refused (the delivery stops for the operator, with no
/// fallback), the operator fixes it and retries; Storecove's 422 to the repeat, in words Postbud
/// does not know, still stops the delivery rather than running the fallback.
#[tokio::test]
async fn after_an_operator_s_retry_a_repeat_worded_otherwise_still_sends_nothing_else() {
    let net = repeats_worded_otherwise(&[FaultKind::LoseAnswer, FaultKind::Status(401)]).await;
    let app = net.app().await;
    let id = net.b2b(BUYER);

    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    let delivery = ids::delivery_id(&id, "peppol");
    let job = job_of(&app, &delivery).await;
    assert!(
        job.last_error
            .as_deref()
            .is_some_and(|e| e.contains("api_key")),
        "the key refused: {job:?}"
    );
    assert!(
        job.outcome_unknown,
        "the first attempt may have reached Storecove: {job:?}"
    );

    assert_eq!(app.retry(&id, Some("peppol")).await.expect("retry"), 1);
    let outcome = app.deliver_now(&id).await.expect("deliver again");

    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    let job = job_of(&app, &delivery).await;
    assert_eq!(job.state, postbud::JobState::Dead, "{job:?}");
    assert!(
        job.last_error
            .as_deref()
            .is_some_and(|e| e.contains("may already have this invoice")),
        "{job:?}"
    );
    assert_eq!(net.storecove.submissions().len(), 1, "submitted once");
    assert_no_fallback(&app, &id).await;
    assert_eq!(net.dintero.captures(&id), 1);

    // Storecove reports that the receiving access point could not take it: now, and only now,
    // the fallback runs, once.
    let guid = postbud_peppol::provider::idempotency_guid(&delivery);
    net.storecove
        .fail(&guid, "failed", "receiving access point refused it")
        .expect("the stand-in has it");
    let email = ids::delivery_id(&id, "customer-email");
    run_until(&app, &delivery, |job| {
        job.state == postbud::JobState::Failed
    })
    .await;
    let fallback = run_until(&app, &email, |job| job.state == postbud::JobState::Done).await;
    assert_eq!(fallback.attempts, 1, "{fallback:?}");
    assert_eq!(net.storecove.submissions().len(), 1);
}

#[tokio::test]
async fn a_submission_the_access_point_reports_failed_runs_the_fallback_once() {
    let net = Network::start().await;
    let app = net.app().await;
    let id = net.b2b(BUYER);
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let delivery = ids::delivery_id(&id, "peppol");
    let guid = postbud_peppol::provider::idempotency_guid(&delivery);

    // The receiving access point could not take it: the provider's event says `failed`.
    net.storecove
        .fail(
            &guid,
            "failed",
            "receiving access point refused: FD failure of delivery",
        )
        .expect("the stand-in knows it");
    let fallback = ids::delivery_id(&id, "customer-email");
    let done = run_until(&app, &fallback, |job| job.state == postbud::JobState::Done).await;
    assert_eq!(done.channel.as_deref(), Some("customer-email"));

    let peppol = job_of(&app, &delivery).await;
    assert_eq!(peppol.state, postbud::JobState::Failed, "{peppol:?}");
    assert_eq!(peppol.evidence.as_deref(), Some("rejected"));
    assert!(
        peppol
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("FD failure of delivery")),
        "{peppol:?}"
    );
    assert_eq!(net.storecove.submissions().len(), 1, "not submitted again");
    assert!(
        net.storecove.queued().is_empty(),
        "acknowledged once recorded"
    );

    // The cause fixed, an operator sends it over Peppol again: Storecove processes only the first
    // submission under a GUID, the failed one included, so the resend has a GUID of its own and
    // is submitted, not taken for the failed one's repeat.
    assert_eq!(app.retry(&id, Some("peppol")).await.expect("retry"), 1);
    let outcome = app.deliver_now(&id).await.expect("deliver again");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let resent = postbud_peppol::provider::idempotency_guid_of(&delivery, 1);
    assert_ne!(resent, guid);
    assert_eq!(net.storecove.submissions().len(), 2, "submitted again");
    assert!(net.storecove.submission(&resent).is_some());
    let job = job_of(&app, &delivery).await;
    assert_eq!(
        (job.state, job.resends, job.reference.as_deref()),
        (postbud::JobState::Done, 1, Some(resent.as_str()))
    );
}

#[tokio::test]
async fn an_invoice_no_peppol_route_could_take_does_not_wait_on_the_lookup() {
    let net = Network::start().await;
    let app = net.app().await;
    // The network is silent for this buyer, but the invoice is B2C: the Peppol route's
    // other condition (`kravia.invoice_b2b`) already rules it out, so nobody asks.
    let participant = format!("0192:{BUYER}");
    net.peppol.fault(&participant, SmpFault::DnsSilent);
    let id = net.dintero.seed(Seed {
        billing_address: Some(json!({
            "first_name": "Kari",
            "last_name": "Nordmann",
            "organization_number": BUYER,
            "email": "kari@example.com",
            "country": "NO"
        })),
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(net.peppol.dns_queries(&participant), 0);
    let log = history(&app, &id).await;
    assert!(!log.contains("peppol:"), "{log}");
}
