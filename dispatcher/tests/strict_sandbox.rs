//! Postbud against a sandbox as strict and as lively as Dintero: answers lost after the capture
//! took effect, tokens that expire within the run, CDN links that expire and refuse a token.

mod common;

use std::time::Duration;

use common::{Harness, sha256};
use postbud::Verdict;
use postbud_sandbox::{Fault, FaultKind, Operation, SandboxConfig, Seed};

fn fault(id: &str, operation: Operation, kind: FaultKind) -> Fault {
    Fault {
        operation,
        transaction: Some(id.to_owned()),
        kind,
        times: 1,
        skip: 0,
    }
}

/// The capture happens, but Postbud is told it failed (a 503), or hears nothing at all (the
/// connection drops): the retry reads the capture's event and delivers once, never capturing
/// again (a second capture of the full amount would now be refused anyway, as Dintero does).
#[tokio::test]
async fn a_capture_that_landed_but_whose_answer_was_lost_is_delivered_once() {
    let h = Harness::start().await;
    let app = h.app("").await;
    for kind in [
        FaultKind::StatusAfterApplying { status: 503 },
        FaultKind::DropAfterApplying,
    ] {
        let id = h.sandbox.seed(Seed::default());
        h.sandbox
            .inject(fault(&id, Operation::Capture, kind.clone()));
        let outcome = app.deliver_now(&id).await.expect("deliver");
        let history = app.history(&id).await.expect("history");
        assert_eq!(
            outcome.verdict(),
            Verdict::Delivered,
            "{kind:?}: {outcome} {history:#?}"
        );
        assert_eq!(h.sandbox.captures(&id), 1, "{kind:?}");
        assert_eq!(
            h.sandbox.stats().requests.get("capture").copied(),
            Some(h.sandbox.stats().captures.values().copied().sum::<u32>()),
            "{kind:?}: one capture request per capture, none refused"
        );
        assert!(
            history.iter().any(|e| e.event == "retry"),
            "{kind:?}: the lost answer was retried: {history:#?}"
        );
    }
}

/// Tokens live one second: the run outlasts several, and every call still succeeds after at most
/// one refresh.
#[tokio::test]
async fn tokens_that_expire_during_the_run_are_refreshed() {
    let h = Harness::start_with(SandboxConfig {
        token_ttl: 1,
        ..SandboxConfig::default()
    })
    .await;
    let app = h.app("").await;
    let started = std::time::Instant::now();
    let mut delivered = 0;
    while started.elapsed() < Duration::from_millis(3_500) {
        let id = h.sandbox.seed(Seed::default());
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
        assert_eq!(h.sandbox.captures(&id), 1);
        delivered += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let stats = h.sandbox.stats();
    assert!(
        stats.tokens_issued >= 3,
        "{delivered} invoices over 3.5 s took {} tokens",
        stats.tokens_issued
    );
}

/// The descriptor's link lives 300 ms and the descriptor itself arrives 500 ms late, so Postbud
/// first holds a link that has already expired: it reads the descriptor again rather than
/// failing, and it never offers its token to the CDN.
#[tokio::test]
async fn an_expired_cdn_link_is_fetched_again_and_the_cdn_never_sees_the_token() {
    let h = Harness::start_with(SandboxConfig {
        cdn_link_ttl: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    h.sandbox.inject(fault(
        &id,
        Operation::File,
        FaultKind::SlowResponse { ms: 500 },
    ));
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let history = app.history(&id).await.expect("history");
    assert_eq!(
        outcome.verdict(),
        Verdict::Delivered,
        "{outcome} {history:#?}"
    );
    assert!(
        history
            .iter()
            .any(|e| e.event == "retry" && e.detail.contains("expired")),
        "{history:#?}"
    );
    let number = h.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("number")
        .to_owned();
    let written = std::fs::read(h.invoices().join(format!("{number}.pdf"))).expect("PDF");
    assert_eq!(sha256(&written), sha256(&h.sandbox.pdf(&id).expect("pdf")));
    let stats = h.sandbox.stats();
    assert_eq!(stats.cdn_with_authorization, 0, "the token went to the CDN");
}

/// The CDN refuses a link past its time even when Postbud's clock says otherwise (its check
/// passed, then the link expired on the way): the 403 is not the end of the invoice.
#[tokio::test]
async fn a_cdn_link_refused_as_expired_is_retried_not_given_up() {
    let h = Harness::start_with(SandboxConfig {
        cdn_link_ttl: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    // The CDN's answer to the first PDF request is the one it gives an expired link.
    h.sandbox.inject(fault(
        &id,
        Operation::Pdf,
        FaultKind::Status {
            status: 403,
            retry_after: None,
        },
    ));
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let history = app.history(&id).await.expect("history");
    assert_eq!(
        outcome.verdict(),
        Verdict::Delivered,
        "{outcome} {history:#?}"
    );
    assert!(
        history
            .iter()
            .any(|e| e.event == "retry" && e.detail.contains("a fresh one is read")),
        "{history:#?}"
    );
    assert_eq!(h.sandbox.captures(&id), 1);
}
