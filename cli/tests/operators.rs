//! The binary as an operator runs it at 3 a.m.: from whatever directory, against the store the
//! configuration names, never a new empty one.

mod common;

use std::process::Command;

use common::{postbud, setup, text};
use postbud_sandbox::Seed;

async fn run_in(
    dir: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let mut command: Command = postbud();
    command
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .args(args);
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("joined")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_in_the_file_are_the_file_s_and_status_never_creates_a_store() {
    let s = setup("").await;
    // A deployment directory with relative paths, as config/postbud.toml has them.
    let deployment = s.dir.path().join("deployment");
    std::fs::create_dir_all(&deployment).expect("dir");
    let config = deployment.join("postbud.toml");
    let text_config = std::fs::read_to_string(&s.config)
        .expect("config")
        .replace(
            &format!("sqlite://{}/postbud.db", s.dir.path().display()),
            "sqlite://postbud.db",
        )
        .replace(
            &format!("path = \"{}/invoices\"", s.dir.path().display()),
            "path = \"invoices\"",
        );
    std::fs::write(&config, text_config).expect("config");
    let elsewhere = s.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    // Before anything ran: status says there is no store, and creates none.
    let status = run_in(&elsewhere, &config, &["status"]).await;
    assert_ne!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        text(&status).contains("there is no store"),
        "{}",
        text(&status)
    );
    assert!(!deployment.join("postbud.db").exists() && !elsewhere.join("postbud.db").exists());
    // Delivered from another directory: the store and the files land beside the configuration.
    let id = s.sandbox.seed(Seed::default());
    let deliver = run_in(&elsewhere, &config, &["deliver", &id]).await;
    assert_eq!(deliver.status.code(), Some(0), "{}", text(&deliver));
    assert!(deployment.join("postbud.db").exists());
    assert!(
        std::fs::read_dir(deployment.join("invoices"))
            .expect("invoices")
            .next()
            .is_some()
    );
    assert!(!elsewhere.join("postbud.db").exists() && !elsewhere.join("invoices").exists());
    // status from a third place reads that store, and says which.
    let status = run_in(s.dir.path(), &config, &["status", &id]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        text(&status).contains(&format!(
            "store sqlite://{}",
            deployment.join("postbud.db").display()
        )),
        "{}",
        text(&status)
    );
    for args in [vec!["retry", id.as_str()], vec!["void", id.as_str()]] {
        let mut config_elsewhere = std::fs::read_to_string(&config).expect("config");
        config_elsewhere = config_elsewhere.replace("sqlite://postbud.db", "sqlite://missing.db");
        let other = elsewhere.join("other.toml");
        std::fs::write(&other, config_elsewhere).expect("config");
        let output = run_in(&elsewhere, &other, &args).await;
        assert!(
            text(&output).contains("there is no store"),
            "{args:?}: {}",
            text(&output)
        );
        assert!(
            !elsewhere.join("missing.db").exists(),
            "{args:?} created a store"
        );
    }
    assert_eq!(s.sandbox.stats().voids.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_a_dash_in_its_name_takes_settings_from_the_environment() {
    let s = setup(
        "[channels.customer-archive]\nkind = \"folder\"\npath = \"/nonexistent/not-here\"\ncreate = false\n\n[[routes]]\ndeliver = [\"customer-archive\"]\n",
    )
    .await;
    let target = s.dir.path().join("from-env");
    std::fs::create_dir_all(&target).expect("dir");
    let id = s.sandbox.seed(Seed::default());
    let output = common::run(
        &s.config,
        &["deliver", &id],
        &[(
            "POSTBUD_CHANNELS__CUSTOMER_ARCHIVE__PATH",
            target.to_str().expect("utf8"),
        )],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        std::fs::read_dir(&target).expect("dir").next().is_some(),
        "written where the variable said"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_leave_no_record_and_ignored_options_are_refused() {
    let s = setup("").await;
    let unknown = "T12345678.NotAtDintero1";
    for args in [vec!["deliver", unknown], vec!["void", unknown]] {
        let output = common::run(&s.config, &args, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains("Dintero does not know transaction"),
            "{}",
            text(&output)
        );
    }
    let status = common::run(&s.config, &["status", "--json"], &[]).await;
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        report["totals"]["dispatches"],
        0,
        "no record: {}",
        text(&status)
    );
    let demo = postbud()
        .args(["--config", s.config.to_str().expect("utf8"), "demo"])
        .output()
        .expect("runs");
    assert_eq!(demo.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&demo.stderr).contains("`--config` is not used by `postbud demo`")
    );
}
