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
    assert_eq!(status.status.code(), Some(2), "{}", text(&status));
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
        report["invoices"].as_array().map(Vec::len),
        Some(0),
        "no record: {}",
        text(&status)
    );
    // An id this store has not seen: "not ours" (3), for status and retry alike.
    for args in [vec!["status", unknown], vec!["retry", unknown]] {
        let output = common::run(&s.config, &args, &[]).await;
        assert_eq!(output.status.code(), Some(3), "{args:?}: {}", text(&output));
        assert!(text(&output).contains("not in"), "{}", text(&output));
    }
    // Filters belong to the list: with a transaction they are refused, not ignored.
    let output = common::run(&s.config, &["status", unknown, "--needs-attention"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let demo = postbud()
        .args(["--config", s.config.to_str().expect("utf8"), "demo"])
        .output()
        .expect("runs");
    assert_eq!(demo.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&demo.stderr).contains("`--config` is not used by `postbud demo`")
    );
}

/// The same store under another route table: `deliver` with it routes the next invoice there.
fn with_routes(s: &common::Setup, name: &str, routes: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&s.config).expect("config");
    let base = &text[..text.find("[[routes]]").expect("routes")];
    let path = s.dir.path().join(name);
    std::fs::write(&path, format!("{base}{routes}")).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_what_needs_attention_and_metrics_count_invoices_not_jobs() {
    let port = common::free_port();
    let s = setup(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [channels.gone]\nkind = \"folder\"\npath = \"/nonexistent/postbud-gone\"\ncreate = false\n\n\
         [[routes]]\ndeliver = [\"archive\"]\n"
    ))
    .await;
    let lost = with_routes(&s, "lost.toml", "[[routes]]\ndeliver = [\"gone\"]\n");
    let rescued = with_routes(
        &s,
        "rescued.toml",
        "[[routes]]\ndeliver = [\"gone\"]\nfallback = [\"archive\"]\n",
    );
    let [a, b, c] = [(); 3].map(|_| s.sandbox.seed(Seed::default()));
    // a: captured, and its only channel refused it: collection runs, the customer has nothing.
    let output = common::run(&lost, &["deliver", &a], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("needs-attention"),
        "{}",
        text(&output)
    );
    assert_eq!(s.sandbox.captures(&a), 1);
    // b: the primary refused it, the fallback delivered it; c: delivered.
    let output = common::run(&rescued, &["deliver", &b], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let output = common::run(&s.config, &["deliver", &c], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let listed = |args: &'static [&'static str]| {
        let config = s.config.clone();
        async move {
            let mut all = vec!["status", "--json"];
            all.extend_from_slice(args);
            let output = common::run(&config, &all, &[]).await;
            assert_eq!(output.status.code(), Some(0), "{}", text(&output));
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
            let ids: Vec<String> = report["invoices"]
                .as_array()
                .expect("invoices")
                .iter()
                .map(|i| i["transaction_id"].as_str().expect("id").to_owned())
                .collect();
            (report, ids)
        }
    };
    let (report, attention) = listed(&["--needs-attention"]).await;
    assert_eq!(attention, vec![a.clone()], "{report}");
    let reason = report["invoices"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("collection started") && reason.contains("does not exist"),
        "{reason}"
    );
    assert_eq!(report["counts"]["needs-attention"], 1, "{report}");
    assert_eq!(report["counts"]["delivered"], 2, "{report}");
    assert_eq!(
        report["counts"]["failed"], 0,
        "a rescue is no failure: {report}"
    );
    let (_, delivered) = listed(&["--verdict", "delivered"]).await;
    assert!(
        delivered.contains(&b) && delivered.contains(&c) && !delivered.contains(&a),
        "{delivered:?}"
    );
    let (_, on_gone) = listed(&["--channel", "gone"]).await;
    assert!(on_gone.contains(&a) && on_gone.contains(&b) && !on_gone.contains(&c));
    let (_, old) = listed(&["--older-than", "1h"]).await;
    assert!(old.is_empty(), "{old:?}");
    let (_, recent) = listed(&["--newer-than", "1h", "--verdict", "failed"]).await;
    assert!(recent.is_empty(), "{recent:?}");
    // The human list says the verdict and why, on the invoice's line.
    let output = common::run(&s.config, &["status", "--needs-attention"], &[]).await;
    let line = text(&output)
        .lines()
        .find(|l| l.contains(&a))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        line.contains("needs-attention") && line.contains("gone"),
        "{}",
        text(&output)
    );
    let output = common::run(&s.config, &["status", "--verdict", "done"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));

    // /metrics of a server on this store: invoices by verdict, and per-channel attempts and
    // latency for what it delivers itself.
    let serve = common::Serve::start(&s.config, port).await;
    let d = s.sandbox.seed(Seed {
        callback_url: Some(format!("{}/dintero/callback", serve.base)),
        ..Seed::default()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let metrics = loop {
        let metrics = reqwest::get(format!("{}/metrics", serve.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("postbud_invoices{verdict=\"delivered\"} 3") {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{d} never delivered: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        metrics.contains("postbud_invoices_needing_attention 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postbud_invoices{verdict=\"failed\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "postbud_attempts_total{kind=\"deliver\",channel=\"archive\",outcome=\"done\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("postbud_delivery_latency_seconds_count{channel=\"archive\"} 1"),
        "{metrics}"
    );
    drop(serve);
}

/// Every path under `dir`, to show a command left the file system as it was.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            all.push(path);
        }
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_on_configurations_that_deliver_nothing_and_changes_nothing_on_disk() {
    let s = setup("").await;
    let before = tree(s.dir.path());
    // A live configuration whose store and folder do not exist yet: check says what `serve`
    // would create, creates nothing, and passes.
    let output = common::run(&s.config, &["check"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let out = text(&output);
    assert!(
        out.contains("does not exist yet: `postbud serve`, `deliver` or `migrate` creates it")
            && out.contains("does not exist yet: the first delivery creates it"),
        "{out}"
    );
    assert_eq!(tree(s.dir.path()), before, "check changed the file system");

    let live = std::fs::read_to_string(&s.config).expect("config");
    let base = &live[..live.find("[[routes]]").expect("routes")];
    let dead = [
        ("no route", String::new(), "routes: there is no [[routes]] entry"),
        (
            "a product type Kravia does not have",
            "[[routes]]\nwhen = { product_type = \"kravia.invoice_b2x\" }\ndeliver = [\"archive\"]\n".into(),
            "routes[0].when.product_type: `kravia.invoice_b2x` never occurs",
        ),
        (
            "a currency Kravia does not invoice in",
            "[[routes]]\nwhen = { currency = \"DKK\" }\ndeliver = [\"archive\"]\n".into(),
            "routes[0].when.currency: `DKK` never occurs",
        ),
        (
            "a country that is not a code",
            "[[routes]]\nwhen = { country = \"Norway\" }\ndeliver = [\"archive\"]\n".into(),
            "routes[0].when.country: `Norway` never occurs",
        ),
        (
            "a route behind a catch-all",
            "[[routes]]\ndeliver = [\"archive\"]\n[[routes]]\nwhen = { country = \"SE\" }\ndeliver = [\"archive\"]\n".into(),
            "routes[1]: never taken: routes[0] before it has no `when`",
        ),
        (
            "a channel no route names",
            "[channels.spare]\nkind = \"folder\"\npath = \"spare\"\n[[routes]]\ndeliver = [\"archive\"]\n".into(),
            "channels.spare: no route names this channel",
        ),
        (
            "a placeholder secret",
            "[server]\nlink_secret = \"change-me\"\n[[routes]]\ndeliver = [\"archive\"]\n".into(),
            "server.link_secret: is a placeholder",
        ),
    ];
    for (what, routes, expected) in dead {
        let config = s.dir.path().join("dead.toml");
        std::fs::write(&config, format!("{base}{routes}")).expect("config");
        let before = tree(s.dir.path());
        let output = common::run(&config, &["check"], &[]).await;
        assert_eq!(output.status.code(), Some(2), "{what}: {}", text(&output));
        assert!(
            text(&output).contains(expected),
            "{what}: {}",
            text(&output)
        );
        assert!(
            text(&output).contains("dead.toml"),
            "{what}: names the file"
        );
        assert_eq!(
            tree(s.dir.path()),
            before,
            "{what}: check changed the file system"
        );
    }
    // An empty secret from the environment is named with its variable, its value never shown.
    let output = common::run(
        &s.config,
        &["check"],
        &[("POSTBUD_SERVER__LINK_SECRET", " ")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("server.link_secret: is empty")
            && text(&output).contains("environment variable"),
        "{}",
        text(&output)
    );
}

/// Whether `needle` occurs anywhere in the store's files (database, WAL, shared memory).
fn store_holds(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    ["postbud.db", "postbud.db-wal", "postbud.db-shm"]
        .iter()
        .filter(|name| {
            std::fs::read(dir.join(name))
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|name| (*name).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_pdfs_and_personal_data_from_the_files_and_keeps_the_record() {
    let s = setup("").await;
    let email = "prunella.marker.7f3a@example.no";
    let seed = |email: &str, last_name: &str| Seed {
        billing_address: Some(serde_json::json!({
            "first_name": "Prunella", "last_name": last_name,
            "email": email, "phone_number": "+4791234567",
            "address_line": "Storgata 1", "postal_code": "0151", "postal_place": "Oslo", "country": "NO"
        })),
        ..Seed::default()
    };
    let old = s.sandbox.seed(seed(email, "Markerdottir"));
    let output = common::run(&s.config, &["deliver", &old], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let pdf = s.sandbox.pdf(&old).expect("pdf");
    let pdf_marker = &pdf[pdf.len() / 2..pdf.len() / 2 + 48];
    let sha = common::sha256(&pdf);
    assert!(
        !store_holds(s.dir.path(), email.as_bytes()).is_empty(),
        "the store held the email"
    );
    assert!(
        !store_holds(s.dir.path(), pdf_marker).is_empty(),
        "the store held the PDF"
    );

    // The retention is a day at least: a pass with store.retain leaves a fresh invoice alone.
    let output = common::run(&s.config, &["prune"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("pruned 0"), "{}", text(&output));
    let output = common::run(&s.config, &["prune"], &[("POSTBUD_STORE__RETAIN", "1h")]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("store.retain"), "{}", text(&output));

    // An invoice still at work is not pruned, whatever its age.
    let busy = s.sandbox.seed(seed("busy@example.no", "Busydottir"));
    s.sandbox.inject(postbud_sandbox::Fault {
        operation: postbud_sandbox::Operation::Capture,
        transaction: Some(busy.clone()),
        kind: postbud_sandbox::FaultKind::Status {
            status: 503,
            retry_after: None,
        },
        times: 100,
        skip: 0,
    });
    let output = common::run(&s.config, &["deliver", &busy, "--wait", "0s"], &[]).await;
    assert_eq!(output.status.code(), Some(75), "{}", text(&output));

    std::thread::sleep(std::time::Duration::from_millis(20));
    let output = common::run(&s.config, &["prune", "--older-than", "1ms"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("pruned 1 "), "{}", text(&output));
    // Gone from the files, not only from the rows.
    assert_eq!(
        store_holds(s.dir.path(), email.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(
        store_holds(s.dir.path(), b"Markerdottir"),
        Vec::<String>::new()
    );
    assert_eq!(store_holds(s.dir.path(), pdf_marker), Vec::<String>::new());
    // The record answers "was it delivered, and which file": verdict, dates, the PDF's hash.
    let output = common::run(&s.config, &["status", &old, "--json"], &[]).await;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["assessment"]["verdict"], "delivered", "{report}");
    assert_eq!(report["dispatch"]["pdf_sha256"], sha.as_str(), "{report}");
    assert!(report["dispatch"]["pruned_at"].is_i64(), "{report}");
    assert!(report["dispatch"]["invoice_number"].is_string(), "{report}");
    let history = report["history"].as_array().expect("history");
    assert!(history.iter().any(|h| h["event"] == "pruned"), "{report}");
    assert!(!report.to_string().contains(email), "{report}");
    // The one at work kept everything.
    let output = common::run(&s.config, &["status", &busy, "--json"], &[]).await;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert!(report["dispatch"]["pruned_at"].is_null(), "{report}");
    let history = report["history"].as_array().expect("history");
    assert!(
        !history.is_empty() && history.iter().all(|h| h["detail"] != ""),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_below_the_link_lifetime_is_refused_unless_forced() {
    let s =
        setup("[server]\npublic_url = \"https://invoices.merchant.example\"\nlink_ttl = \"30d\"\n")
            .await;
    let id = s.sandbox.seed(Seed::default());
    let output = common::run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // Shorter than the links customers hold: refused, naming both values and both keys.
    let output = common::run(&s.config, &["prune", "--older-than", "1d"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    for needed in ["--older-than 1day", "server.link_ttl (30days", "--force"] {
        assert!(
            text(&output).contains(needed),
            "{needed}: {}",
            text(&output)
        );
    }
    assert!(
        !text(&output).contains("pruned"),
        "nothing was pruned: {}",
        text(&output)
    );
    // As long as the links: pruned as asked (nothing that young here).
    let output = common::run(&s.config, &["prune", "--older-than", "30d"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("pruned 0"), "{}", text(&output));
    // Forced: the operator breaks those links knowingly.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let output = common::run(&s.config, &["prune", "--older-than", "1ms", "--force"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("pruned 1 "), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_when_a_secret_file_is_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let secrets = tempfile::tempdir().expect("dir");
    let file = secrets.path().join("link-secret");
    std::fs::write(&file, "link-secret-value-R2D7\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let s = setup(&format!(
        "[server]\nlink_secret_file = \"{}\"\n",
        file.display()
    ))
    .await;
    let output = common::run(&s.config, &["check"], &[]).await;
    let said = text(&output);
    let line = said
        .lines()
        .find(|l| l.starts_with("! server.link_secret_file"))
        .unwrap_or_else(|| panic!("a line about the file: {said}"));
    assert!(
        line.contains(&file.display().to_string()) && line.contains("mode 0644"),
        "{said}"
    );
    assert!(!said.contains("R2D7"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_paths_in_the_file_are_relative_to_the_file() {
    let s = setup("").await;
    let deployment = s.dir.path().join("deployment");
    std::fs::create_dir_all(deployment.join("templates/email/nb")).expect("dir");
    std::fs::write(
        deployment.join("templates/email/nb/subject.txt"),
        "Faktura {{ invoice.number }",
    )
    .expect("template");
    let text_config = std::fs::read_to_string(&s.config).expect("config");
    let base = &text_config[..text_config.find("[[routes]]").expect("routes")];
    let config = deployment.join("postbud.toml");
    std::fs::write(
        &config,
        format!(
            "{base}[channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:1\"\nfrom = \"Merchant <faktura@merchant.example>\"\ntemplates = \"templates/email\"\n\n[[routes]]\ndeliver = [\"archive\", \"mail\"]\n"
        ),
    )
    .expect("config");
    // Run from elsewhere: the template directory is found beside the file, and its broken
    // template (not "does not exist") is what the build reports.
    let output = run_in(s.dir.path(), &config, &["check"]).await;
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(
        out.contains("channels.mail.templates") && !out.contains("does not exist"),
        "{out}"
    );
}
