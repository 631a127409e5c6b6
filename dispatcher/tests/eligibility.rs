//! Dintero's precedence for `invoice_channel`: session/payment, then checkout payment options,
//! then the default `kravia`; `invoice_delivery_method: merchant|provider` is an alias.

mod common;

use common::Harness;
use postbud::engine::Verdict;
use postbud_sandbox::Seed;

#[tokio::test]
async fn precedence_matrix() {
    let h = Harness::start().await;
    let app = h.app("").await;
    // (session level, payment options level, use the invoice_delivery_method alias, delivered?)
    let matrix: [(Option<&str>, Option<&str>, bool, bool); 11] = [
        (Some("merchant"), None, false, true),
        (Some("merchant"), Some("kravia"), false, true),
        (Some("kravia"), Some("merchant"), false, false),
        (None, Some("merchant"), false, true),
        (None, Some("kravia"), false, false),
        (None, None, false, false),
        (Some("merchant"), None, true, true),
        (Some("kravia"), None, true, false),
        (None, Some("merchant"), true, true),
        (Some("kravia"), Some("merchant"), true, false),
        (None, None, true, false),
    ];
    for (session, options, alias, delivered) in matrix {
        let id = h.sandbox.seed(Seed {
            session_channel: session.map(str::to_owned),
            no_session_channel: session.is_none(),
            options_channel: options.map(str::to_owned),
            use_delivery_method_key: alias,
            ..Seed::default()
        });
        let outcome = app.deliver_now(&id).await.expect("deliver");
        let case = format!("session={session:?} options={options:?} alias={alias}");
        if delivered {
            assert_eq!(outcome.verdict(), Verdict::Delivered, "{case}: {outcome}");
            assert_eq!(h.sandbox.captures(&id), 1, "{case}");
        } else {
            assert_eq!(outcome.verdict(), Verdict::Skipped, "{case}: {outcome}");
            let reason = outcome
                .dispatch
                .as_ref()
                .and_then(|d| d.reason.clone())
                .unwrap_or_default();
            assert!(reason.contains("resolves to `kravia`"), "{case}: {reason}");
            assert_eq!(h.sandbox.captures(&id), 0, "{case}");
        }
    }
}

#[tokio::test]
async fn transactions_that_are_not_ours_are_skipped_with_the_reason() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let cases = [
        (
            Seed {
                payment_product: Some("vipps".into()),
                ..Seed::default()
            },
            "payment_product is `vipps`",
        ),
        (
            Seed {
                status: Some("CAPTURED".into()),
                ..Seed::default()
            },
            "status is CAPTURED, not AUTHORIZED",
        ),
        (
            Seed {
                product_type: Some("kravia.invoice_b2b_grouped".into()),
                ..Seed::default()
            },
            "grouped",
        ),
    ];
    for (seed, expected) in cases {
        let id = h.sandbox.seed(seed);
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Skipped, "{outcome}");
        let reason = outcome
            .dispatch
            .as_ref()
            .and_then(|d| d.reason.clone())
            .unwrap_or_default();
        assert!(
            reason.contains(expected),
            "expected `{expected}` in {reason}"
        );
        assert_eq!(h.sandbox.captures(&id), 0);
    }
}
