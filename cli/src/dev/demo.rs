//! `postbud demo`: the whole flow on embedded defaults, against an in-process sandbox.

use std::{path::Path, process::ExitCode};

use postbud::{JobKind, Settings, Verdict, ids};
use postbud_sandbox::{
    Sandbox, Seed,
    hooks::HookReceiver,
    mailbox::Mailbox,
    peppol::Peppol,
    sftp::SftpServer,
    storecove::{Storecove, StorecoveConfig},
};
use serde_json::json;

use super::stock_registry;
use crate::commands::{Failure, exit};

const DEMO_TOML: &str = include_str!("demo.toml");
/// The demo platform's webhook secret (a Standard Webhooks test secret, not a real one).
const HOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The B2B buyer the sandbox's Peppol network lists (a valid organisation number).
const PEPPOL_BUYER: &str = "974760673";
/// The case whose invoice goes over Peppol.
const PEPPOL_CASE: &str = "B2B on Peppol: Storecove to the buyer's ERP";

struct Case {
    label: &'static str,
    seed: Seed,
    void_after: bool,
}

fn cases() -> Vec<Case> {
    let on_peppol = json!({"first_name": "Per", "last_name": "Hansen", "business_name": "Fjordkraft Verksted AS",
        "organization_number": PEPPOL_BUYER, "email": "faktura@fjordkraft-verksted.example",
        "address_line": "Kaiveien 3", "postal_code": "5003", "postal_place": "Bergen", "country": "NO", "customer_reference": "PO-1203"});
    let b2b = json!({"first_name": "Kari", "last_name": "Nordmann", "business_name": "Nordmann Bygg AS",
        "organization_number": "987654325", "email": "faktura@nordmann-bygg.example", "phone_number": "+4791234567",
        "address_line": "Industriveien 5", "postal_code": "0580", "postal_place": "Oslo", "country": "NO", "customer_reference": "PO-7788"});
    let phone_only = json!({"first_name": "Ola", "last_name": "Nordmann", "phone_number": "912 34 568",
        "address_line": "Storgata 2", "postal_code": "0151", "postal_place": "Oslo", "country": "NO"});
    let email_only = json!({"first_name": "Sven", "last_name": "Svensson", "email": "sven@example.se",
        "address_line": "Drottninggatan 5", "postal_code": "111 51", "postal_place": "Stockholm", "country": "SE"});
    vec![
        Case {
            label: PEPPOL_CASE,
            seed: Seed {
                product_type: Some("kravia.invoice_b2b".into()),
                billing_address: Some(on_peppol),
                ..Seed::default()
            },
            void_after: false,
        },
        Case {
            label: "B2B not on Peppol: EHF over SFTP, and email",
            seed: Seed {
                product_type: Some("kravia.invoice_b2b".into()),
                billing_address: Some(b2b),
                ..Seed::default()
            },
            void_after: false,
        },
        Case {
            label: "B2C: email, SMS and the platform webhook",
            seed: Seed::default(),
            void_after: false,
        },
        Case {
            label: "B2C, phone only: SMS with the link",
            seed: Seed {
                billing_address: Some(phone_only),
                pdf_shape: Some("direct".into()),
                ..Seed::default()
            },
            void_after: false,
        },
        Case {
            label: "B2C, no phone: share down, falls back",
            seed: Seed {
                billing_address: Some(email_only),
                currency: Some("SEK".into()),
                ..Seed::default()
            },
            void_after: false,
        },
        Case {
            label: "B2C: delivered, then voided",
            seed: Seed::default(),
            void_after: true,
        },
        Case {
            label: "Kravia sends this one itself",
            seed: Seed {
                session_channel: Some("kravia".into()),
                ..Seed::default()
            },
            void_after: false,
        },
    ]
}

fn io(e: impl std::fmt::Display) -> Failure {
    Failure {
        message: e.to_string(),
        code: exit::FAILED,
    }
}

/// The console's user the screenshots log in as: the demo's server is on loopback and ends with
/// the demo.
#[cfg(feature = "screenshots")]
const SCREENSHOT_USER: (&str, &str) = ("demo", "the demo's own passphrase");

/// `postbud demo`; with `screenshots`, the console's pages of the demo's data are saved there.
pub async fn run(dir: &Path, screenshots: Option<&Path>) -> Result<ExitCode, Failure> {
    // Only what an earlier demo wrote is removed, never the folder itself.
    for leftover in ["postbud.db", "postbud.db-wal", "postbud.db-shm"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    for leftover in ["invoices", "erp-drop", "mail", "webhooks", "sftp"] {
        let _ = std::fs::remove_dir_all(dir.join(leftover));
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let dir = dir.canonicalize().map_err(io)?;
    let sandbox = Sandbox::start(Default::default()).await.map_err(io)?;
    let mailbox = Mailbox::start(&dir.join("mail")).await.map_err(io)?;
    let hooks = HookReceiver::start(&dir.join("webhooks"), HOOK_SECRET)
        .await
        .map_err(io)?;
    std::fs::create_dir_all(dir.join("sftp/erp")).map_err(io)?;
    let sftp = SftpServer::start(&dir.join("sftp"), &dir)
        .await
        .map_err(io)?;
    let peppol = Peppol::start().await.map_err(io)?;
    peppol.register(
        &format!("0192:{PEPPOL_BUYER}"),
        "https://ap.fjordkraft-verksted.example/as4",
    );
    let storecove = Storecove::start(StorecoveConfig::default())
        .await
        .map_err(io)?;
    // `postbud serve`'s router, in-process, so the signed links in the SMS texts work.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io)?;
    let public = format!("http://{}", listener.local_addr().map_err(io)?);
    let toml = DEMO_TOML
        .replace("{api}", &sandbox.api_url())
        .replace("{cdn}", &sandbox.cdn_url())
        .replace("{dir}", &dir.display().to_string())
        .replace("{public}", &public)
        .replace("{smtp}", &mailbox.url())
        .replace("{twilio}", &sandbox.provider_url("twilio"))
        .replace("{twilio_sid}", postbud_sandbox::sms::TWILIO_SID)
        .replace("{twilio_token}", postbud_sandbox::sms::TWILIO_TOKEN)
        .replace("{hook}", &hooks.url())
        .replace("{hook_secret}", HOOK_SECRET)
        .replace("{sftp_port}", &sftp.addr().port().to_string())
        .replace("{sftp_key}", &sftp.client_key().display().to_string())
        .replace("{sftp_fingerprint}", sftp.host_fingerprint())
        .replace("{storecove}", &storecove.api_url())
        .replace("{storecove_key}", postbud_sandbox::storecove::API_KEY)
        .replace(
            "{storecove_entity}",
            &postbud_sandbox::storecove::LEGAL_ENTITY_ID.to_string(),
        )
        .replace("{sml_zone}", postbud_sandbox::peppol::ZONE)
        .replace("{sml_dns}", &peppol.dns_addr().to_string())
        .replace("{smp_trust}", &peppol.trust_pem().display().to_string())
        .replace("{smp_ca}", &peppol.ca_file().display().to_string());
    #[cfg(feature = "screenshots")]
    let toml = if screenshots.is_some() {
        let hash = postbud::password::hash(SCREENSHOT_USER.1).map_err(io)?;
        format!(
            "{toml}\n[console]\nenabled = true\n\n[[console.users]]\nname = \"{}\"\npassword_hash = \"{hash}\"\nrole = \"operator\"\n",
            SCREENSHOT_USER.0
        )
    } else {
        toml
    };
    let app = std::sync::Arc::new(
        crate::commands::open(&Settings::from_toml(&toml)?, &stock_registry()?).await?,
    );
    tokio::spawn({
        let app = std::sync::Arc::clone(&app);
        async move { axum::serve(listener, postbud::server::router(app)).await }
    });

    say!(
        "Postbud demo: a Dintero sandbox on {}, store and files in {}\n",
        sandbox.url(),
        dir.display()
    );
    let cases = cases();
    let bar = indicatif::ProgressBar::new(cases.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for case in cases {
        bar.set_message(case.label);
        let id = sandbox.seed(case.seed);
        let mut outcome = app.deliver_now(&id).await?;
        if case.void_after {
            outcome = app
                .void(&id, std::time::Duration::from_secs(10))
                .await?
                .outcome;
        }
        rows.push((case.label, id, outcome));
        bar.inc(1);
    }
    bar.finish_and_clear();

    say!(
        "{:<32} {:<44} {:<14} {:<8} {:<26} {:<9} where to look",
        "transaction",
        "case",
        "invoice",
        "captured",
        "channel",
        "outcome"
    );
    for (label, id, outcome) in &rows {
        let number = outcome
            .dispatch
            .as_ref()
            .and_then(|d| d.invoice_number.clone())
            .unwrap_or_else(|| "-".into());
        let captured = sandbox.captures(id);
        let deliveries: Vec<_> = outcome
            .jobs
            .iter()
            .filter(|j| j.kind != JobKind::Dispatch)
            .collect();
        if deliveries.is_empty() {
            let why = outcome
                .dispatch
                .as_ref()
                .and_then(|d| d.reason.clone())
                .unwrap_or_default();
            say!(
                "{id:<32} {label:<44} {number:<14} {captured:<8} {:<26} {:<9} {why}",
                "-",
                outcome.verdict().to_string()
            );
        }
        for (index, job) in deliveries.iter().enumerate() {
            let label = if index == 0 { *label } else { "" };
            let id = if index == 0 { id.as_str() } else { "" };
            let channel = match (job.kind, job.role.map(|r| r.as_str())) {
                (JobKind::Cancel, _) => {
                    format!("{} (cancel)", job.channel.as_deref().unwrap_or(""))
                }
                (_, Some("fallback")) => {
                    format!("{} (fallback)", job.channel.as_deref().unwrap_or(""))
                }
                _ => job.channel.clone().unwrap_or_default(),
            };
            let captured = if index == 0 {
                captured.to_string()
            } else {
                String::new()
            };
            let number = if index == 0 { number.as_str() } else { "" };
            let detail = job
                .receipt
                .as_deref()
                .or(job.last_error.as_deref())
                .unwrap_or("");
            say!(
                "{id:<32} {label:<44} {number:<14} {captured:<8} {channel:<26} {:<9} {detail}",
                job.state.to_string()
            );
        }
    }
    // The SMS carries a signed link to the PDF: follow one, as the customer's phone would.
    let sms = sandbox.stats().sms;
    let link_check = match sms.iter().find_map(|m| {
        m.text
            .split_whitespace()
            .find(|w| w.starts_with("http"))
            .map(str::to_owned)
    }) {
        Some(link) => match reqwest_get(&link).await {
            Some(bytes) if bytes.starts_with(b"%PDF-") => {
                format!("the SMS link serves the PDF ({} bytes)", bytes.len())
            }
            _ => "the SMS link did not serve the PDF".to_owned(),
        },
        None => "no SMS was sent".to_owned(),
    };
    say!(
        "\nWhere to look: {}/mail ({} emails), {}/webhooks (verified webhooks), {}/sftp/erp (ERP drop), {}/invoices (archive);\n\
         {} SMS at the Twilio stand-in; {link_check}.",
        dir.display(),
        mailbox.count(),
        dir.display(),
        dir.display(),
        dir.display(),
        sms.len()
    );
    say!("{}", peppol_receipt(&app, &storecove, &rows).await?);
    let (first_label, first_id, _) = &rows[0];
    let again = app.deliver_now(first_id).await?;
    say!(
        "\nDelivering \"{first_label}\" again: {} (captures at Dintero: {}, nothing sent twice).",
        if again.newly_queued {
            "started anew"
        } else {
            "already done"
        },
        sandbox.captures(first_id)
    );
    say!(
        "Look closer: POSTBUD_STORE__URL=sqlite://{}/postbud.db cargo run --release -p postbud-cli --features dev -- status {first_id}",
        dir.display()
    );
    if let Some(out) = screenshots {
        #[cfg(feature = "screenshots")]
        {
            // The invoice page of the case with the most to show: a failed delivery and its
            // fallback.
            let shown = rows
                .iter()
                .find(|(label, _, _)| label.contains("falls back"))
                .unwrap_or(&rows[0]);
            let saved = super::screenshots::take(&public, SCREENSHOT_USER, &shown.1, out).await?;
            for path in saved {
                say!("Screenshot: {}", path.display());
            }
        }
        #[cfg(not(feature = "screenshots"))]
        let _ = out;
    }
    let all_ok = rows.iter().all(|(_, _, o)| {
        matches!(
            o.verdict(),
            Verdict::Delivered | Verdict::Voided | Verdict::Skipped
        )
    });
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILED)
    })
}

/// The receiving access point's receipt for the Peppol case, as Storecove reports it through its
/// pull queue: the engine runs until it has recorded it on the delivery.
async fn peppol_receipt(
    app: &std::sync::Arc<postbud::App>,
    storecove: &Storecove,
    rows: &[(&str, String, postbud::Outcome)],
) -> Result<String, Failure> {
    let Some((_, id, _)) = rows.iter().find(|(label, _, _)| *label == PEPPOL_CASE) else {
        return Ok(String::new());
    };
    let delivery = ids::delivery_id(id, "peppol");
    let guid = postbud_peppol::provider::idempotency_guid(&delivery);
    if let Err(why) = storecove.succeed(&guid) {
        return Ok(format!(
            "
Peppol: nothing reached Storecove ({why})."
        ));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let app = std::sync::Arc::clone(app);
        async move {
            app.run(async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let recorded = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            let jobs = app.jobs(id).await?;
            match jobs.into_iter().find(|j| j.id == delivery) {
                Some(job) if job.evidence.is_some() => return Ok::<_, postbud::StoreError>(job),
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    let _ = stop.send(());
    let _ = running.await;
    Ok(match recorded {
        Ok(Ok(job)) => format!(
            "
Peppol: Storecove reported the buyer's access point's receipt; the delivery's evidence is now `{}`.",
            job.evidence.unwrap_or_default()
        ),
        Ok(Err(e)) => format!("
Peppol: the receipt could not be read back: {e}"),
        Err(_) => "
Peppol: no receipt was recorded within 15 s.".to_owned(),
    })
}

/// A GET on loopback, for the demo's own check of an SMS link.
async fn reqwest_get(url: &str) -> Option<Vec<u8>> {
    let response = reqwest::get(url).await.ok()?;
    response.status().is_success().then_some(())?;
    Some(response.bytes().await.ok()?.to_vec())
}
