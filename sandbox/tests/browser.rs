//! The browser harness against a page of its own: forms post, scripts run, cookies stay in their
//! session, screenshots are PNGs of the whole page.

use axum::{
    Form, Router,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};
use postbud_sandbox::browser::Browser;
use std::collections::HashMap;

async fn page() -> Html<&'static str> {
    Html(
        r#"<!doctype html><html><head><title>harness</title></head><body>
<h1>Hello</h1>
<form id="f" method="post" action="/echo">
  <input name="who"><input type="hidden" name="csrf" value="tok">
  <select name="pick"><option value="a">A</option><option value="b">B</option></select>
  <button type="submit">Send</button>
</form>
<div style="height:2000px">tall</div>
</body></html>"#,
    )
}

async fn echo(
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> impl IntoResponse {
    let mut keys: Vec<_> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
    keys.sort();
    let seen = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        [(
            header::SET_COOKIE,
            format!(
                "who={}; Path=/; HttpOnly",
                form.get("who").cloned().unwrap_or_default()
            ),
        )],
        Html(format!(
            "<p id=\"out\">{}</p><p id=\"cookie\">{seen}</p>",
            keys.join("&").replace('<', "&lt;")
        )),
    )
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/", get(page))
        .route("/echo", axum::routing::post(echo));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_form_is_filled_and_posted_and_scripts_can_remove_a_field() {
    let Some(browser) = Browser::start_or_skip("browser harness form").await else {
        return;
    };
    let base = serve().await;
    browser.goto(&base).await.expect("goto");
    assert_eq!(browser.text("h1").await.expect("h1"), "Hello");
    browser
        .fill("input[name=who]", "kari <&>")
        .await
        .expect("fill");
    browser
        .select("select[name=pick]", "b")
        .await
        .expect("select");
    browser
        .click_and_load("form#f button[type=submit]")
        .await
        .expect("submit");
    assert_eq!(browser.url().await.expect("url").path(), "/echo");
    assert_eq!(
        browser.text("#out").await.expect("out"),
        "csrf=tok&pick=b&who=kari <&>"
    );

    // A script in the page removes the hidden field: the post goes without it.
    browser.goto(&base).await.expect("goto");
    let removed = browser
        .script(
            "const i = document.querySelector('form#f input[name=csrf]'); i.remove(); return !document.querySelector('form#f input[name=csrf]');",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(removed, serde_json::Value::Bool(true));
    browser
        .click_and_load("form#f button[type=submit]")
        .await
        .expect("submit");
    assert_eq!(browser.text("#out").await.expect("out"), "pick=a&who=");
    // The cookie set by the first post came back with the second.
    assert_eq!(
        browser.text("#cookie").await.expect("cookie"),
        "who=kari <&>"
    );
    browser.close().await;
}

#[tokio::test]
async fn sessions_share_no_cookies_and_screenshots_are_whole_pages() {
    let (Some(one), Some(two)) = (
        Browser::start_or_skip("browser harness sessions").await,
        Browser::start_or_skip("browser harness sessions").await,
    ) else {
        return;
    };
    let base = serve().await;
    one.goto(&base).await.expect("goto");
    one.fill("input[name=who]", "one").await.expect("fill");
    one.click_and_load("form#f button").await.expect("submit");
    assert!(
        !one.exists("form#f").await.expect("exists"),
        "still on the form"
    );
    one.goto(&base).await.expect("goto");
    one.click_and_load("form#f button").await.expect("submit");
    assert_eq!(one.text("#cookie").await.expect("cookie"), "who=one");

    two.goto(&base).await.expect("goto");
    two.click_and_load("form#f button").await.expect("submit");
    assert_eq!(
        two.text("#cookie").await.expect("cookie"),
        "",
        "the second session saw the first's cookie"
    );

    two.goto(&base).await.expect("goto");
    let png = two.screenshot().await.expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24; the page is taller than the window.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(
        width,
        postbud_sandbox::browser::WINDOW.0,
        "{width}x{height}"
    );
    // The page is 2000 pixels of `div` and more: all of it is in the picture.
    assert!(height > 2000, "{width}x{height}");
    one.close().await;
    two.close().await;
}

#[tokio::test]
async fn a_browser_dropped_unclosed_takes_its_chromium_with_it() {
    let Some(browser) = Browser::start_or_skip("browser harness drop").await else {
        return;
    };
    let profile = browser.profile().to_owned();
    let running = || {
        let needle = format!("--user-data-dir={}", profile.display());
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == needle.as_bytes())
            })
            .count()
    };
    assert!(
        running() > 0,
        "no chromium with {} found",
        profile.display()
    );
    drop(browser); // as a panicking test would
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "chromium still runs with {}",
            profile.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!profile.exists(), "profile left behind");
}
