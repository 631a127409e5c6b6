//! Dintero's precedence for `invoice_channel`: session/payment (with the payment profile the
//! session was made from), then payment options (the profile's, then the account's checkout
//! configuration), then the default `kravia`; `invoice_delivery_method: merchant|provider` is
//! an alias. Each level is kept where Dintero keeps it, never in the session.

mod common;

use common::Harness;
use postbud::Verdict;
use postbud_sandbox::{Fault, FaultKind, Operation, Seed};
use serde_json::json;

/// One configuration level set to a channel, as Dintero keeps it.
#[derive(Debug, Clone, Copy, Default)]
struct Levels {
    session: Option<&'static str>,
    profile: Option<&'static str>,
    profile_options: Option<&'static str>,
    account_options: Option<&'static str>,
    alias: bool,
}

#[tokio::test]
async fn precedence_matrix_with_each_level_where_dintero_keeps_it() {
    let h = Harness::start().await;
    let l = Levels::default();
    // (levels, delivered by the merchant?, the level named in the history or the reason)
    let matrix = [
        (
            Levels {
                session: Some("merchant"),
                ..l
            },
            true,
            "session configuration",
        ),
        (
            Levels {
                session: Some("merchant"),
                account_options: Some("kravia"),
                ..l
            },
            true,
            "session configuration",
        ),
        (
            Levels {
                session: Some("kravia"),
                profile: Some("merchant"),
                ..l
            },
            false,
            "session configuration",
        ),
        (
            Levels {
                profile: Some("merchant"),
                ..l
            },
            true,
            "payment profile configuration",
        ),
        (
            Levels {
                profile: Some("kravia"),
                account_options: Some("merchant"),
                ..l
            },
            false,
            "payment profile configuration",
        ),
        (
            Levels {
                profile_options: Some("merchant"),
                ..l
            },
            true,
            "payment profile payment options",
        ),
        (
            Levels {
                profile_options: Some("kravia"),
                account_options: Some("merchant"),
                ..l
            },
            false,
            "payment profile payment options",
        ),
        (
            Levels {
                account_options: Some("merchant"),
                ..l
            },
            true,
            "account checkout payment options",
        ),
        (
            Levels {
                account_options: Some("kravia"),
                ..l
            },
            false,
            "account checkout payment options",
        ),
        (l, false, "Dintero's default"),
        (
            Levels {
                session: Some("merchant"),
                alias: true,
                ..l
            },
            true,
            "session configuration",
        ),
        (
            Levels {
                profile: Some("merchant"),
                alias: true,
                ..l
            },
            true,
            "payment profile configuration",
        ),
        (
            Levels {
                account_options: Some("merchant"),
                alias: true,
                ..l
            },
            true,
            "account checkout payment options",
        ),
        (
            Levels {
                account_options: Some("kravia"),
                alias: true,
                ..l
            },
            false,
            "account checkout payment options",
        ),
    ];
    for (levels, delivered, source) in matrix {
        let key = if levels.alias {
            "invoice_delivery_method"
        } else {
            "invoice_channel"
        };
        let value = |c: &str| {
            if levels.alias && c == "kravia" {
                "provider".to_owned()
            } else {
                c.to_owned()
            }
        };
        let options = levels.account_options.map_or_else(Vec::new, |c| {
            vec![
                json!({"type": "kravia.invoice_b2c", "details": {key: value(c)}}),
                json!({"type": "kravia.invoice_b2b", "details": {key: "nonsense"}}),
            ]
        });
        h.sandbox
            .set_checkout_configuration(json!({"payment_options": options}));
        let id = h.sandbox.seed(Seed {
            session_channel: levels.session.map(str::to_owned),
            no_session_channel: levels.session.is_none(),
            profile_channel: levels.profile.map(str::to_owned),
            profile_options_channel: levels.profile_options.map(str::to_owned),
            use_delivery_method_key: levels.alias,
            ..Seed::default()
        });
        // A fresh App each time: the account configuration is cached per gateway.
        let app = h.app("").await;
        let outcome = app.deliver_now(&id).await.expect("deliver");
        let case = format!("{levels:?}");
        if delivered {
            assert_eq!(outcome.verdict(), Verdict::Delivered, "{case}: {outcome}");
            assert_eq!(h.sandbox.captures(&id), 1, "{case}");
            let history = app.history(&id).await.expect("history");
            assert!(
                history
                    .iter()
                    .any(|e| e.detail.contains(&format!("from {source}"))),
                "{case}: {history:?}"
            );
        } else {
            assert_eq!(outcome.verdict(), Verdict::Skipped, "{case}: {outcome}");
            let reason = outcome
                .dispatch
                .as_ref()
                .and_then(|d| d.reason.clone())
                .unwrap_or_default();
            assert!(reason.contains("resolves to `kravia`"), "{case}: {reason}");
            assert!(reason.contains(source), "{case}: {reason}");
            assert_eq!(h.sandbox.captures(&id), 0, "{case}");
        }
    }
}

#[tokio::test]
async fn the_account_configuration_is_read_once_per_cache_period() {
    let h = Harness::start().await;
    h.sandbox.set_checkout_configuration(
        json!({"payment_options": [{"type": "kravia.invoice_b2c", "details": {"invoice_channel": "merchant"}}]}),
    );
    let app = h.app("").await;
    for _ in 0..3 {
        let id = h.sandbox.seed(Seed {
            no_session_channel: true,
            ..Seed::default()
        });
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    }
    assert_eq!(h.sandbox.stats().requests.get("admin").copied(), Some(1));
}

#[tokio::test]
async fn a_configuration_that_cannot_be_read_is_never_a_skip() {
    let h = Harness::start().await;
    h.sandbox.set_checkout_configuration(
        json!({"payment_options": [{"type": "kravia.invoice_b2c", "details": {"invoice_channel": "merchant"}}]}),
    );
    let app = h.app("").await;
    // Passing trouble: retried, then delivered.
    h.sandbox.inject(Fault {
        operation: Operation::Admin,
        transaction: None,
        kind: FaultKind::Status {
            status: 503,
            retry_after: None,
        },
        times: 3,
        skip: 0,
    });
    let id = h.sandbox.seed(Seed {
        no_session_channel: true,
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    // No access: failed and visible, with what to do; never skipped, never captured.
    let app = h.app("").await;
    h.sandbox.inject(Fault {
        operation: Operation::Admin,
        transaction: None,
        kind: FaultKind::Status {
            status: 403,
            retry_after: None,
        },
        times: 1,
        skip: 0,
    });
    let id = h.sandbox.seed(Seed {
        no_session_channel: true,
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    let reason = outcome.dispatch.and_then(|d| d.reason).unwrap_or_default();
    assert!(
        reason.contains("HTTP 403") && reason.contains("cannot tell who sends"),
        "{reason}"
    );
    assert_eq!(h.sandbox.captures(&id), 0);
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
