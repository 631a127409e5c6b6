//! A worker killed between the access point's acceptance and its own commit: the invoice is still
//! submitted once. The provider holds its answer; the test kills `postbud deliver` with SIGKILL
//! while the provider has the submission and the worker does not know it; a second run submits
//! again under the same idempotency GUID, gets the provider's 422 "already submitted", and counts
//! the delivery as done.

mod common;

use std::time::{Duration, Instant};

use postbud_sandbox::{
    Sandbox, SandboxConfig, Seed,
    peppol::{Peppol, ZONE},
    storecove::{Endpoint, Fault, FaultKind, Storecove, StorecoveConfig},
};
use serde_json::json;

const BUYER: &str = "974760673";

#[tokio::test]
async fn a_worker_killed_after_the_access_point_accepted_submits_once() {
    let dintero = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox");
    let peppol = Peppol::start().await.expect("the Peppol network");
    peppol.register(&format!("0192:{BUYER}"), "https://ap.buyer.example/as4");
    let storecove = Storecove::start(StorecoveConfig::default())
        .await
        .expect("storecove");
    storecove.inject(Fault::once(Endpoint::Submit, FaultKind::HoldAnswer(60)));
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("postbud.toml");
    std::fs::write(
        &config,
        format!(
            r#"{dintero}
[store]
url = "sqlite://{dir}/postbud.db"

[engine]
lease = "2s"
backoff_base = "100ms"
backoff_max = "300ms"

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
timeout = "90s"
[channels.peppol.seller]
name = "Merchant AS"
organization_number = "745707327"
vat_number = "NO745707327MVA"
address = {{ line = "Storgata 1", postal_code = "0151", city = "Oslo", country = "NO" }}

[[routes]]
when = {{ peppol = true }}
deliver = ["peppol"]
"#,
            dintero = dintero.dintero_toml(),
            dir = dir.path().display(),
            api_url = storecove.api_url(),
            api_key = postbud_sandbox::storecove::API_KEY,
            entity = postbud_sandbox::storecove::LEGAL_ENTITY_ID,
            dns = peppol.dns_addr(),
            trust = peppol.trust_pem().display(),
            ca = peppol.ca_file().display(),
        ),
    )
    .expect("config");
    let id = dintero.seed(Seed {
        product_type: Some("kravia.invoice_b2b".into()),
        billing_address: Some(json!({
            "business_name": "Kjøper AS",
            "organization_number": BUYER,
            "email": "kari@kjoper.example",
            "address_line": "Kirkegata 2",
            "postal_code": "0153",
            "postal_place": "Oslo",
            "country": "NO"
        })),
        ..Seed::default()
    });

    let mut worker = common::postbud()
        .arg("--config")
        .arg(&config)
        .args(["deliver", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("postbud deliver starts");
    let started = Instant::now();
    while storecove.submissions().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the worker never submitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The provider has it; its answer is held: the worst moment to die.
    worker.kill().expect("SIGKILL");
    let _ = worker.wait();
    assert_eq!(dintero.captures(&id), 1);

    let output = common::run(&config, &["deliver", &id], &[]).await;
    let said = common::text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("delivered"), "{said}");
    assert_eq!(storecove.submissions().len(), 1, "submitted once: {said}");
    let posts = storecove
        .requests()
        .iter()
        .filter(|(method, path)| method == "POST" && path == "/document_submissions")
        .count();
    assert_eq!(
        posts, 2,
        "the second run asked again and was told it was in: {said}"
    );
    assert_eq!(dintero.captures(&id), 1, "captured once");
}
