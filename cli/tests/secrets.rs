//! Secrets as containers mount them: `<key>_file` beside any secret key, relative to the
//! configuration file, and the `POSTBUD_` variables, for a channel whose name has a dash. Proven
//! by `postbud check` against servers that refuse a wrong secret: the sandbox's Dintero (client
//! secret) and a real SMTP server with AUTH required (the password).

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::{postbud, setup, text};
use postbud_sandbox::smtp::{PASSWORD, SmtpServer};

/// `postbud --config <config> check` run in `cwd`, with `envs`.
async fn check_in(cwd: &Path, config: &Path, envs: &[(&str, &str)]) -> Output {
    let mut command: Command = postbud();
    command
        .current_dir(cwd)
        .arg("--config")
        .arg(config)
        .arg("check");
    for (k, v) in envs {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("joined")
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, content).expect("write");
}

/// Routes to both channels: `check` refuses a channel no route names.
const ROUTES: &str = "[[routes]]\ndeliver = [\"archive\", \"customer-email\"]\n";

/// The `customer-email` channel: a user name in the URL, the password from elsewhere.
fn email_channel(smtp: &SmtpServer, password: &str) -> String {
    format!(
        "[channels.customer-email]\nkind = \"email\"\n\
         smtp_url = \"smtp://{user}@127.0.0.1:{port}?tls=required\"\n\
         ca_file = \"{ca}\"\nfrom = \"Merchant AS <faktura@merchant.example>\"\ntimeout = \"5s\"\n{password}\n\n{ROUTES}",
        user = postbud_sandbox::smtp::USER,
        port = smtp.port(),
        ca = smtp.ca_file().display(),
    )
}

/// A directory that is neither the configuration's nor the test's.
fn elsewhere(root: &Path) -> PathBuf {
    let dir = root.join("elsewhere");
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_beside_the_configuration_reach_dintero_and_the_channel() {
    let Some(smtp) = SmtpServer::start_or_skip(
        "secrets_from_files_beside_the_configuration_reach_dintero_and_the_channel",
    ) else {
        return;
    };
    let s = setup(&email_channel(
        &smtp,
        "password_file = \"secrets/smtp-password\"",
    ))
    .await;
    let client_secret = postbud_sandbox::SandboxConfig::default().client_secret;
    let config = std::fs::read_to_string(&s.config).expect("config").replace(
        &format!("client_secret = \"{client_secret}\""),
        "client_secret_file = \"secrets/dintero\"",
    );
    assert!(config.contains("client_secret_file"), "{config}");
    std::fs::write(&s.config, config).expect("config");
    // As mounted secrets usually are: with a trailing newline.
    write(
        &s.dir.path().join("secrets/dintero"),
        &format!("{client_secret}\n"),
    );
    write(
        &s.dir.path().join("secrets/smtp-password"),
        &format!("{PASSWORD}\r\n"),
    );
    // Run from another directory: the relative paths are the configuration file's.
    let cwd = elsewhere(s.dir.path());
    let output = check_in(&cwd, &s.config, &[]).await;
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("✓ dintero"), "{said}");
    assert!(
        said.contains("✓ channel customer-email") && said.contains("STARTTLS required"),
        "{said}"
    );
    assert!(
        !said.contains(PASSWORD) && !said.contains(&client_secret),
        "{said}"
    );

    // The value is what the server checks: a wrong one in the file is refused, and not shown.
    write(
        &s.dir.path().join("secrets/smtp-password"),
        "wrong-PW-7XQ\n",
    );
    let output = check_in(&cwd, &s.config, &[]).await;
    let said = text(&output);
    assert_ne!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("✗ channel customer-email"), "{said}");
    assert!(!said.contains("7XQ"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_sets_a_dashed_channel_s_password_or_its_file() {
    let Some(smtp) =
        SmtpServer::start_or_skip("the_environment_sets_a_dashed_channel_s_password_or_its_file")
    else {
        return;
    };
    let s = setup(&email_channel(&smtp, "")).await;
    let cwd = elsewhere(s.dir.path());
    // Without a password the channel does not even build: a user name alone is refused.
    let output = check_in(&cwd, &s.config, &[]).await;
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("without a password"),
        "{}",
        text(&output)
    );

    let output = check_in(
        &cwd,
        &s.config,
        &[("POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD", PASSWORD)],
    )
    .await;
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("✓ channel customer-email"), "{said}");

    // `_FILE` from the environment: a relative path is the current directory's.
    write(&cwd.join("smtp-password"), &format!("{PASSWORD}\n"));
    let output = check_in(
        &cwd,
        &s.config,
        &[(
            "POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD_FILE",
            "smtp-password",
        )],
    )
    .await;
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("✓ channel customer-email"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_given_twice_or_from_a_missing_file_is_refused_without_showing_it() {
    let s = setup(&format!(
        "[channels.customer-email]\nkind = \"email\"\n\
         smtp_url = \"smtps://postbud@smtp.example:465\"\nfrom = \"a@merchant.example\"\n\
         password_file = \"secrets/smtp-password\"\n\n{ROUTES}"
    ))
    .await;
    write(
        &s.dir.path().join("secrets/smtp-password"),
        "file-content-Q9VV\n",
    );
    let cwd = elsewhere(s.dir.path());

    // Both forms: the file's `password_file` and the environment's `PASSWORD`.
    let output = check_in(
        &cwd,
        &s.config,
        &[(
            "POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD",
            "env-content-J2KK",
        )],
    )
    .await;
    let said = text(&output);
    assert_ne!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("channels.customer-email.password ")
            && said.contains("POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD")
            && said.contains("channels.customer-email.password_file")
            && said.contains("postbud.toml")
            && said.contains("set one of them"),
        "{said}"
    );
    assert!(!said.contains("Q9VV") && !said.contains("J2KK"), "{said}");

    // A file that is not there: the key, the file that named it, and the path it resolved to.
    std::fs::remove_file(s.dir.path().join("secrets/smtp-password")).expect("remove");
    let output = check_in(&cwd, &s.config, &[]).await;
    let said = text(&output);
    assert_ne!(output.status.code(), Some(0), "{said}");
    let missing = s.dir.path().join("secrets/smtp-password");
    assert!(
        said.contains("channels.customer-email.password_file")
            && said.contains("postbud.toml")
            && said.contains(&missing.display().to_string())
            && said.contains("does not exist"),
        "{said}"
    );

    // Set (overriding the file's) from the environment: the error names the variable.
    let output = check_in(
        &cwd,
        &s.config,
        &[(
            "POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD_FILE",
            "/nonexistent/smtp-password",
        )],
    )
    .await;
    let said = text(&output);
    assert_ne!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("channels.customer-email.password_file")
            && said
                .contains("environment variable POSTBUD_CHANNELS__CUSTOMER_EMAIL__PASSWORD_FILE")
            && said.contains("`/nonexistent/smtp-password` does not exist"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_the_smtp_server_refuses_is_a_configuration_error_naming_the_key() {
    let Some(smtp) = SmtpServer::start_or_skip(
        "a_password_the_smtp_server_refuses_is_a_configuration_error_naming_the_key",
    ) else {
        return;
    };
    let s = setup(&email_channel(&smtp, "password = \"wrong-PW-4TT4\"")).await;
    let id = s.sandbox.seed(postbud_sandbox::Seed::default());

    // `check`: the configuration's to fix (2), the key named.
    let output = check_in(s.dir.path(), &s.config, &[]).await;
    let said = text(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(
        said.contains("not authorised") && said.contains("fix channels.customer-email.password"),
        "{said}"
    );

    // `deliver`: exit 2 naming the key; the delivery is stopped for the operator, not failed.
    let output = common::run(&s.config, &["deliver", &id], &[]).await;
    let said = text(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(
        said.contains("credentials refused")
            && said.contains("535")
            && said.contains("fix channels.customer-email.password"),
        "{said}"
    );
    // `status` shows the reason and what happened.
    let output = common::run(&s.config, &["status", &id], &[]).await;
    let said = text(&output);
    assert!(
        said.contains("needs-attention")
            && said.contains("credentials refused (not authorised)")
            && said.contains("fix channels.customer-email.password"),
        "{said}"
    );
    assert!(!said.contains("4TT4"), "{said}");

    // Fixed, `retry` sends it.
    let fixed = std::fs::read_to_string(&s.config)
        .expect("config")
        .replace("wrong-PW-4TT4", PASSWORD);
    std::fs::write(&s.config, fixed).expect("config");
    let output = common::run(&s.config, &["retry", &id], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(smtp.messages().len(), 1, "{}", text(&output));
}
