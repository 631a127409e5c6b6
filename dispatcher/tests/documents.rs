//! The PDF behind `kravia:invoice_url`: both shapes work; every refusal leaves the transaction
//! uncaptured.

mod common;

use common::{Harness, sha256};
use postbud::engine::Verdict;
use postbud_sandbox::Seed;

async fn deliver(h: &Harness, extra: &str, seed: Seed) -> (String, postbud::Outcome) {
    let app = h.app(extra).await;
    let id = h.sandbox.seed(seed);
    let outcome = app.deliver_now(&id).await.expect("deliver");
    (id, outcome)
}

#[tokio::test]
async fn both_pdf_shapes_deliver_the_same_bytes() {
    let h = Harness::start().await;
    for shape in ["descriptor", "direct"] {
        let (id, outcome) = deliver(
            &h,
            "",
            Seed {
                pdf_shape: Some(shape.into()),
                ..Seed::default()
            },
        )
        .await;
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{shape}: {outcome}");
        let number = h.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
            .as_str()
            .expect("n")
            .to_owned();
        let written = std::fs::read(h.invoices().join(format!("{number}.pdf"))).expect("pdf");
        assert_eq!(
            sha256(&written),
            sha256(&h.sandbox.pdf(&id).expect("pdf")),
            "{shape}"
        );
    }
}

/// Seeds with `seed`, delivers, and expects a permanent failure mentioning `expected`, no capture.
async fn refused(extra: &str, seed: Seed, expected: &str) {
    let h = Harness::start().await;
    let (id, outcome) = deliver(&h, extra, seed).await;
    assert_eq!(outcome.verdict(), Verdict::Failed, "{outcome}");
    let reason = outcome
        .dispatch
        .as_ref()
        .and_then(|d| d.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains(expected),
        "expected `{expected}` in: {reason}"
    );
    assert!(reason.contains("nothing was captured"), "{reason}");
    assert_eq!(h.sandbox.captures(&id), 0, "collection must not start");
}

#[tokio::test]
async fn a_host_outside_the_allow_list_is_refused() {
    refused(
        "",
        Seed {
            invoice_url: Some("https://files.evil.example/invoice.pdf".into()),
            ..Seed::default()
        },
        "refused host `files.evil.example`",
    )
    .await;
}

#[tokio::test]
async fn plain_http_is_refused_except_on_loopback() {
    refused(
        "",
        Seed {
            invoice_url: Some("http://cdn.dintero.com/files/x.pdf".into()),
            ..Seed::default()
        },
        "refused plain http",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let seed = Seed {
        pdf_shape: Some("direct".into()),
        pdf_content: Some("oversize:50000".into()),
        ..Seed::default()
    };
    let h = Harness::start().await;
    let toml = h.toml("");
    let toml = toml.replacen(
        "timeout = \"2s\"",
        "timeout = \"2s\"\nmax_document_bytes = 20000",
        1,
    );
    let app = postbud::App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    let id = h.sandbox.seed(seed);
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let reason = outcome
        .dispatch
        .as_ref()
        .and_then(|d| d.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("over the limit") && reason.contains("20000"),
        "{reason}"
    );
    assert_eq!(h.sandbox.captures(&id), 0);
}

#[tokio::test]
async fn a_body_that_is_not_a_pdf_is_refused() {
    refused(
        "",
        Seed {
            pdf_shape: Some("direct".into()),
            pdf_content: Some("html".into()),
            ..Seed::default()
        },
        "not a PDF",
    )
    .await;
    refused(
        "",
        Seed {
            pdf_content: Some("truncated".into()),
            ..Seed::default()
        },
        "truncated",
    )
    .await;
}

#[tokio::test]
async fn invoice_metadata_that_appears_late_is_waited_for() {
    let h = Harness::start().await;
    let (id, outcome) = deliver(
        &h,
        "",
        Seed {
            metadata_after_gets: 3,
            ..Seed::default()
        },
    )
    .await;
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
}
