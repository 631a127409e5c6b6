//! The command line: every subcommand, its options and the exit-code table `--help` prints.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

/// The exit status of every command.
pub(crate) const EXIT_CODES: &str = "Exit status, for every command:
  0   done
  1   failed: a delivery, capture, void or probe failed for good; a person must act
  2   bad configuration or input: the file, a key, a transaction id Dintero does not know,
      no store where store.url points, Dintero credentials Dintero refuses, a scope the
      Dintero API client lacks
  3   not ours: a transaction Postbud does not deliver, or one this store has not seen
  4   unavailable: the store or Dintero could not be reached; try again
  75  pending: work remains queued for retry; `postbud serve` finishes it";

/// Deliver Dintero Kravia invoices yourself: capture, then deliver through your own channels.
#[derive(Debug, Parser)]
#[command(name = "postbud", version, about, long_about = None, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// Configuration file (default: POSTBUD_CONFIG, else embedded defaults). POSTBUD_* variables
    /// override it, with `__` for nesting: POSTBUD_DINTERO__CLIENT_SECRET.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// The merchant's own system created this invoice with `POST /v1/sessions/pay` and
        /// `invoice_channel: "merchant"`: record that (Dintero does not echo it back) and
        /// deliver it.
        #[arg(long, conflicts_with = "adopt_capture")]
        merchant_initiated: bool,
        /// Deliver an invoice whose collection was started elsewhere (Dintero shows a capture
        /// Postbud did not make), once you know the customer does not have it.
        #[arg(long)]
        adopt_capture: bool,
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
        verdict: Vec<postbud::Verdict>,
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
        /// Prune even when `--older-than` is shorter than `server.link_ttl`: the invoice links
        /// already sent to customers for those invoices stop working.
        #[arg(long)]
        force: bool,
    },
    /// Merchant-initiated invoices.
    Invoice {
        #[command(subcommand)]
        command: InvoiceCommand,
    },
    /// The operator console (`[console]`).
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// Create or upgrade the store's schema (also done on start).
    Migrate,
    /// List the channel kinds this binary knows, and the configured instances.
    Channels {
        /// Print every key of every kind's table instead: its type, default and meaning, read
        /// from the kinds' typed configuration.
        #[arg(long)]
        keys: bool,
        /// With --keys: the reference as Markdown (what docs/keys.md holds).
        #[arg(long, requires = "keys", conflicts_with = "json")]
        markdown: bool,
        /// With --keys: the keys as JSON.
        #[arg(long, requires = "keys")]
        json: bool,
        /// With --keys: a commented `[channels.<kind>-example]` table per kind, every key with
        /// its default and meaning (what config/channels.toml holds).
        #[arg(long, requires = "keys", conflicts_with_all = ["json", "markdown"])]
        toml: bool,
    },
    /// Validate the configuration, check the Dintero credentials, probe every channel.
    Check,
    #[cfg(feature = "dev")]
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
        /// Token lifetime in seconds (`expires_in`); a token is refused with a 401 after it.
        #[arg(long, default_value_t = 3600)]
        token_ttl: u64,
    },
    #[cfg(feature = "dev")]
    /// Measure: N invoices through capture, PDF fetch and a webhook delivery against the sandbox
    /// on loopback, beside the same HTTP requests without Postbud.
    Bench(crate::dev::bench::Options),
    #[cfg(feature = "dev")]
    /// Walk through the whole flow on embedded defaults: an in-process sandbox, a few
    /// invoices, capture, delivery, a fallback and a void.
    Demo {
        /// Where the demo writes its database and delivered files.
        #[arg(long, default_value = "postbud-demo")]
        dir: PathBuf,
        /// Also log in to the console in headless chromium and save PNGs of the invoice list
        /// and of one invoice's page into this directory (console-list.png,
        /// console-invoice.png).
        #[cfg(feature = "screenshots")]
        #[arg(long, value_name = "DIR")]
        screenshots: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConsoleCommand {
    /// Read one password from standard input (one line; nothing is echoed or printed but the
    /// hash) and print its argon2id PHC string for `[[console.users]] password_hash`.
    HashPassword,
}

#[derive(Debug, Subcommand)]
pub(crate) enum InvoiceCommand {
    /// Create a Kravia invoice with `invoice_channel: "merchant"` (`POST /v1/sessions/pay`)
    /// from an order file, then capture and deliver it.
    Create {
        /// JSON: `{"order": {...}, "payment": {...}}` or just the order.
        order: PathBuf,
    },
}

pub(crate) fn verdict(s: &str) -> Result<postbud::Verdict, String> {
    postbud::Verdict::parse(s).ok_or_else(|| {
        let names: Vec<&str> = postbud::Verdict::ALL.iter().map(|v| v.as_str()).collect();
        format!("`{s}` is not a verdict: one of {}", names.join(", "))
    })
}

pub(crate) fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}
