//! The built-in folder channel as a program polling the folder sees it: one invoice's files
//! never replace another's, and the directory it makes is not the whole machine's to list.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::Harness;
use postbud::Verdict;
use postbud_sandbox::Seed;

/// The transaction id a manifest names.
fn manifest_transaction(path: &std::path::Path) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("manifest")).expect("json");
    manifest["transaction_id"]
        .as_str()
        .or_else(|| manifest["invoice"]["transaction_id"].as_str())
        .expect("a transaction id")
        .to_owned()
}

#[tokio::test]
async fn two_transactions_with_one_invoice_number_get_a_file_each() {
    let h = Harness::start().await;
    // Two instances on one directory: each invoice is written twice, as a repeat would be.
    let app = h
        .app(&format!(
            "[channels.again]\nkind = \"folder\"\npath = \"{}\"\n\n\
             [[routes]]\ndeliver = [\"archive\", \"again\"]\n",
            h.invoices().display()
        ))
        .await;
    let seed = || Seed {
        invoice_number: Some("DUP-100".into()),
        ..Seed::default()
    };
    let first = h.sandbox.seed(seed());
    let second = h.sandbox.seed(seed());
    for id in [&first, &second] {
        let outcome = app.deliver_now(id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    }
    let dir = h.invoices();
    // The first keeps the name an ERP looks for.
    let sha = |path: std::path::PathBuf| common::sha256(&std::fs::read(path).expect("pdf"));
    let sandbox_sha = |id: &str| common::sha256(&h.sandbox.pdf(id).expect("pdf"));
    assert_eq!(
        sha(dir.join("DUP-100.pdf")),
        sandbox_sha(&first),
        "the first's PDF"
    );
    assert_eq!(manifest_transaction(&dir.join("DUP-100.json")), first);
    // The second has its own files, named with its number and its transaction.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let pdf = names
        .iter()
        .find(|n| n.starts_with("DUP-100_") && n.ends_with(".pdf"))
        .unwrap_or_else(|| panic!("a file of its own for the second: {names:?}"));
    assert!(pdf.contains(second.split('.').nth(1).expect("id")), "{pdf}");
    assert_eq!(sha(dir.join(pdf)), sandbox_sha(&second), "the second's PDF");
    let manifest = dir.join(pdf.replace(".pdf", ".json"));
    assert_eq!(manifest_transaction(&manifest), second);
    // Written twice each, into the same two pairs: a repeat finds its own files.
    assert_eq!(names.len(), 4, "two PDFs and two manifests: {names:?}");

    // A void drops its notice beside the voided invoice's own files.
    let report = app
        .void(&second, std::time::Duration::from_secs(10))
        .await
        .expect("void");
    assert_eq!(report.outcome.verdict(), Verdict::Voided);
    assert!(!dir.join("DUP-100.voided.json").exists());
    let notice = dir.join(pdf.replace(".pdf", ".voided.json"));
    assert_eq!(manifest_transaction(&notice), second);
}

#[tokio::test]
async fn the_directory_the_channel_creates_is_private_to_the_readers_of_its_files() {
    let h = Harness::start().await;
    let nested = h.dir.path().join("drop/private");
    let app = h
        .app(&format!(
            "[channels.private]\nkind = \"folder\"\npath = \"{}\"\nmode = \"0600\"\n\n\
             [[routes]]\ndeliver = [\"archive\", \"private\"]\n",
            nested.display()
        ))
        .await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    // The default files (0640) are for the owner and its group: so is the directory, never
    // the world, whatever the umask.
    assert_eq!(mode(&h.invoices()), 0o750, "{}", h.invoices().display());
    // Files for the owner alone: a directory for the owner alone, parents it made included.
    assert_eq!(mode(&nested), 0o700);
    assert_eq!(mode(&h.dir.path().join("drop")), 0o700);
    // A mode of its own.
    let shared = h.dir.path().join("shared");
    let app = h
        .app(&format!(
            "[channels.shared]\nkind = \"folder\"\npath = \"{}\"\ndir_mode = \"0770\"\n\n\
             [[routes]]\ndeliver = [\"shared\"]\n",
            shared.display()
        ))
        .await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(mode(&shared), 0o770);
}
