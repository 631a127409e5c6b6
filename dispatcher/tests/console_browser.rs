//! The operator console in a real browser (headless chromium over WebDriver): what an operator
//! and a viewer see and can do, through the pages' own links and forms, against the HTML contract
//! of issue 32. The app is sandbox-backed; its invoices need attention because their channel's
//! directory is missing (the tests run as root, for whom a read-only directory is writable: a
//! missing one with `create = false` is the cause an operator can really fix).

mod common;

use std::{path::PathBuf, sync::Arc, time::Duration};

use common::Harness;
use postbud::{App, Correlation, Evidence, EvidenceState, JobKind, JobState, Verdict};
use postbud_sandbox::{Seed, browser::Browser};
use serde_json::json;

use common::console::{OPERATOR, VIEWER};

struct Console {
    h: Harness,
    app: Arc<App>,
    base: String,
    /// The channel's directory, missing until a test creates it.
    outbox: PathBuf,
    /// Two invoices that need attention.
    ids: Vec<String>,
    /// Held: the workers stop when it is dropped.
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start() -> Console {
    let seeded = common::console::seeded("", "").await;
    // The workers run as under `postbud serve`: a retry the console queues is delivered by them.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = Arc::clone(&seeded.app);
    tokio::spawn(async move { workers.run_workers(stopped).await });
    common::console::serve(&seeded.app, seeded.listener);
    Console {
        h: seeded.h,
        app: seeded.app,
        base: seeded.base,
        outbox: seeded.outbox,
        ids: seeded.ids,
        _stop: stop,
    }
}

impl Console {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in through the login form, as a person would.
    async fn log_in(&self, browser: &Browser, (user, password): (&str, &str)) {
        browser
            .goto(&self.url("/console/login"))
            .await
            .expect("goto");
        browser
            .fill("form#login input[name=user]", user)
            .await
            .expect("user");
        browser
            .fill("form#login input[name=password]", password)
            .await
            .expect("password");
        browser
            .click_and_load("form#login button[type=submit]")
            .await
            .expect("log in");
        let role = if user == OPERATOR.0 {
            "operator"
        } else {
            "viewer"
        };
        assert_eq!(
            browser.text("nav #whoami").await.expect("whoami"),
            format!("{user} ({role})"),
            "{}",
            browser.source().await.unwrap_or_default()
        );
    }

    /// The jobs of `id` as (kind, state, attempts): what a refused action must leave alone.
    async fn jobs(&self, id: &str) -> Vec<(JobKind, JobState, u32)> {
        self.app
            .jobs(id)
            .await
            .expect("jobs")
            .into_iter()
            .map(|j| (j.kind, j.state, j.attempts))
            .collect()
    }
}

/// The transaction ids of the listed rows, in the order shown.
async fn listed(browser: &Browser) -> Vec<String> {
    let mut ids = Vec::new();
    for row in browser
        .find_all("table#invoices tr[data-transaction]")
        .await
        .expect("rows")
    {
        ids.push(
            row.attr("data-transaction")
                .await
                .expect("attr")
                .unwrap_or_default(),
        );
    }
    ids
}

/// Submits a form the page does not offer (a viewer's page has no action forms): built by a
/// script from `fields`, posted by the browser with the session's cookie, as a hand-made request
/// from a logged-in browser would be.
async fn post_from_page(browser: &Browser, action: &str, fields: serde_json::Value) {
    browser
        .script(
            r#"const [action, fields] = arguments;
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            form.id = 'handmade';
            for (const [name, value] of Object.entries(fields)) {
              const input = document.createElement('input');
              input.type = 'hidden'; input.name = name; input.value = value;
              form.appendChild(input);
            }
            const button = document.createElement('button');
            button.type = 'submit';
            form.appendChild(button);
            document.body.appendChild(form);
            return null;"#,
            vec![json!(action), fields],
        )
        .await
        .expect("build the form");
    browser
        .click_and_load("form#handmade button")
        .await
        .expect("post");
}

/// The rows of the audit page, as text.
async fn audit_rows(browser: &Browser, c: &Console) -> Vec<String> {
    browser.goto(&c.url("/console/audit")).await.expect("audit");
    assert!(browser.exists("table#audit").await.expect("audit table"));
    let mut rows = Vec::new();
    for row in browser
        .find_all("table#audit tr.audit")
        .await
        .expect("rows")
    {
        rows.push(row.text().await.expect("text"));
    }
    rows
}

/// The page says the request was refused, for the reason `why` (words of the refusal), and is
/// not a page of the console's.
async fn assert_forbidden(browser: &Browser, what: &str, why: &str) {
    let body = browser.text("body").await.expect("body");
    assert!(
        body.to_lowercase().contains("forbidden"),
        "{what}: not refused: {body}"
    );
    assert!(
        body.contains(why),
        "{what}: refused, but not for {why:?}: {body}"
    );
    assert!(
        !browser.exists("form#confirm").await.expect("exists"),
        "{what}: a confirmation page"
    );
}

#[tokio::test]
async fn an_unauthenticated_visit_lands_on_the_login_page_and_a_wrong_password_stays_there() {
    let Some(browser) = Browser::start_or_skip("console unauthenticated").await else {
        return;
    };
    let c = start().await;
    let id = &c.ids[0];
    for path in [
        "/console".to_owned(),
        "/console/audit".to_owned(),
        format!("/console/invoices/{id}"),
    ] {
        browser.goto(&c.url(&path)).await.expect("goto");
        let url = browser.url().await.expect("url");
        assert_eq!(url.path(), "/console/login", "{path} -> {url}");
        assert!(browser.exists("form#login").await.expect("form"), "{path}");
        assert!(!browser.exists("nav #whoami").await.expect("nav"), "{path}");
        // (The address to return to is in a hidden field; nothing of the invoice is shown.)
        let shown = browser.text("body").await.expect("body");
        assert!(
            !shown.contains(id.as_str()),
            "{path}: the login page shows {id}"
        );
    }

    browser
        .fill("form#login input[name=user]", OPERATOR.0)
        .await
        .expect("user");
    browser
        .fill("form#login input[name=password]", "not kari's passphrase")
        .await
        .expect("password");
    browser
        .click_and_load("form#login button[type=submit]")
        .await
        .expect("log in");
    assert!(browser.exists("p.error").await.expect("error"));
    assert!(browser.exists("form#login").await.expect("form"));
    assert!(!browser.exists("nav #whoami").await.expect("nav"));
    browser.close().await;
}

#[tokio::test]
async fn an_operator_filters_opens_an_invoice_retries_it_once_fixed_and_sees_it_delivered() {
    let Some(browser) = Browser::start_or_skip("console operator").await else {
        return;
    };
    let c = start().await;
    // A third invoice, delivered to the archive before the route changed: not in the filter.
    let delivered = {
        let id = c.h.sandbox.seed(Seed::default());
        let archive = App::open(&c.h.settings("")).await.expect("archive app");
        let outcome = archive.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
        id
    };
    c.log_in(&browser, OPERATOR).await;
    assert_ne!(browser.url().await.expect("url").path(), "/console/login");
    browser.goto(&c.url("/console")).await.expect("list");
    let mut all = listed(&browser).await;
    all.sort();
    let mut expected = vec![c.ids[0].clone(), c.ids[1].clone(), delivered.clone()];
    expected.sort();
    assert_eq!(all, expected);

    // Needs attention, by its count link.
    browser
        .click_and_load(r#"a.verdict[data-verdict="needs-attention"]"#)
        .await
        .expect("needs-attention");
    let mut attention = listed(&browser).await;
    attention.sort();
    let mut ids = c.ids.clone();
    ids.sort();
    assert_eq!(attention, ids);
    for row in browser
        .find_all("table#invoices tr[data-transaction]")
        .await
        .expect("rows")
    {
        assert_eq!(
            row.attr("data-verdict").await.expect("attr").as_deref(),
            Some("needs-attention")
        );
    }
    // And by the filter form: the same rows, the verdict kept selected.
    browser.goto(&c.url("/console")).await.expect("list");
    browser
        .select("form#filters select[name=verdict]", "needs-attention")
        .await
        .expect("select");
    browser
        .click_and_load("form#filters button[type=submit]")
        .await
        .expect("filter");
    let mut filtered = listed(&browser).await;
    filtered.sort();
    assert_eq!(filtered, ids);
    // Open the first invoice needing attention through its row's link.
    let id = &c.ids[0];
    browser
        .goto(&c.url("/console/invoices?verdict=needs-attention"))
        .await
        .expect("list");
    browser
        .click_and_load(&format!(r#"tr[data-transaction="{id}"] td:first-child a"#))
        .await
        .expect("open");
    assert_eq!(
        browser.url().await.expect("url").path(),
        format!("/console/invoices/{id}")
    );
    let number = c.h.sandbox.transaction(id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("number")
        .to_owned();
    assert_eq!(browser.text("h1").await.expect("h1"), number);
    let summary = browser.text("dl#summary").await.expect("summary");
    assert!(summary.contains("needs-attention"), "{summary}");
    let next = browser.text("section#next").await.expect("what to do next");
    assert!(!next.trim().is_empty());
    assert!(
        browser
            .exists(r#"section#timeline li.event"#)
            .await
            .expect("timeline")
    );
    let sha = browser.text("section#document").await.expect("document");
    let pdf_sha = common::sha256(&c.h.sandbox.pdf(id).expect("pdf"));
    assert!(sha.contains(&pdf_sha), "{sha} lacks {pdf_sha}");
    assert!(
        browser
            .exists("section#document a#pdf")
            .await
            .expect("pdf link")
    );

    // The cause fixed, retry now: a confirmation first, then the retry. The delivery failed for
    // good: without the console's retry nothing would deliver it.
    let before = c.jobs(id).await;
    assert!(
        before
            .iter()
            .any(|(k, s, _)| *k == JobKind::Deliver && *s == JobState::Failed)
            && !before.iter().any(|(_, s, _)| *s == JobState::Queued),
        "{before:?}"
    );
    std::fs::create_dir_all(&c.outbox).expect("fix the cause");
    browser
        .click_and_load(r#"form[data-action="retry"] button[type=submit]"#)
        .await
        .expect("retry");
    assert!(browser.exists("form#confirm").await.expect("confirm"));
    assert_eq!(c.jobs(id).await, before, "asking changed the jobs");
    browser
        .click_and_load("form#confirm button[type=submit]")
        .await
        .expect("confirm");
    assert_eq!(
        browser.url().await.expect("url").path(),
        format!("/console/invoices/{id}")
    );
    let notice = browser.text("p.notice").await.expect("notice");
    assert!(notice.contains("requeued"), "{notice}");

    // The workers deliver it: the page says so, with the channel's reference.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        browser.client().refresh().await.expect("reload");
        let verdict = browser
            .find("dl#summary dd[data-verdict]")
            .await
            .expect("verdict")
            .attr("data-verdict")
            .await
            .expect("attr");
        if verdict.as_deref() == Some("delivered") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {verdict:?}: {:?}",
            c.jobs(id).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!browser.exists("section#next").await.expect("next"));
    let job = c
        .app
        .jobs(id)
        .await
        .expect("jobs")
        .into_iter()
        .find(|j| j.kind == JobKind::Deliver && j.state == JobState::Done)
        .expect("a delivered job");
    let reference = job
        .reference
        .clone()
        .or(job.receipt.clone())
        .expect("the folder's receipt");
    let shown = browser
        .text(&format!(r#"tr[data-job="{}"] .reference"#, job.id))
        .await
        .expect("reference cell");
    assert_eq!(shown, reference);
    assert!(
        browser
            .text("section#timeline")
            .await
            .expect("timeline")
            .contains(&reference),
        "the timeline lacks {reference}"
    );

    // Evidence the channel's reader reports shows in the timeline, with its event id.
    let evidence = Evidence::new(
        Correlation::Delivery(job.id.clone()),
        EvidenceState::Delivered,
        "the outbox's reader",
        "pickup-4711",
    )
    .with_reason("taken by the accounting import");
    c.app
        .record_evidence("outbox", None, &evidence)
        .await
        .expect("evidence");
    browser.client().refresh().await.expect("reload");
    let shown = browser
        .text(r#"section#timeline li.event[data-kind="evidence"]"#)
        .await
        .expect("evidence in the timeline");
    assert!(shown.contains("taken by the accounting import"), "{shown}");
    assert!(shown.contains("pickup-4711"), "{shown}");

    // The audit log shows who did it.
    browser.goto(&c.url("/console/audit")).await.expect("audit");
    let rows = browser.text("table#audit").await.expect("audit");
    assert!(rows.contains("kari"), "{rows}");
    assert!(rows.contains(id.as_str()), "{rows}");
    assert!(rows.contains("retry"), "{rows}");
    browser.close().await;
}

#[tokio::test]
async fn a_viewer_reads_but_every_action_is_refused_and_nothing_changes() {
    let Some(browser) = Browser::start_or_skip("console viewer").await else {
        return;
    };
    let c = start().await;
    std::fs::create_dir_all(&c.outbox).expect("the cause fixed: a retry would deliver");
    c.log_in(&browser, VIEWER).await;
    let id = &c.ids[0];
    browser
        .goto(&c.url(&format!("/console/invoices/{id}")))
        .await
        .expect("invoice");
    assert!(browser.exists("dl#summary").await.expect("summary"));
    // No action is offered, or only disabled.
    for form in browser.find_all("form[data-action]").await.expect("forms") {
        let button = form
            .find(postbud_sandbox::browser::Locator::Css("button"))
            .await
            .expect("button");
        assert!(
            button.attr("disabled").await.expect("attr").is_some(),
            "a viewer is offered an enabled action"
        );
    }
    let before: Vec<_> = {
        let mut v = Vec::new();
        for id in &c.ids {
            v.push(c.jobs(id).await);
        }
        v
    };
    let audit_before = audit_rows(&browser, &c).await;
    browser
        .goto(&c.url(&format!("/console/invoices/{id}")))
        .await
        .expect("invoice");

    // Each action, confirmed, with the viewer's own valid token: refused.
    let token = browser
        .find("form#logout input[name=csrf]")
        .await
        .expect("token")
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    assert!(!token.is_empty());
    for (action, extra) in [
        ("retry", json!({})),
        ("redeliver", json!({"channel": "outbox"})),
        ("void", json!({})),
    ] {
        browser
            .goto(&c.url(&format!("/console/invoices/{id}")))
            .await
            .expect("invoice");
        let mut fields = json!({"csrf": token, "confirm": "yes"});
        fields
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        post_from_page(
            &browser,
            &c.url(&format!("/console/invoices/{id}/{action}")),
            fields,
        )
        .await;
        assert_forbidden(&browser, action, "only an operator").await;
    }
    browser.goto(&c.url("/console")).await.expect("list");
    post_from_page(
        &browser,
        &c.url("/console/retry-matching"),
        json!({"csrf": token, "confirm": "yes", "verdict": "needs-attention"}),
    )
    .await;
    assert_forbidden(&browser, "retry-matching", "only an operator").await;

    // Nothing changed: not the jobs, not Dintero, not the audit log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, before) in c.ids.iter().zip(&before) {
        assert_eq!(&c.jobs(id).await, before, "{id}");
        let tx = c.h.sandbox.transaction(id).expect("tx");
        assert_ne!(
            tx["status"], "AUTHORIZATION_VOIDED",
            "{id} voided by a viewer"
        );
    }
    assert_eq!(audit_rows(&browser, &c).await, audit_before);
    browser.close().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_changes_nothing() {
    let Some(browser) = Browser::start_or_skip("console csrf").await else {
        return;
    };
    let c = start().await;
    std::fs::create_dir_all(&c.outbox).expect("the cause fixed: a retry would deliver");
    c.log_in(&browser, OPERATOR).await;
    let id = &c.ids[0];
    let before = c.jobs(id).await;
    let page = c.url(&format!("/console/invoices/{id}"));

    // The token removed from the action's form.
    browser.goto(&page).await.expect("invoice");
    let removed = browser
        .script(
            r#"const form = document.querySelector('form[data-action="retry"]');
            form.querySelector('input[name=csrf]').remove();
            return form.querySelector('input[name=csrf]') === null;"#,
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(removed, json!(true));
    browser
        .click_and_load(r#"form[data-action="retry"] button[type=submit]"#)
        .await
        .expect("post");
    assert_forbidden(&browser, "retry without a token", "CSRF token").await;

    // The token removed from the confirmation's form.
    browser.goto(&page).await.expect("invoice");
    browser
        .click_and_load(r#"form[data-action="retry"] button[type=submit]"#)
        .await
        .expect("retry");
    assert!(browser.exists("form#confirm").await.expect("confirm"));
    browser
        .script(
            "document.querySelector('form#confirm input[name=csrf]').remove(); return null;",
            vec![],
        )
        .await
        .expect("script");
    browser
        .click_and_load("form#confirm button[type=submit]")
        .await
        .expect("confirm");
    assert_forbidden(&browser, "confirmation without a token", "CSRF token").await;

    // A token altered by one character.
    browser.goto(&page).await.expect("invoice");
    browser
        .script(
            r#"const input = document.querySelector('form[data-action="retry"] input[name=csrf]');
            const last = input.value.slice(-1);
            input.value = input.value.slice(0, -1) + (last === '0' ? '1' : '0');
            return null;"#,
            vec![],
        )
        .await
        .expect("script");
    browser
        .click_and_load(r#"form[data-action="retry"] button[type=submit]"#)
        .await
        .expect("post");
    assert_forbidden(&browser, "retry with a wrong token", "CSRF token").await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.jobs(id).await, before);
    assert_eq!(audit_rows(&browser, &c).await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test]
async fn a_search_by_transaction_id_lists_that_invoice_only() {
    let Some(browser) = Browser::start_or_skip("console search").await else {
        return;
    };
    let c = start().await;
    c.log_in(&browser, VIEWER).await;
    for id in &c.ids {
        browser.goto(&c.url("/console")).await.expect("list");
        browser
            .fill("form#filters input[name=q]", id)
            .await
            .expect("q");
        browser
            .click_and_load("form#filters button[type=submit]")
            .await
            .expect("search");
        assert_eq!(listed(&browser).await, vec![id.clone()]);
    }
    browser.close().await;
}
