//! `postbud-cli`: the operator command line as a library, so a merchant's own binary is a few
//! lines: its registry with its channel crates, then [`run`]: the same `serve`, `check`,
//! `deliver`, `status`, `void`, `retry`, `prune`, `reconcile`, `migrate` and `invoice create`,
//! with the same options, output and exit codes as the stock `postbud` binary.
//!
//! Features: `channels` (default) links the first-party channel crates and gives
//! [`stock_registry`]; `dev` adds the developer commands `sandbox`, `demo` and `bench`, which a
//! production binary leaves out.
#![warn(missing_docs)]

/// `println!` for the command's output, except that a reader that went away
/// (`postbud status | head`) ends the program quietly instead of with a panic.
/// Prints a line to stdout, with [`terminal_safe`] applied: text from Dintero or a provider
/// reaches the terminal as text, never as escape sequences.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = $crate::terminal_safe(&format!($($arg)*));
        if let Err(e) = writeln!(std::io::stdout(), "{line}") {
            $crate::stdout_failed(e);
        }
    }};
}

/// `text` with every control character but the line break and tab escaped (`\u001b`), C1
/// controls and bidirectional overrides included: data from Dintero or a provider cannot move
/// the cursor, recolour the terminal or reorder what an operator reads.
pub(crate) fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\n' && c != '\t') || bidi {
                // `\u202e`: readable, and still valid inside a JSON string.
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

mod args;
mod commands;
#[cfg(feature = "dev")]
mod dev;
mod key_reference;

use std::{process::ExitCode, time::Duration};

use postbud::Registry;

use self::args::{Cli, Command, ConsoleCommand, InvoiceCommand};

/// The kinds of the stock `postbud` binary: the built-in `folder` and the first-party crates
/// `postbud-email`, `postbud-webhook`, `postbud-sms`, `postbud-sftp` and `postbud-peppol`.
#[cfg(feature = "channels")]
pub fn stock_registry() -> Result<Registry, postbud::DuplicateKind> {
    let mut registry = Registry::discover()?;
    postbud_email::register(&mut registry)?;
    postbud_webhook::register(&mut registry)?;
    postbud_sms::register(&mut registry)?;
    postbud_sftp::register(&mut registry)?;
    postbud_peppol::register(&mut registry)?;
    Ok(registry)
}

/// Runs the operator command line with the channel kinds of `registry`: parses the process's
/// arguments, runs the command and returns its exit status (the table `--help` prints).
///
/// The whole of a merchant's own operator binary, with its own channel crate beside the
/// built-in `folder` kind:
///
/// ```no_run
/// # mod my_channels { pub fn register(_: &mut postbud::Registry) -> Result<(), postbud::DuplicateKind> { Ok(()) } }
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let mut registry = postbud::Registry::discover().expect("each kind registered once");
///     my_channels::register(&mut registry).expect("each kind registered once");
///     postbud_cli::run(registry).await
/// }
/// ```
pub async fn run(registry: Registry) -> ExitCode {
    let mut command = <Cli as clap::CommandFactory>::command();
    if let Some(name) = std::env::args_os().next().and_then(|arg0| {
        Some(
            std::path::Path::new(&arg0)
                .file_name()?
                .to_str()?
                .to_owned(),
        )
    }) {
        command = command.bin_name(name);
    }
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = cli.config.as_deref();
    // Options a command ignores are refused, not silently dropped.
    let own_defaults: Option<&str> = match &cli.command {
        #[cfg(feature = "dev")]
        Command::Demo { .. } => Some("demo"),
        #[cfg(feature = "dev")]
        Command::Sandbox { .. } => Some("sandbox"),
        #[cfg(feature = "dev")]
        Command::Bench(_) => Some("bench"),
        _ => None,
    };
    if let (Some(command), Some(_)) = (own_defaults, config) {
        eprintln!(
            "postbud: `--config` is not used by `postbud {command}`: it runs on its own embedded configuration"
        );
        return ExitCode::from(commands::exit::CONFIG);
    }
    #[cfg(feature = "dev")]
    let talkative = matches!(cli.command, Command::Serve | Command::Sandbox { .. });
    #[cfg(not(feature = "dev"))]
    let talkative = matches!(cli.command, Command::Serve);
    init_logging(if talkative { "info" } else { "warn" });
    let result = match cli.command {
        Command::Serve => commands::serve(config, &registry).await,
        Command::Deliver {
            transaction_id,
            wait,
            json,
            merchant_initiated,
            adopt_capture,
        } => {
            let how = if merchant_initiated {
                commands::DeliverAs::MerchantInitiated
            } else if adopt_capture {
                commands::DeliverAs::AdoptingCapture
            } else {
                commands::DeliverAs::Usual
            };
            commands::deliver(config, &registry, &transaction_id, wait, json, how).await
        }
        Command::Void {
            transaction_id,
            wait,
        } => commands::void(config, &registry, &transaction_id, wait).await,
        Command::Status {
            transaction_id: Some(id),
            json,
            ..
        } => commands::status_of(config, &registry, &id, json).await,
        Command::Status {
            transaction_id: None,
            needs_attention,
            mut verdict,
            channel,
            older_than,
            newer_than,
            limit,
            json,
        } => {
            if needs_attention && !verdict.contains(&postbud::Verdict::NeedsAttention) {
                verdict.push(postbud::Verdict::NeedsAttention);
            }
            let now = postbud::now_ms();
            let before = |d: Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let mut filter = postbud::Filter::default();
            filter.verdicts = verdict;
            filter.channel = channel;
            filter.created_from = newer_than.map(before);
            filter.created_before = older_than.map(before);
            commands::status(config, &filter, limit as usize, json).await
        }
        Command::Retry {
            transaction_id,
            channel,
        } => commands::retry(config, &registry, &transaction_id, channel.as_deref()).await,
        Command::Console {
            command: ConsoleCommand::HashPassword,
        } => commands::hash_password(),
        Command::Invoice {
            command: InvoiceCommand::Create { order },
        } => commands::create_invoice(config, &registry, &order).await,
        Command::Channels {
            keys: true,
            markdown,
            json,
            toml,
        } => commands::channel_keys(&registry, key_reference::format(markdown, json, toml)),
        Command::Channels { keys: false, .. } => commands::channels(config, &registry),
        Command::Migrate => commands::migrate(config).await,
        Command::Prune { older_than, force } => {
            commands::prune(config, &registry, older_than, force).await
        }
        Command::Reconcile => commands::reconcile(config, &registry).await,
        Command::Check => commands::check(config, &registry).await,
        #[cfg(feature = "dev")]
        Command::Sandbox {
            listen,
            seed,
            callback_secret,
            callback_url,
            token_ttl,
        } => dev::sandbox(listen, seed, callback_secret, callback_url, token_ttl).await,
        #[cfg(feature = "dev")]
        #[cfg(not(feature = "screenshots"))]
        Command::Demo { dir } => dev::demo::run(&dir, None).await,
        #[cfg(feature = "screenshots")]
        Command::Demo { dir, screenshots } => dev::demo::run(&dir, screenshots.as_deref()).await,
        #[cfg(feature = "dev")]
        Command::Bench(options) => dev::bench::run(options).await,
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("postbud: {}", terminal_safe(&failure.message));
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTBUD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written is dropped and counted, never a panic in a worker.
        .with_writer(|| postbud::log_sink::LossyStderr)
        .log_internal_errors(false)
        .try_init();
}

/// Where `say!` goes when stdout fails: a closed pipe is the reader's choice and exits 0;
/// anything else is reported.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("postbud: writing to stdout: {e}");
    std::process::exit(1);
}
