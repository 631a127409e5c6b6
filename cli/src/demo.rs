//! `postbud demo`: the whole flow on embedded defaults, against an in-process sandbox.

use std::{path::Path, process::ExitCode};

use postbud::{Settings, engine::Verdict, store::JobKind};
use postbud_sandbox::{Sandbox, Seed};
use serde_json::json;

use crate::commands::{Failure, exit};

const DEMO_TOML: &str = include_str!("demo.toml");

struct Case {
    label: &'static str,
    seed: Seed,
    void_after: bool,
}

fn cases() -> Vec<Case> {
    let b2b = json!({"first_name": "Kari", "last_name": "Nordmann", "business_name": "Nordmann AS",
        "organization_number": "987654321", "email": "faktura@nordmann.example", "phone_number": "+4791234567",
        "address_line": "Storgata 1", "postal_code": "0151", "postal_place": "Oslo", "country": "NO"});
    let no_phone = json!({"first_name": "Sven", "last_name": "Svensson", "email": "sven@example.se",
        "address_line": "Drottninggatan 5", "postal_code": "111 51", "postal_place": "Stockholm", "country": "SE"});
    vec![
        Case {
            label: "B2B, to the ERP drop and the archive",
            seed: Seed {
                product_type: Some("kravia.invoice_b2b".into()),
                billing_address: Some(b2b),
                ..Seed::default()
            },
            void_after: false,
        },
        Case {
            label: "B2C with email and phone",
            seed: Seed::default(),
            void_after: false,
        },
        Case {
            label: "B2C, PDF as the file itself",
            seed: Seed {
                pdf_shape: Some("direct".into()),
                ..Seed::default()
            },
            void_after: false,
        },
        Case {
            label: "B2C without phone: share down, falls back",
            seed: Seed {
                billing_address: Some(no_phone),
                currency: Some("SEK".into()),
                ..Seed::default()
            },
            void_after: false,
        },
        Case {
            label: "B2C, delivered, then voided",
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

pub async fn run(dir: &Path) -> Result<ExitCode, Failure> {
    // Only what an earlier demo wrote is removed, never the folder itself.
    for leftover in ["postbud.db", "postbud.db-wal", "postbud.db-shm"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    for leftover in ["invoices", "erp-drop"] {
        let _ = std::fs::remove_dir_all(dir.join(leftover));
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let dir = dir.canonicalize().map_err(io)?;
    let sandbox = Sandbox::start(Default::default()).await.map_err(io)?;
    let toml = DEMO_TOML
        .replace("{api}", &sandbox.api_url())
        .replace("{dir}", &dir.display().to_string());
    let app = crate::commands::open(&Settings::from_toml(&toml)?).await?;

    println!(
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
            outcome = app.void(&id).await?.outcome;
        }
        rows.push((case.label, id, outcome));
        bar.inc(1);
    }
    bar.finish_and_clear();

    println!(
        "{:<32} {:<44} {:<14} {:<8} {:<18} {:<9} where to look",
        "transaction", "case", "invoice", "captured", "channel", "outcome"
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
            println!(
                "{id:<32} {label:<44} {number:<14} {captured:<8} {:<18} {:<9} {why}",
                "-",
                format!("{:?}", outcome.verdict()).to_lowercase()
            );
        }
        for (index, job) in deliveries.iter().enumerate() {
            let label = if index == 0 { *label } else { "" };
            let id = if index == 0 { id.as_str() } else { "" };
            let channel = match (job.kind, job.role.as_deref()) {
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
            println!(
                "{id:<32} {label:<44} {number:<14} {captured:<8} {channel:<18} {:<9} {detail}",
                job.state.to_string()
            );
        }
    }
    let (first_label, first_id, _) = &rows[0];
    let again = app.deliver_now(first_id).await?;
    println!(
        "\nDelivering \"{first_label}\" again: {} (captures at Dintero: {}, nothing sent twice).",
        if again.newly_queued {
            "started anew"
        } else {
            "already done"
        },
        sandbox.captures(first_id)
    );
    println!(
        "Look closer: POSTBUD_STORE__URL=sqlite://{}/postbud.db cargo run --release -p postbud-cli -- status {first_id}",
        dir.display()
    );
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
