//! The operator console over HTTP: a real router on loopback, a client with a cookie jar, a
//! sandbox-backed app whose invoices need attention because their channel's directory is
//! missing (the cause an operator fixes before retrying).

mod common;

use std::{path::PathBuf, sync::Arc};

use common::Harness;
use postbud::{App, JobKind, JobState, Verdict};
use reqwest::{Client, StatusCode, redirect::Policy};

use common::console::{OPERATOR, VIEWER};

struct Console {
    h: Harness,
    app: Arc<App>,
    base: String,
    /// The channel's directory, missing until a test creates it.
    outbox: PathBuf,
    /// Two invoices that need attention.
    ids: Vec<String>,
    /// The operator's password hash as configured.
    operator_hash: String,
}

async fn start(attempts_per_minute: u32) -> Console {
    start_at(attempts_per_minute, "").await
}

/// [`start`] with `server.public_url` ending in `path` (`/postbud`, or empty).
async fn start_at(attempts_per_minute: u32, path: &str) -> Console {
    let seeded = common::console::seeded(
        &format!("login_attempts_per_minute = {attempts_per_minute}"),
        path,
    )
    .await;
    common::console::serve(&seeded.app, seeded.listener);
    Console {
        h: seeded.h,
        app: seeded.app,
        base: seeded.base,
        outbox: seeded.outbox,
        ids: seeded.ids,
        operator_hash: seeded.operator_hash,
    }
}

fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The value of the first hidden `csrf` field of a page.
fn csrf(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_owned()
}

/// An attribute's value as a browser reads it.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl Console {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, client: &Client, path: &str) -> (StatusCode, String) {
        let response = client.get(self.url(path)).send().await.expect("get");
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    async fn post(&self, client: &Client, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("post")
    }

    /// Logs in through the form: the login response.
    async fn login(&self, client: &Client, user: &str, password: &str) -> reqwest::Response {
        let (status, page) = self.get(client, "/console/login").await;
        assert_eq!(status, 200, "{page}");
        let token = csrf(&page);
        self.post(
            client,
            "/console/login",
            &[("user", user), ("password", password), ("csrf", &token)],
        )
        .await
    }

    async fn logged_in(&self, (user, password): (&str, &str)) -> Client {
        let client = client();
        let response = self.login(&client, user, password).await;
        assert_eq!(
            response.status(),
            303,
            "{}",
            response.text().await.unwrap_or_default()
        );
        client
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

#[tokio::test]
async fn an_unauthenticated_request_is_sent_to_the_login_page_and_a_post_refused() {
    let c = start(10).await;
    let client = client();
    let response = client
        .get(c.url("/console/invoices?verdict=needs-attention"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response),
        "/console/login?next=%2Fconsole%2Finvoices%3Fverdict%3Dneeds-attention"
    );
    for path in [
        "/console",
        "/console/audit",
        &format!("/console/invoices/{}", c.ids[0]),
    ] {
        let response = client.get(c.url(path)).send().await.expect("get");
        assert_eq!(response.status(), 303, "{path}");
        assert!(
            location(&response).starts_with("/console/login?next="),
            "{path}"
        );
    }
    let before = c.jobs(&c.ids[0]).await;
    let response = c
        .post(
            &client,
            &format!("/console/invoices/{}/retry", c.ids[0]),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(c.jobs(&c.ids[0]).await, before);
    // The login page itself: the form of the contract, and the headers.
    let response = client
        .get(c.url("/console/login"))
        .send()
        .await
        .expect("get");
    let headers = response.headers().clone();
    let page = response.text().await.expect("body");
    assert!(
        page.contains(r#"<form id="login" method="post" action="/console/login">"#),
        "{page}"
    );
    assert!(page.contains(r#"name="user""#) && page.contains(r#"name="password""#));
    assert!(!page.contains("<script"), "no script: {page}");
    assert_eq!(
        headers["content-security-policy"],
        postbud::server::CONSOLE_CONTENT_SECURITY_POLICY
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    // The stylesheet the CSP allows is served.
    let css = client
        .get(c.url("/console/assets/console.css"))
        .send()
        .await
        .expect("css");
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_attempts_are_throttled_before_the_password_is_checked() {
    let c = start(3).await;
    let client = client();
    for user in [OPERATOR.0, "nobody"] {
        let response = c.login(&client, user, "wrong").await;
        assert_eq!(response.status(), 200);
        assert!(
            response
                .headers()
                .get("set-cookie")
                .is_none_or(|v| !v.to_str().unwrap().starts_with("postbud_console="))
        );
        let page = response.text().await.expect("body");
        assert!(page.contains(r#"<p class="error">"#), "{page}");
    }
    // Without the login form's token: refused before anything else.
    let response = c
        .post(
            &client,
            "/console/login",
            &[("user", OPERATOR.0), ("password", OPERATOR.1)],
        )
        .await;
    assert_eq!(response.status(), 403);
    // The third attempt from this address is the last one this minute: even the right
    // password is then answered 429.
    assert_eq!(
        c.login(&client, OPERATOR.0, "wrong again").await.status(),
        200
    );
    let response = c.login(&client, OPERATOR.0, OPERATOR.1).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let page = response.text().await.expect("body");
    assert!(page.contains(r#"<p class="error">"#), "{page}");
    let (status, _) = c.get(&client, "/console/invoices").await;
    assert_eq!(status, 303, "not logged in");
}

#[tokio::test]
async fn an_operator_logs_in_sees_the_invoices_and_one_invoices_timeline_and_pdf() {
    let c = start(10).await;
    let client = client();
    let response = c.login(&client, OPERATOR.0, OPERATOR.1).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/console");
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("postbud_console="))
        .expect("a session cookie");
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(session.contains(flag), "{flag}: {session}");
    }
    assert!(!session.contains("Secure"), "served over http: {session}");

    let (status, list) = c.get(&client, "/console/invoices").await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list.contains(r#"<span id="whoami">kari (operator)</span>"#),
        "{list}"
    );
    assert!(list.contains(r#"<form id="logout""#));
    assert!(list.contains(r#"<table id="invoices">"#));
    for id in &c.ids {
        assert!(
            list.contains(&format!(r#"<tr data-transaction="{id}""#)),
            "{id}: {list}"
        );
    }
    assert!(list.contains(r#"data-verdict="needs-attention""#));
    assert!(
        list.contains(r#"data-verdict="needs-attention" href="/console/invoices?verdict=needs-attention">needs-attention <b>2</b>"#),
        "{list}"
    );
    for field in [
        r#"<form id="filters" method="get""#,
        r#"select name="verdict""#,
        r#"select name="channel""#,
        r#"select name="state""#,
        r#"name="from""#,
        r#"name="to""#,
        r#"type="checkbox" name="retried""#,
        r#"name="q""#,
        r#"data-action="retry-matching""#,
    ] {
        assert!(list.contains(field), "{field}");
    }
    // A filter narrows the list: none delivered, and a bad date is said, not a 500.
    let (_, delivered) = c.get(&client, "/console/invoices?verdict=delivered").await;
    assert!(!delivered.contains("data-transaction="), "{delivered}");
    let (status, bad) = c.get(&client, "/console/invoices?from=yesterday").await;
    assert_eq!(status, 200);
    assert!(bad.contains("is not a date"), "{bad}");

    let id = &c.ids[0];
    let (status, page) = c.get(&client, &format!("/console/invoices/{id}")).await;
    assert_eq!(status, 200, "{page}");
    let number = c
        .app
        .dispatch(id)
        .await
        .expect("store")
        .expect("dispatch")
        .invoice_number
        .expect("number");
    assert!(page.contains(&format!("<h1>{number}</h1>")), "{page}");
    assert!(page.contains(r#"<dl id="summary">"#));
    assert!(
        page.contains(r#"<section id="next">"#),
        "needs attention: {page}"
    );
    assert!(page.contains(r#"<section id="timeline">"#));
    for event in c.app.history(id).await.expect("history") {
        assert!(
            page.contains(&format!(
                r#"<li class="event" data-kind="{}">"#,
                event.event
            )),
            "{}: {page}",
            event.event
        );
    }
    let pdf = c.app.document(id).await.expect("store").expect("pdf");
    assert_eq!(pdf.sha256, common::sha256(&pdf.bytes));
    assert!(
        page.contains(&format!(r#"<code class="sha256">{}</code>"#, pdf.sha256)),
        "{page}"
    );
    for action in ["retry", "redeliver", "void"] {
        assert!(page.contains(&format!(r#"<form data-action="{action}" method="post" action="/console/invoices/{id}/{action}">"#)), "{action}");
    }
    // The signed link serves the very PDF.
    let at = page.find(r#"<a id="pdf" href=""#).expect("a#pdf") + 18;
    let link = unescape(page[at..].split('"').next().expect("href"));
    let served = reqwest::get(&link).await.expect("pdf");
    assert_eq!(served.status(), 200, "{link}");
    assert_eq!(
        common::sha256(&served.bytes().await.expect("bytes")),
        pdf.sha256
    );

    // Ids that are not Dintero's, or not in the store: 404, not an error.
    for path in [
        "/console/invoices/..%2F..%2Fetc",
        "/console/invoices/T12345678.unknown",
        "/console/invoices/%3Cscript%3E",
    ] {
        let (status, page) = c.get(&client, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!page.contains("<script>"), "{page}");
    }
}

#[tokio::test]
async fn a_viewer_reads_but_every_action_is_refused_and_changes_nothing() {
    let c = start(10).await;
    let viewer = c.logged_in(VIEWER).await;
    let id = &c.ids[0];
    let (status, page) = c.get(&viewer, &format!("/console/invoices/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("vera (viewer)"));
    assert!(
        !page.contains("data-action="),
        "no action forms for a viewer"
    );
    let token = csrf(&page);
    std::fs::create_dir_all(&c.outbox).expect("fix the cause");
    let before = c.jobs(id).await;
    let status_before = c.h.sandbox.transaction(id).expect("tx")["status"].clone();
    for (action, extra) in [
        ("retry", None),
        ("redeliver", Some(("channel", "outbox"))),
        ("void", None),
    ] {
        let mut form = vec![("csrf", token.as_str()), ("confirm", "yes")];
        form.extend(extra);
        let response = c
            .post(&viewer, &format!("/console/invoices/{id}/{action}"), &form)
            .await;
        assert_eq!(response.status(), 403, "{action}");
        assert!(
            response.text().await.expect("body").contains("forbidden"),
            "{action}"
        );
    }
    let response = c
        .post(
            &viewer,
            "/console/retry-matching",
            &[("csrf", &token), ("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(c.jobs(id).await, before, "nothing changed");
    assert_eq!(
        c.h.sandbox.transaction(id).expect("tx")["status"],
        status_before,
        "no void reached Dintero"
    );
    let (_, audit) = c.get(&viewer, "/console/audit").await;
    assert!(
        !audit.contains(r#"<tr class="audit">"#),
        "nothing done: {audit}"
    );
}

#[tokio::test]
async fn an_operator_retries_after_a_confirmation_with_a_valid_token_only_and_it_is_audited() {
    let c = start(10).await;
    let operator = c.logged_in(OPERATOR).await;
    let viewer = c.logged_in(VIEWER).await;
    let id = &c.ids[0];
    let path = format!("/console/invoices/{id}/retry");
    let before = c.jobs(id).await;
    assert!(
        before
            .iter()
            .any(|(k, s, _)| *k == JobKind::Deliver && *s == JobState::Failed),
        "{before:?}"
    );

    // Without a token, with another session's token, with a tampered one: 403, nothing done.
    let (_, viewer_page) = c.get(&viewer, "/console").await;
    let (_, page) = c.get(&operator, &format!("/console/invoices/{id}")).await;
    let token = csrf(&page);
    let viewer_token = csrf(&viewer_page);
    // The last hex digit changed (to another one whatever it was).
    let last = if token.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &token[..token.len() - 1]);
    for form in [
        vec![("confirm", "yes")],
        vec![("csrf", ""), ("confirm", "yes")],
        vec![("csrf", viewer_token.as_str()), ("confirm", "yes")],
        vec![("csrf", tampered.as_str()), ("confirm", "yes")],
    ] {
        let response = c.post(&operator, &path, &form).await;
        assert_eq!(response.status(), 403, "{form:?}");
    }
    assert_eq!(c.jobs(id).await, before);

    // The first POST only asks.
    let response = c.post(&operator, &path, &[("csrf", &token)]).await;
    assert_eq!(response.status(), 200);
    let confirm = response.text().await.expect("body");
    assert!(
        confirm.contains(r#"<form id="confirm" method="post""#),
        "{confirm}"
    );
    assert!(confirm.contains(r#"name="confirm" value="yes""#));
    assert_eq!(c.jobs(id).await, before, "asking changes nothing");

    // The cause fixed, the confirmed retry requeues the delivery.
    std::fs::create_dir_all(&c.outbox).expect("fix the cause");
    let response = c
        .post(
            &operator,
            &path,
            &[("csrf", &csrf(&confirm)), ("confirm", "yes")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let back = location(&response);
    assert!(
        back.starts_with(&format!("/console/invoices/{id}?notice=")),
        "{back}"
    );
    let after = c.jobs(id).await;
    assert!(
        after
            .iter()
            .any(|(k, s, _)| *k == JobKind::Deliver && *s == JobState::Queued),
        "{after:?}"
    );
    let (_, page) = c.get(&operator, &back).await;
    assert!(
        page.contains(r#"<p class="notice">retry now: 1 job(s) requeued</p>"#),
        "{page}"
    );
    // A notice not signed by the console is not shown.
    let (_, forged) = c
        .get(
            &operator,
            &format!("/console/invoices/{id}?notice=call+us&ns=00"),
        )
        .await;
    assert!(!forged.contains("call us"), "{forged}");

    let (_, audit) = c.get(&viewer, "/console/audit").await;
    assert!(audit.contains(r#"<table id="audit">"#));
    assert!(
        audit.contains(r#"<tr class="audit"><td>kari</td>"#),
        "{audit}"
    );
    assert!(
        audit.contains(&format!(
            "<td>retry</td><td>{id}</td><td>1 job(s) requeued</td>"
        )),
        "{audit}"
    );

    // And the workers deliver it.
    let outcome = c.app.deliver_now(id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
}

#[tokio::test]
async fn a_bulk_retry_shows_the_count_first_and_a_session_ends_with_logout_or_tampering() {
    let c = start(10).await;
    let operator = c.logged_in(OPERATOR).await;
    let (_, list) = c
        .get(&operator, "/console/invoices?verdict=needs-attention")
        .await;
    let token = csrf(&list);
    let response = c
        .post(
            &operator,
            "/console/retry-matching",
            &[("csrf", &token), ("verdict", "needs-attention")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let confirm = response.text().await.expect("body");
    assert!(
        confirm.contains(r#"<span id="count">2</span>"#),
        "{confirm}"
    );
    assert!(
        confirm.contains(r#"name="verdict" value="needs-attention""#),
        "{confirm}"
    );
    let response = c
        .post(
            &operator,
            "/console/retry-matching",
            &[
                ("csrf", &token),
                ("verdict", "needs-attention"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    for id in &c.ids {
        assert!(
            c.jobs(id)
                .await
                .iter()
                .any(|(_, s, _)| *s == JobState::Queued),
            "{id}"
        );
    }

    // A session cookie altered by hand is no session.
    let forged = Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    let response = forged
        .get(c.url("/console"))
        .header(
            "cookie",
            "postbud_console=a3Fyaq.operator.99999999999.00.00",
        )
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 303);

    // Logging out needs the token too, and ends the session in this browser.
    let response = c.post(&operator, "/console/logout", &[]).await;
    assert_eq!(response.status(), 403);
    let response = c
        .post(&operator, "/console/logout", &[("csrf", &token)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/console/login");
    let (status, _) = c.get(&operator, "/console").await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn the_console_is_not_served_unless_enabled() {
    let h = Harness::start().await;
    let app = Arc::new(h.app("").await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = postbud::server::router(app);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let response = client()
        .get(format!("http://{addr}/console/login"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn under_a_public_path_links_forms_and_cookies_carry_it() {
    let c = start_at(10, "/postbud").await;
    let client = client();
    let response = client
        .get(c.url("/postbud/console"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response),
        "/postbud/console/login?next=%2Fpostbud%2Fconsole"
    );
    let (status, page) = c
        .get(&client, "/postbud/console/login?next=%2Fpostbud%2Fconsole")
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"action="/postbud/console/login""#),
        "{page}"
    );
    assert!(
        page.contains(r#"name="next" value="&#x2f;postbud&#x2f;console""#),
        "{page}"
    );
    let token = csrf(&page);
    let response = c
        .post(
            &client,
            "/postbud/console/login",
            &[
                ("user", OPERATOR.0),
                ("password", OPERATOR.1),
                ("csrf", &token),
                ("next", "/postbud/console"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/postbud/console");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.contains("Path=/postbud/console"), "{cookie}");
    let (status, list) = c.get(&client, "/postbud/console").await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list.contains(&format!(r#"href="/postbud/console/invoices/{}""#, c.ids[0])),
        "{list}"
    );
    // A `next` elsewhere is not followed.
    let client = self::client();
    let (_, page) = c.get(&client, "/postbud/console/login").await;
    let response = c
        .post(
            &client,
            "/postbud/console/login",
            &[
                ("user", OPERATOR.0),
                ("password", OPERATOR.1),
                ("csrf", &csrf(&page)),
                ("next", "//evil.example/postbud/console"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/postbud/console");
}

/// Another instance of the deployment, on the same store (so the same signing key), with the
/// operator's password hash `hash`: `http://127.0.0.1:<port>`.
async fn instance_with_operator_hash(c: &Console, hash: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Arc::new(
        c.h.app(&format!(
            r#"
[server]
public_url = "http://{addr}"

[console]
enabled = true

[[console.users]]
name = "{}"
password_hash = "{hash}"
role = "operator"
"#,
            OPERATOR.0,
        ))
        .await,
    );
    common::console::serve(&app, listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn a_new_password_hash_ends_the_users_sessions_and_the_new_password_logs_in() {
    let c = start(10).await;
    let operator = c.logged_in(OPERATOR).await;
    let (status, _) = c.get(&operator, "/console").await;
    assert_eq!(status, 200, "the session holds");
    let session = |base: &str| {
        let url = format!("{base}/console");
        let operator = operator.clone();
        async move { operator.get(url).send().await.expect("get") }
    };

    // Another instance with the same hash takes the session: the browser sends its cookie there
    // (cookies are per host, not per port) and the instances share the signing key.
    let same = instance_with_operator_hash(&c, &c.operator_hash).await;
    assert_eq!(session(&same).await.status(), 200);

    // The deployment restarted with the operator's new password (any new hash: the same password
    // hashed again has a new salt): the session has ended.
    let new_password = "kari's new passphrase";
    let changed =
        instance_with_operator_hash(&c, &postbud::password::hash(new_password).expect("hash"))
            .await;
    let response = session(&changed).await;
    assert_eq!(response.status(), 303, "the old password's session ended");
    assert!(location(&response).starts_with("/console/login"));

    // There, the old password no longer logs in; the new one does.
    let fresh = client();
    let login = |password: &'static str| {
        let fresh = fresh.clone();
        let changed = changed.clone();
        async move {
            let page = fresh
                .get(format!("{changed}/console/login"))
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("body");
            fresh
                .post(format!("{changed}/console/login"))
                .form(&[
                    ("user", OPERATOR.0),
                    ("password", password),
                    ("csrf", &csrf(&page)),
                ])
                .send()
                .await
                .expect("post")
                .status()
        }
    };
    assert_eq!(
        login(OPERATOR.1).await,
        200,
        "refused: the login page again"
    );
    assert_eq!(login(new_password).await, 303, "logged in");
    let status = fresh
        .get(format!("{changed}/console"))
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(status, 200);
}
