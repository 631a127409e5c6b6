//! `postbud`: run and operate Postbud from the command line.

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

mod bench;
mod commands;
mod demo;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

/// The exit status of every command.
const EXIT_CODES: &str = "Exit status, for every command:
  0   done
  1   failed: a delivery, capture, void or probe failed for good; a person must act
  2   bad configuration or input: the file, a key, a transaction id Dintero does not know,
      no store where store.url points
  3   not ours: a transaction Postbud does not deliver, or one this store has not seen
  4   unavailable: the store or Dintero could not be reached; try again
  75  pending: work remains queued for retry; `postbud serve` finishes it";

/// Deliver Dintero Kravia invoices yourself: capture, then deliver through your own channels.
#[derive(Debug, Parser)]
#[command(name = "postbud", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    /// Configuration file (default: POSTBUD_CONFIG, else embedded defaults). POSTBUD_* variables
    /// override it, with `__` for nesting: POSTBUD_DINTERO__CLIENT_SECRET.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the callback endpoint, signed invoice links, /healthz, /metrics and the workers.
    Serve,
    /// Capture and deliver one transaction now, and wait for the outcome.
    Deliver {
        /// Dintero transaction id.
        transaction_id: String,
        /// How long to wait for retries that come due.
        #[arg(long, default_value = "30s", value_parser = humantime_duration)]
        wait: Duration,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel an invoice: void at Dintero, stop pending deliveries, send cancellation notices.
    Void {
        /// Dintero transaction id.
        transaction_id: String,
        /// How long to wait for Dintero to confirm a void it accepted (202); after that a job
        /// that `serve` runs finishes it, and the command exits 75.
        #[arg(long, default_value = "30s", value_parser = humantime_duration)]
        wait: Duration,
    },
    /// List the account's authorized Kravia transactions at Dintero now and submit those this
    /// store does not know (what `serve` does every `dintero.reconcile_every`).
    Reconcile,
    /// Show each invoice's verdict (delivered, pending, needs-attention, failed, voided,
    /// skipped) with its reason, or one transaction's jobs and history.
    ///
    /// `--needs-attention` lists exactly the invoices a person must act on: collection started
    /// and the invoice reached nobody, dead letters, captures or voids Dintero refused,
    /// cancellation notices not sent.
    Status {
        /// Dintero transaction id: its jobs and history.
        transaction_id: Option<String>,
        /// Only the invoices a person must act on (as `--verdict needs-attention`).
        #[arg(long, conflicts_with = "transaction_id")]
        needs_attention: bool,
        /// Only this verdict (repeat for several): needs-attention, failed, pending, delivered,
        /// voided, skipped.
        #[arg(long, value_parser = verdict, conflicts_with = "transaction_id")]
        verdict: Vec<postbud::triage::Verdict>,
        /// Only invoices with a delivery (or notice) on this channel instance.
        #[arg(long, conflicts_with = "transaction_id")]
        channel: Option<String>,
        /// Only invoices first seen longer ago than this (`2h`, `7d`).
        #[arg(long, value_parser = humantime_duration, conflicts_with = "transaction_id")]
        older_than: Option<Duration>,
        /// Only invoices first seen within this (`30m`, `1d`).
        #[arg(long, value_parser = humantime_duration, conflicts_with = "transaction_id")]
        newer_than: Option<Duration>,
        /// List at most this many (newest first).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "transaction_id")]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Requeue failed or dead-lettered jobs of a transaction for another attempt now.
    Retry {
        /// Dintero transaction id.
        transaction_id: String,
        /// Only this channel instance.
        #[arg(long)]
        channel: Option<String>,
    },
    /// Delete the PDFs and personal data of finished invoices not changed for `store.retain`
    /// (400 days by default), keeping an anonymised record; `serve` does this daily.
    Prune {
        /// Prune invoices finished and unchanged for this long instead of `store.retain`.
        #[arg(long, value_parser = humantime_duration)]
        older_than: Option<Duration>,
    },
    /// Merchant-initiated invoices.
    Invoice {
        #[command(subcommand)]
        command: InvoiceCommand,
    },
    /// Create or upgrade the store's schema (also done on start).
    Migrate,
    /// List the channel kinds this binary knows, and the configured instances.
    Channels,
    /// Validate the configuration, check the Dintero credentials, probe every channel.
    Check,
    /// Run a local Dintero-compatible sandbox (for development and trials).
    Sandbox {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8799")]
        listen: std::net::SocketAddr,
        /// Seed this many merchant-channel Kravia invoices at start.
        #[arg(long, default_value_t = 1)]
        seed: u32,
        /// Sign callbacks with this secret.
        #[arg(long)]
        callback_secret: Option<String>,
        /// Send each seeded transaction's callback here, as Dintero does for
        /// `url.callback_url` (e.g. http://127.0.0.1:8080/dintero/callback of `postbud serve`).
        #[arg(long)]
        callback_url: Option<String>,
    },
    /// Measure: N invoices through capture, PDF fetch and a webhook delivery against the sandbox
    /// on loopback, beside the same HTTP requests without Postbud.
    Bench {
        /// How many invoices.
        #[arg(long, default_value_t = 2000)]
        invoices: usize,
        /// Concurrent jobs.
        #[arg(long, default_value_t = 16)]
        workers: usize,
        /// Where the benchmark's database goes.
        #[arg(long, default_value = "postbud-bench")]
        dir: PathBuf,
        /// Measure PostgreSQL instead: a server URL (postgres://user@host/database); the
        /// benchmark creates a database postbud_bench_<pid> there and drops it afterwards.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// Walk through the whole flow on embedded defaults: an in-process sandbox, a few
    /// invoices, capture, delivery, a fallback and a void.
    Demo {
        /// Where the demo writes its database and delivered files.
        #[arg(long, default_value = "postbud-demo")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum InvoiceCommand {
    /// Create a Kravia invoice with `invoice_channel: "merchant"` (`POST /v1/sessions/pay`)
    /// from an order file, then capture and deliver it.
    Create {
        /// JSON: `{"order": {...}, "payment": {...}}` or just the order.
        order: PathBuf,
    },
}

fn verdict(s: &str) -> Result<postbud::triage::Verdict, String> {
    postbud::triage::Verdict::parse(s).ok_or_else(|| {
        let names: Vec<&str> = postbud::triage::Verdict::ALL
            .iter()
            .map(|v| v.as_str())
            .collect();
        format!("`{s}` is not a verdict: one of {}", names.join(", "))
    })
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTBUD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    // Options a command ignores are refused, not silently dropped.
    let own_defaults = match &cli.command {
        Command::Demo { .. } => Some("demo"),
        Command::Sandbox { .. } => Some("sandbox"),
        Command::Bench { .. } => Some("bench"),
        _ => None,
    };
    if let (Some(command), Some(_)) = (own_defaults, config) {
        eprintln!(
            "postbud: `--config` is not used by `postbud {command}`: it runs on its own embedded configuration"
        );
        return ExitCode::from(commands::exit::CONFIG);
    }
    init_logging(
        if matches!(cli.command, Command::Serve | Command::Sandbox { .. }) {
            "info"
        } else {
            "warn"
        },
    );
    let result = match cli.command {
        Command::Serve => commands::serve(config).await,
        Command::Deliver {
            transaction_id,
            wait,
            json,
        } => commands::deliver(config, &transaction_id, wait, json).await,
        Command::Void {
            transaction_id,
            wait,
        } => commands::void(config, &transaction_id, wait).await,
        Command::Status {
            transaction_id: Some(id),
            json,
            ..
        } => commands::status_of(config, &id, json).await,
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
            if needs_attention && !verdict.contains(&postbud::triage::Verdict::NeedsAttention) {
                verdict.push(postbud::triage::Verdict::NeedsAttention);
            }
            let now = postbud::store::now_ms();
            let before = |d: Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let filter = postbud::triage::Filter {
                verdicts: verdict,
                channel,
                created_from: newer_than.map(before),
                created_before: older_than.map(before),
            };
            commands::status(config, &filter, limit as usize, json).await
        }
        Command::Retry {
            transaction_id,
            channel,
        } => commands::retry(config, &transaction_id, channel.as_deref()).await,
        Command::Invoice {
            command: InvoiceCommand::Create { order },
        } => commands::create_invoice(config, &order).await,
        Command::Channels => commands::channels(config),
        Command::Migrate => commands::migrate(config).await,
        Command::Prune { older_than } => commands::prune(config, older_than).await,
        Command::Reconcile => commands::reconcile(config).await,
        Command::Check => commands::check(config).await,
        Command::Sandbox {
            listen,
            seed,
            callback_secret,
            callback_url,
        } => commands::sandbox(listen, seed, callback_secret, callback_url).await,
        Command::Demo { dir } => demo::run(&dir).await,
        Command::Bench {
            invoices,
            workers,
            dir,
            postgres,
        } => bench::run(invoices, workers, &dir, postgres.as_deref()).await,
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("postbud: {}", terminal_safe(&failure.message));
            ExitCode::from(failure.code)
        }
    }
}
