//! The PDF behind `kravia:invoice_url`: both shapes work; every refusal leaves the transaction
//! uncaptured.

mod common;

use common::{Harness, sha256};
use postbud::Verdict;
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
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
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

/// A document host on another loopback port: redirects, and a 401 that would tempt a client to
/// send its token.
struct Redirector {
    base: String,
    target: std::sync::Arc<std::sync::Mutex<String>>,
    authorizations: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

async fn redirector() -> Redirector {
    use axum::{extract::Path, http::HeaderMap, response::IntoResponse, routing::get};
    let target = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let authorizations = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let redirect = |to: String| (axum::http::StatusCode::FOUND, [("location", to)]).into_response();
    let app = axum::Router::new()
        .route(
            "/chain/{n}",
            get({
                let target = target.clone();
                move |Path(n): Path<u32>| async move {
                    if n == 0 {
                        redirect(target.lock().expect("lock").clone())
                    } else {
                        redirect(format!("/chain/{}", n - 1))
                    }
                }
            }),
        )
        .route(
            "/endless",
            get(|| async {
                // An error body that never ends.
                let chunk = axum::body::Bytes::from_static(b"error: disk on fire\n");
                let stream = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::io::Error>(chunk.clone())
                });
                (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::body::Body::from_stream(stream),
                )
            }),
        )
        .route(
            "/elsewhere",
            get(move || async move { redirect("http://127.0.0.1:9/invoice.pdf".to_owned()) }),
        )
        .route(
            "/auth",
            get({
                let authorizations = authorizations.clone();
                move |headers: HeaderMap| async move {
                    if let Some(v) = headers.get("authorization") {
                        authorizations
                            .lock()
                            .expect("lock")
                            .push(v.to_str().unwrap_or("").to_owned());
                    }
                    axum::http::StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Redirector {
        base,
        target,
        authorizations,
    }
}

#[tokio::test]
async fn redirects_are_followed_three_times_each_hop_checked_and_the_token_stays_home() {
    let h = Harness::start().await;
    let r = redirector().await;
    // Beside the sandbox's CDN, which the harness's table already allows. The request timeout
    // is long, so that reading to it and reading a prefix differ by far more than a loaded
    // machine's scheduling.
    let toml = h
        .toml("")
        .replacen(
            "document_hosts = [",
            &format!("document_hosts = [\"{}\", ", r.base),
            1,
        )
        .replacen("timeout = \"2s\"", "timeout = \"30s\"", 1);
    let app = postbud::App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    let seed = |path: &str| Seed {
        pdf_shape: Some("direct".into()),
        invoice_url: Some(format!("{}{path}", r.base)),
        ..Seed::default()
    };
    // Two hops on the allowed document host, a third to the sandbox: delivered.
    let id = h.sandbox.seed(seed("/chain/2"));
    *r.target.lock().expect("lock") = format!("{}/v1/invoices/{id}.pdf", h.sandbox.url());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    // Four redirects: refused, nothing captured.
    let id = h.sandbox.seed(seed("/chain/3"));
    *r.target.lock().expect("lock") = format!("{}/v1/invoices/{id}.pdf", h.sandbox.url());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let reason = outcome.dispatch.and_then(|d| d.reason).unwrap_or_default();
    assert!(reason.contains("more than 3 redirects"), "{reason}");
    assert_eq!(h.sandbox.captures(&id), 0);
    // A hop to another port of the same host: another origin, refused by name.
    let id = h.sandbox.seed(seed("/elsewhere"));
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let reason = outcome.dispatch.and_then(|d| d.reason).unwrap_or_default();
    assert!(
        reason.contains("redirect 1") && reason.contains("origin http://127.0.0.1:9"),
        "{reason}"
    );
    assert_eq!(h.sandbox.captures(&id), 0);
    // A 401 from a document host that shares the API's host name but not its port: the token
    // is not offered there.
    let id = h.sandbox.seed(seed("/auth"));
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    assert!(
        r.authorizations.lock().expect("lock").is_empty(),
        "the token left home"
    );
}

#[tokio::test]
async fn an_endless_error_body_from_a_document_host_is_read_only_in_part() {
    let h = Harness::start().await;
    let r = redirector().await;
    // Beside the sandbox's CDN, which the harness's table already allows. The request timeout
    // is long, so that reading to it and reading a prefix differ by far more than a loaded
    // machine's scheduling.
    let toml = h
        .toml("")
        .replacen(
            "document_hosts = [",
            &format!("document_hosts = [\"{}\", ", r.base),
            1,
        )
        .replacen("timeout = \"2s\"", "timeout = \"30s\"", 1);
    let app = postbud::App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    let id = h.sandbox.seed(Seed {
        pdf_shape: Some("direct".into()),
        invoice_url: Some(format!("{}/endless", r.base)),
        ..Seed::default()
    });
    let started = std::time::Instant::now();
    let app = std::sync::Arc::new(app);
    let submitted = app.submit(&id).await.expect("submit");
    assert!(submitted);
    let lease = app
        .store()
        .claim(&postbud::store::Claim {
            owner: "t",
            lease: std::time::Duration::from_secs(30),
            limit: 1,
            only: Some(&id),
        })
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    app.engine().process(lease).await.expect("attempt");
    let elapsed = started.elapsed();
    let job = app.jobs(&id).await.expect("jobs").remove(0);
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("HTTP 500") && error.contains("disk on fire"),
        "{error}"
    );
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "read until the 30 s timeout: {elapsed:?}"
    );
    assert_eq!(h.sandbox.captures(&id), 0);
}

#[tokio::test]
async fn invoice_numbers_that_sanitise_alike_never_share_a_file() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let long = "N".repeat(300);
    for number in [
        "Ø-100",
        "Å-100",
        "x\r\nSet-Cookie: a=b",
        "\u{202E}fdp.exe",
        long.as_str(),
    ] {
        let id = h.sandbox.seed(Seed {
            invoice_number: Some(number.into()),
            ..Seed::default()
        });
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(
            outcome.verdict(),
            Verdict::Delivered,
            "{number:?}: {outcome}"
        );
        let kept = app.invoice(&id).await.expect("read").expect("kept");
        assert!(
            kept.pdf
                .file_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
            "{:?}",
            kept.pdf.file_name
        );
    }
    let pdfs = std::fs::read_dir(h.invoices())
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "pdf")
        })
        .count();
    assert_eq!(
        pdfs, 5,
        "one file per invoice, an over-long number included"
    );
}
