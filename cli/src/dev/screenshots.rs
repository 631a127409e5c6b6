//! `postbud demo --screenshots DIR`: the console's invoice list and one invoice's page, as a
//! logged-in operator sees them, saved as PNGs (the README's pictures).

use std::path::{Path, PathBuf};

use postbud_sandbox::browser::Browser;

use crate::commands::{Failure, exit};

fn failed(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure {
        message: format!("screenshots: {what}: {e}"),
        code: exit::FAILED,
    }
}

/// Logs in to the console at `public` as `user`, and saves `console-list.png` (the list) and
/// `console-invoice.png` (the page of `invoice`) into `out`: the paths written.
pub async fn take(
    public: &str,
    (user, password): (&str, &str),
    invoice: &str,
    out: &Path,
) -> Result<Vec<PathBuf>, Failure> {
    std::fs::create_dir_all(out).map_err(|e| failed(&out.display().to_string(), e))?;
    let browser = Browser::start()
        .await
        .map_err(|e| failed("no browser (apt-get install chromium chromium-driver)", e))?;
    let result = shoot(&browser, public, (user, password), invoice, out).await;
    browser.close().await;
    result
}

async fn shoot(
    browser: &Browser,
    public: &str,
    (user, password): (&str, &str),
    invoice: &str,
    out: &Path,
) -> Result<Vec<PathBuf>, Failure> {
    let step = |what: &'static str| move |e: postbud_sandbox::browser::CmdError| failed(what, e);
    browser
        .goto(&format!("{public}/console/login"))
        .await
        .map_err(step("the login page"))?;
    browser
        .fill("form#login input[name=user]", user)
        .await
        .map_err(step("the login form"))?;
    browser
        .fill("form#login input[name=password]", password)
        .await
        .map_err(step("the login form"))?;
    browser
        .click_and_load("form#login button[type=submit]")
        .await
        .map_err(step("logging in"))?;
    browser
        .find("nav #whoami")
        .await
        .map_err(step("logged in"))?;
    let mut saved = Vec::new();
    for (path, name) in [
        ("/console".to_owned(), "console-list.png"),
        (
            format!("/console/invoices/{invoice}"),
            "console-invoice.png",
        ),
    ] {
        browser
            .goto(&format!("{public}{path}"))
            .await
            .map_err(step("a console page"))?;
        let file = out.join(name);
        browser
            .screenshot_to(&file)
            .await
            .map_err(|e| failed(name, e))?;
        saved.push(file);
    }
    Ok(saved)
}
