//! What an adversarial re-test found at the edges: an invoice pruned by retention is still
//! retried and cancelled, unsigned hints of one kind cannot starve another, and a listing gone
//! wrong cannot fill the store in one sweep.

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    Harness,
    quirky::{Quirks, QuirkyDintero},
};
use postbud::{App, AppError, Verdict};
use postbud_sandbox::Seed;

#[tokio::test]
async fn an_invoice_pruned_by_retention_is_still_retried_and_cancelled() {
    let h = Harness::start().await;
    // The archive is down when the invoice is captured: it is dead-lettered, needs attention.
    let toml = h
        .toml("")
        .replace("max_attempts = 6", "max_attempts = 1")
        .replace(
            &format!("path = \"{}/invoices\"", h.dir.path().display()),
            &format!(
                "path = \"{}/invoices\"\ncreate = false",
                h.dir.path().display()
            ),
        );
    let app = App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    // Retention runs before anybody looks: the PDF and the invoice are deleted. (Prune takes
    // what was last changed before now: a millisecond must have passed.)
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(app.prune(Duration::ZERO).await.expect("prune") >= 1);
    assert!(app.invoice(&id).await.expect("store").is_none(), "pruned");
    // The share is back; the operator retries: the invoice is read again from Dintero.
    std::fs::create_dir_all(h.invoices()).expect("share back");
    app.retry(&id, None).await.expect("retry");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1, "never captured again");
    // Delivered from what was read again, nothing kept anew: voided long after, the
    // cancellation notice still goes out.
    assert!(
        app.invoice(&id).await.expect("store").is_none(),
        "still pruned"
    );
    let report = app.void(&id, Duration::from_secs(5)).await.expect("void");
    assert_eq!(
        report.outcome.verdict(),
        Verdict::Voided,
        "{}",
        report.outcome
    );
    assert!(h.void_notice(&id).exists(), "the cancellation notice");
}

#[tokio::test]
async fn a_flood_of_unsigned_void_hints_never_holds_back_a_new_invoice() {
    let h = Harness::start().await;
    let app = h.app("[server]\nunverified_per_second = 2\n").await;
    let delivered = h.sandbox.seed(Seed::default());
    app.deliver_now(&delivered).await.expect("deliver");
    // Unsigned `event=VOID` hints for a known invoice, each read at Dintero, until the budget
    // for such hints is spent.
    let mut refused = false;
    for _ in 0..10 {
        if let Err(AppError::Busy(_)) = app.voided_elsewhere(&delivered, false).await {
            refused = true;
            break;
        }
    }
    assert!(refused, "the hints have a budget");
    // A new invoice's unsigned callback still gets its read.
    let new = h.sandbox.seed(Seed::default());
    assert!(app.submit_unverified(&new).await.expect("not busy"));
}

#[tokio::test]
async fn a_listing_that_never_ends_cannot_fill_the_store_in_one_sweep() {
    let h = Harness::start().await;
    let settings = h.settings("");
    let account = settings
        .dintero
        .as_ref()
        .expect("dintero")
        .account_id
        .clone();
    let gateway = Arc::new(QuirkyDintero::new(
        &settings,
        Quirks {
            endless_listing_of: Some(account),
            ..Quirks::default()
        },
    ));
    let app = App::builder(&settings)
        .dintero(gateway)
        .open()
        .await
        .expect("app");
    let failed = app.reconcile().await;
    assert!(failed.is_err(), "stopped");
    let sweep = app.last_sweep().await.expect("read").expect("kept");
    assert_eq!(sweep.new, 1_000, "{sweep:?}");
    assert!(
        sweep
            .error
            .as_deref()
            .is_some_and(|e| e.contains("more than 1000 transactions new")),
        "{sweep:?}"
    );
    assert_eq!(app.totals().await.expect("totals").dispatches, 1_000);
}

/// A small tmpfs of its own, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// A 4 MiB file system, or `None` (the test skips, saying so) where mounting is not allowed.
    fn mount(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("dir").keep();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let why = format!("{test}: cannot mount a small tmpfs here (needs root)");
            assert!(
                std::env::var_os("POSTBUD_REQUIRE_SERVICES").is_none(),
                "{why}"
            );
            postbud_sandbox::skipped(&why);
            return None;
        }
        Some(Self(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the store's threads may hold its files a moment longer.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test]
async fn health_fails_while_the_store_s_disk_is_full_and_recovers_after() {
    let Some(disk) = SmallDisk::mount("health_fails_while_the_store_s_disk_is_full") else {
        return;
    };
    let h = Harness::start().await;
    let toml = h.toml("").replace(
        &format!("sqlite://{}/postbud.db", h.dir.path().display()),
        &format!("sqlite://{}/postbud.db", disk.0.display()),
    );
    let app = App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    assert!(app.health().await.is_ok());
    // Something else fills the disk.
    let filler = disk.0.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let block = vec![7u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &block).is_ok() {}
    drop(file);
    let mut unhealthy = None;
    for _ in 0..20 {
        // Each write needs a page more: a few may still fit in what SQLite holds.
        if let Err(why) = app.health().await {
            unhealthy = Some(why);
            break;
        }
    }
    let why = unhealthy.expect("/healthz fails on a full disk");
    assert!(why.contains("cannot be written"), "{why}");
    std::fs::remove_file(&filler).expect("room again");
    let mut healthy = false;
    for _ in 0..50 {
        if app.health().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "healthy again once there is room");
}
