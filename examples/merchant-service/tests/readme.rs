//! The README's library example as a newcomer takes it: a new crate outside the workspace, made
//! of the `Cargo.toml`, `src/main.rs` and `postbud.toml` blocks "Using the library" shows, beside
//! a clone of this repository (here a link to it). It builds offline, starts with the one call,
//! refuses an unsigned callback, and delivers the invoice Dintero's signed callback announces
//! through its own channel, captured once; Ctrl-C drains it and it exits cleanly.
#![cfg(unix)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use postbud_sandbox::{Sandbox, SandboxConfig, Seed};
use tokio::{io::AsyncReadExt, process::Command};

const README: &str = include_str!("../../../README.md");

/// The fenced block of the README's "Using the library" section whose info string is `info`
/// (```` ```toml Cargo.toml ````): the file of that name.
fn block(info: &str) -> String {
    let section = README
        .split("\n## ")
        .find(|s| s.starts_with("Using the library"))
        .expect("README has a section \"Using the library\"");
    let fence = format!("\n```{info}\n");
    let start = section
        .find(&fence)
        .unwrap_or_else(|| panic!("\"Using the library\" shows a block ```{info}"))
        + fence.len();
    let length = section[start..].find("```").expect("the block ends");
    section[start..start + length].to_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("dir");
    std::fs::write(path, text).expect("write");
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// Builds the crate at `dir` offline, with a target directory kept between runs and shared with
/// the README's channel crate (their common dependencies compile once): the first build compiles
/// Postbud and its dependencies (minutes), later ones take seconds.
async fn build(dir: &Path) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("outside-workspace/target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .await
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "the README's crate does not build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target.join("debug/shop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_library_example_builds_outside_the_workspace_and_delivers_a_signed_callbacks_invoice()
 {
    let secret = "readme-callback-secret";
    let sandbox = Sandbox::start(SandboxConfig {
        callback_secret: Some(secret.into()),
        ..Default::default()
    })
    .await
    .expect("sandbox");
    // Outside the workspace, and the same place every run for this clone: the dependencies'
    // paths stay the same, so the build after the first reuses them.
    let root = std::env::temp_dir().join(format!(
        "postbud-readme{}",
        repository().display().to_string().replace('/', "-")
    ));
    let shop = root.join("shop");
    let _ = std::fs::remove_dir_all(&shop);
    // `postbud = { path = "../postbud/dispatcher" }`: the clone beside the crate.
    let clone = root.join("postbud");
    if !clone.exists() {
        std::fs::create_dir_all(&root).expect("dir");
        std::os::unix::fs::symlink(repository(), &clone).expect("link");
    }
    write(&shop.join("Cargo.toml"), &block("toml Cargo.toml"));
    write(&shop.join("src/main.rs"), &block("rust src/main.rs"));
    // Not an instruction of the README, only speed: the versions this workspace resolved, so
    // the offline build needs nothing new.
    std::fs::copy(repository().join("Cargo.lock"), shop.join("Cargo.lock")).expect("lock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let toml = format!(
        "{dintero}callback_secret = \"{secret}\"\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [store]\nurl = \"sqlite://{dir}/shop.db\"\n\n\
         [engine]\npoll_interval = \"50ms\"\n\n{channels}",
        dintero = sandbox.dintero_toml(),
        dir = shop.display(),
        channels = block("toml postbud.toml"),
    );
    write(&shop.join("postbud.toml"), &toml);
    let binary = build(&shop).await;

    let mut service = Command::new(binary)
        .current_dir(&shop)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the service starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let settings = postbud::Settings::from_toml(&toml).expect("settings");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Up, and its first reconcile sweep done: the sweep runs without being asked.
    loop {
        let healthy = http.get(format!("{base}/healthz")).send().await;
        if healthy.is_ok_and(|r| r.status().is_success())
            && let Ok(records) = postbud::Records::open(&settings).await
            && records.last_sweep().await.is_ok_and(|s| s.is_some())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not come up");
        assert!(service.try_wait().expect("wait").is_none(), "it exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http.get(format!("{base}/"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
        "the shop",
        "the shop's own route is served beside Postbud's"
    );

    let id = sandbox.seed(Seed::default());
    let callback = format!("{base}/dintero/callback");
    let unsigned = http
        .get(format!("{callback}?transaction_id={id}"))
        .send()
        .await
        .expect("unsigned callback");
    assert_eq!(
        unsigned.status(),
        401,
        "a callback nobody signed is refused"
    );
    assert_eq!(
        sandbox.send_callback(&id, &callback).await,
        Ok(200),
        "the signed callback is taken"
    );
    let records = postbud::Records::open(&settings).await.expect("records");
    let delivery = loop {
        let jobs = records.jobs(&id).await.expect("jobs");
        if let Some(done) = jobs
            .into_iter()
            .find(|j| j.channel.as_deref() == Some("shop") && j.state == postbud::JobState::Done)
        {
            break done;
        }
        assert!(Instant::now() < deadline, "not delivered through the shop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sandbox.captures(&id), 1, "captured once");

    // Ctrl-C: a graceful drain, and a clean exit.
    let stopped = std::process::Command::new("kill")
        .args(["-INT", &service.id().expect("pid").to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let status = tokio::time::timeout(Duration::from_secs(20), service.wait())
        .await
        .expect("drained within the grace period")
        .expect("status");
    assert!(status.success(), "{status}");
    let mut printed = String::new();
    service
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut printed)
        .await
        .expect("stdout");
    let number = records
        .dispatch(&id)
        .await
        .expect("dispatch")
        .and_then(|d| d.invoice_number)
        .expect("an invoice number");
    let handed = printed
        .lines()
        .filter(|l| l.starts_with(&format!("invoice {number} ")))
        .collect::<Vec<_>>();
    assert_eq!(handed.len(), 1, "delivered once: {printed}");
    assert!(
        handed[0].ends_with(&format!("handed to the shop as {}", delivery.id)),
        "through the shop's channel, under the delivery's id: {printed}"
    );
    let _ = std::fs::remove_dir_all(&shop);
}
