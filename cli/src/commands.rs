//! One function per subcommand. Each returns the exit code, or a [`Failure`] to print.

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use postbud::{App, AppError, Outcome, Records, Registry, Settings, Verdict, fmt_ms};

/// Exit codes, one table for every command (`postbud --help` prints it).
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const CONFIG: u8 = 2;
    /// Not ours: a transaction Postbud does not deliver (skipped), or one it has not seen.
    pub const NOT_OURS: u8 = 3;
    pub const UNAVAILABLE: u8 = 4;
    /// EX_TEMPFAIL: work remains queued for retry.
    pub const PENDING: u8 = 75;
}

/// A command that could not run, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<postbud::ConfigError> for Failure {
    fn from(e: postbud::ConfigError) -> Self {
        Self {
            message: e.to_string(),
            code: exit::CONFIG,
        }
    }
}

/// A store error the configuration must fix (exit 2): no store where it says, a URL or file
/// that cannot be a store, a database that refuses the user.
fn store_misconfigured(e: &postbud::StoreError) -> bool {
    use postbud::StoreErrorKind as Kind;
    matches!(e.kind(), Kind::Missing | Kind::Misconfigured | Kind::Denied)
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        let code = match &e {
            AppError::Store(e) if store_misconfigured(e) => exit::CONFIG,
            AppError::Config(_)
            | AppError::Registry(_)
            | AppError::InvalidId(_)
            | AppError::UnknownTransaction(_) => exit::CONFIG,
            AppError::NotMerchantInitiated(_) | AppError::NothingToAdopt(_) => exit::NOT_OURS,
            AppError::Store(_) | AppError::Dintero(_) | AppError::Busy(_) => exit::UNAVAILABLE,
            // An error this binary does not know yet: failed, not "try again later".
            AppError::VoidRefused(_) | _ => exit::FAILED,
        };
        Self {
            message: e.to_string(),
            code,
        }
    }
}

impl From<postbud::dintero::transaction_id::InvalidTransactionId> for Failure {
    fn from(e: postbud::dintero::transaction_id::InvalidTransactionId) -> Self {
        Self {
            message: e.to_string(),
            code: exit::CONFIG,
        }
    }
}

impl From<postbud::StoreError> for Failure {
    fn from(e: postbud::StoreError) -> Self {
        let code = match store_misconfigured(&e) {
            true => exit::CONFIG,
            false => exit::UNAVAILABLE,
        };
        Self {
            message: e.to_string(),
            code,
        }
    }
}

pub type CommandResult = Result<ExitCode, Failure>;

/// Whether Dintero refused the credentials (401) or a scope (403): the configuration's to fix,
/// not "try again later".
fn refused_credentials(e: &postbud::dintero::DinteroError) -> bool {
    e.kind() == postbud::ErrorKind::Unauthorized
}

/// The exit status for a failed probe: refused credentials are the configuration's to fix (2),
/// a permanent refusal a failure (1), anything else unavailable for now (4).
fn probe_failure(kind: postbud::ErrorKind, retry_class: postbud::RetryClass) -> u8 {
    match (kind, retry_class) {
        (postbud::ErrorKind::Unauthorized, _) => exit::CONFIG,
        (_, postbud::RetryClass::Permanent) => exit::FAILED,
        (_, postbud::RetryClass::Temporary) => exit::UNAVAILABLE,
    }
}

fn dintero_failure(e: postbud::dintero::DinteroError) -> Failure {
    let code = if refused_credentials(&e) {
        exit::CONFIG
    } else {
        exit::UNAVAILABLE
    };
    Failure {
        message: format!("Dintero: {e}"),
        code,
    }
}

fn settings(config: Option<&Path>) -> Result<Settings, Failure> {
    Ok(Settings::load(config)?)
}

/// The app with the channel kinds of `registry`.
pub async fn open(settings: &Settings, registry: &Registry) -> Result<App, Failure> {
    Ok(App::builder(settings)
        .registry(registry.clone())
        .open()
        .await?)
}

async fn app(config: Option<&Path>, registry: &Registry) -> Result<App, Failure> {
    open(&settings(config)?, registry).await
}

/// The app for a command that acts on what the store holds: it never creates one.
async fn existing_app(config: Option<&Path>, registry: &Registry) -> Result<App, Failure> {
    existing_app_of(&settings(config)?, registry).await
}

async fn existing_app_of(settings: &Settings, registry: &Registry) -> Result<App, Failure> {
    Ok(App::builder(settings)
        .registry(registry.clone())
        .existing_store()
        .open()
        .await?)
}

fn spinner(message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn verdict_code(outcome: &Outcome) -> ExitCode {
    ExitCode::from(match outcome.verdict() {
        Verdict::Delivered | Verdict::Voided => 0,
        Verdict::Pending => exit::PENDING,
        Verdict::Skipped => exit::NOT_OURS,
        // A verdict this binary does not know yet is treated as the worst it knows.
        Verdict::Failed | Verdict::NeedsAttention | _ => exit::FAILED,
    })
}

/// What `deliver` is told about the transaction besides its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverAs {
    /// Nothing: eligibility decides.
    Usual,
    /// `--merchant-initiated`.
    MerchantInitiated,
    /// `--adopt-capture`.
    AdoptingCapture,
}

pub async fn deliver(
    config: Option<&Path>,
    registry: &Registry,
    transaction_id: &str,
    wait: Duration,
    json: bool,
    how: DeliverAs,
) -> CommandResult {
    let app = app(config, registry).await?;
    // Bad credentials are the operator's to fix, not this transaction's failure: say so at once.
    app.probe_dintero().await.map_err(dintero_failure)?;
    let bar = spinner(format!("capturing and delivering {transaction_id}"));
    let outcome = match how {
        DeliverAs::Usual => app.deliver_waiting(transaction_id, wait).await,
        DeliverAs::MerchantInitiated => app.declare_merchant_initiated(transaction_id, wait).await,
        DeliverAs::AdoptingCapture => app.adopt_capture(transaction_id, wait).await,
    };
    bar.finish_and_clear();
    let outcome = outcome?;
    // A channel that refused its credentials stopped the delivery for the operator: the
    // configuration's to fix, like Dintero's credentials.
    let refused = outcome.jobs.iter().find_map(|job| {
        job.last_error
            .as_deref()
            .filter(|e| e.starts_with(postbud::credentials::CREDENTIALS_REFUSED))
            .map(|e| format!("channel {}: {e}", job.channel.as_deref().unwrap_or("?")))
    });
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else {
        say!("{outcome}");
        match outcome.verdict() {
            Verdict::Pending => say!(
                "work remains queued; `postbud serve` finishes it, `postbud status {transaction_id}` shows it"
            ),
            Verdict::Failed | Verdict::NeedsAttention if refused.is_none() => {
                say!("fix the cause, then `postbud retry {transaction_id}`")
            }
            _ => {}
        }
    }
    if let Some(refused) = refused {
        return Err(Failure {
            message: refused,
            code: exit::CONFIG,
        });
    }
    Ok(verdict_code(&outcome))
}

pub async fn void(
    config: Option<&Path>,
    registry: &Registry,
    transaction_id: &str,
    wait: Duration,
) -> CommandResult {
    let app = existing_app(config, registry).await?;
    let report = app.void(transaction_id, wait).await?;
    if report.pending {
        say!(
            "Dintero accepted the void of {transaction_id} (202) but did not confirm it within {}; `postbud serve` finishes it. Until Dintero confirms, nothing is cancelled and no notice is sent.",
            humantime::format_duration(wait)
        );
        say!("{}", report.outcome);
        return Ok(ExitCode::from(exit::PENDING));
    }
    if report.already_voided {
        say!(
            "{transaction_id} was already voided at Dintero (status {})",
            report.status
        );
    } else {
        say!(
            "{transaction_id} voided at Dintero (status {})",
            report.status
        );
    }
    say!("{}", report.outcome);
    Ok(ExitCode::SUCCESS)
}

/// The store a command that reads it opens: never created here.
async fn records(settings: &Settings) -> Result<(Records, String), Failure> {
    let records = Records::open(settings).await?;
    let shown = records.location().to_owned();
    Ok((records, shown))
}

/// `postbud status`: the verdict counts and the invoices `filter` picks.
pub async fn status(
    config: Option<&Path>,
    filter: &postbud::Filter,
    limit: usize,
    json: bool,
) -> CommandResult {
    let settings = settings(config)?;
    let (records, shown) = records(&settings).await?;
    let counts = records.verdicts().await?;
    let (listed, more) = records.invoices(filter, limit).await?;
    let sweep = records.last_sweep().await?;
    if json {
        let counts: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(v, n)| (v.as_str().to_owned(), (*n).into()))
            .collect();
        let invoices: Vec<serde_json::Value> = listed
            .iter()
            .map(|l| {
                serde_json::json!({
                    "transaction_id": l.dispatch.transaction_id,
                    "verdict": l.assessment.verdict,
                    "reason": l.assessment.reason,
                    "invoice_number": l.dispatch.invoice_number,
                    "stage": l.dispatch.stage,
                    "created_at": l.dispatch.created_at,
                    "updated_at": l.dispatch.updated_at,
                    "jobs": l.jobs,
                })
            })
            .collect();
        say!(
            "{}",
            serde_json::json!({"store": shown, "counts": counts, "invoices": invoices, "more": more, "last_sweep": sweep})
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!("store {shown}");
    if let Some(sweep) = sweep {
        say!(
            "last reconciliation sweep {}: found {}, new {}, submitted {}, captured elsewhere {}, voided {}{}",
            fmt_ms(sweep.at),
            sweep.found,
            sweep.new,
            sweep.submitted,
            sweep.captured_elsewhere,
            sweep.voided,
            sweep
                .error
                .as_deref()
                .map(|e| format!(", stopped early: {e}"))
                .unwrap_or_default()
        );
    }
    let counted: Vec<String> = postbud::Verdict::ALL
        .iter()
        .map(|v| format!("{v} {}", counts.get(v).copied().unwrap_or(0)))
        .collect();
    say!("invoices: {}", counted.join("  "));
    let verdicts: Vec<&str> = filter.verdicts.iter().map(|v| v.as_str()).collect();
    let heading = match verdicts.as_slice() {
        [] => "invoices".to_owned(),
        names => format!("invoices with verdict {}", names.join(" or ")),
    };
    if listed.is_empty() {
        say!("no {heading}{}", narrowed(filter));
        return Ok(ExitCode::SUCCESS);
    }
    say!("{heading}{}, newest first:", narrowed(filter));
    let now = postbud::now_ms();
    for l in &listed {
        say!(
            "  {:<34} {:<15} {:<16} {:>6}  {}",
            l.dispatch.transaction_id,
            l.assessment.verdict,
            l.dispatch.invoice_number.as_deref().unwrap_or("-"),
            age(now - l.dispatch.created_at),
            l.assessment.reason
        );
    }
    if more {
        say!(
            "  … more match: --limit {} shows more",
            limit.saturating_mul(2).max(1)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The store-side conditions of a status listing, as words after its heading.
fn narrowed(filter: &postbud::Filter) -> String {
    let mut parts = Vec::new();
    if let Some(channel) = &filter.channel {
        parts.push(format!("on channel {channel}"));
    }
    if let Some(at) = filter.created_from {
        parts.push(format!("first seen since {}", fmt_ms(at)));
    }
    if let Some(at) = filter.created_before {
        parts.push(format!("first seen before {}", fmt_ms(at)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `ms` as one coarse unit: `42s`, `17m`, `3h`, `5d`.
fn age(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `postbud status <transaction>`: its verdict, jobs and history.
pub async fn status_of(
    config: Option<&Path>,
    registry: &Registry,
    transaction_id: &str,
    json: bool,
) -> CommandResult {
    let settings = settings(config)?;
    let account = settings.dintero.as_ref().map(|d| d.account_id.as_str());
    let id = postbud::dintero::transaction_id::check(transaction_id, account)?;
    let (store, shown) = records(&settings).await?;
    let Some(outcome) = store.outcome(id).await? else {
        return Err(Failure {
            message: format!(
                "{id} is not in the store {shown}: Postbud has not seen it (`postbud deliver {id}` submits it)"
            ),
            code: exit::NOT_OURS,
        });
    };
    let history = store.history(id).await?;
    let evidence = store.evidence(id).await?;
    let meanings = delivered_means(registry, &settings, &outcome);
    if json {
        let channels: serde_json::Map<String, serde_json::Value> = meanings
            .iter()
            .map(|(name, meaning)| (name.clone(), meaning.clone()))
            .collect();
        say!(
            "{}",
            serde_json::json!({"store": shown, "assessment": outcome.assessment(), "dispatch": outcome.dispatch, "jobs": outcome.jobs, "evidence": evidence, "channels": channels, "history": history})
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!("store {shown}");
    say!("{outcome}");
    if !meanings.is_empty() {
        say!("what `done` means, by channel:");
        for (name, meaning) in &meanings {
            match (
                meaning["delivered_means"].as_str(),
                meaning["later"].as_array(),
            ) {
                (Some(means), Some(later)) if !later.is_empty() => say!(
                    "  {name}: {means}; it may report later: {}",
                    later
                        .iter()
                        .filter_map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (Some(means), _) => say!("  {name}: {means}; nothing is reported later"),
                _ => say!(
                    "  {name}: cannot tell ({})",
                    meaning["error"].as_str().unwrap_or("")
                ),
            }
        }
    }
    say!("history:");
    for entry in history {
        say!(
            "  {}  {:<18} {}",
            fmt_ms(entry.at),
            entry.event,
            entry.detail
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a `done` delivery of each channel the invoice used means (the channel's
/// [`postbud::EvidenceOffer`]), from the channels as configured now.
fn delivered_means(
    registry: &Registry,
    settings: &Settings,
    outcome: &postbud::Outcome,
) -> Vec<(String, serde_json::Value)> {
    let used: std::collections::BTreeSet<&str> = outcome
        .jobs
        .iter()
        .filter_map(|j| j.channel.as_deref())
        .collect();
    if used.is_empty() {
        return Vec::new();
    }
    let built = registry.build_all(settings);
    used.into_iter()
        .map(|name| {
            let meaning = match &built {
                Ok(channels) => match channels.get(name) {
                    Some(channel) => {
                        let offer = channel.evidence();
                        serde_json::json!({
                            "delivered_means": offer.handed_over,
                            "later": offer.later.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                        })
                    }
                    None => serde_json::json!({"error": "no longer configured"}),
                },
                Err(e) => serde_json::json!({"error": e.to_string()}),
            };
            (name.to_owned(), meaning)
        })
        .collect()
}

pub async fn retry(
    config: Option<&Path>,
    registry: &Registry,
    transaction_id: &str,
    channel: Option<&str>,
) -> CommandResult {
    let app = existing_app(config, registry).await?;
    let transaction_id = app.transaction_id(transaction_id)?;
    if app.dispatch(transaction_id).await?.is_none() {
        return Err(Failure {
            message: format!(
                "{transaction_id} is not in this store: nothing to retry (`postbud deliver {transaction_id}` submits it)"
            ),
            code: exit::NOT_OURS,
        });
    }
    let requeued = app.retry(transaction_id, channel).await?;
    if requeued == 0 {
        say!(
            "nothing to retry for {transaction_id}{}",
            channel
                .map(|c| format!(" on channel {c}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!("{requeued} job(s) requeued; running them now");
    let outcome = app.deliver_now(transaction_id).await?;
    say!("{outcome}");
    Ok(verdict_code(&outcome))
}

/// `postbud console hash-password`: one line of standard input (its line ending taken off) to
/// an argon2id PHC string on standard output. The password is never echoed: when standard
/// input is a terminal, the terminal's echo is the shell's to turn off (`read -s`), so the
/// command is meant to be fed by a pipe or a file.
pub fn hash_password() -> CommandResult {
    use std::io::BufRead as _;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure {
            message: format!("reading the password from standard input: {e}"),
            code: exit::CONFIG,
        })?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(Failure {
            message: "no password on standard input (one line, e.g. `read -rs p; printf '%s\\n' \"$p\" | postbud console hash-password`)".into(),
            code: exit::CONFIG,
        });
    }
    let hash = postbud::password::hash(password).map_err(|e| Failure {
        message: e.to_string(),
        code: exit::FAILED,
    })?;
    say!("{hash}");
    Ok(ExitCode::SUCCESS)
}

pub async fn create_invoice(
    config: Option<&Path>,
    registry: &Registry,
    order: &Path,
) -> CommandResult {
    let text = std::fs::read_to_string(order).map_err(|e| Failure {
        message: format!("read {}: {e}", order.display()),
        code: exit::CONFIG,
    })?;
    let order: serde_json::Value = serde_json::from_str(&text).map_err(|e| Failure {
        message: format!("{} is not JSON: {e}", order.display()),
        code: exit::CONFIG,
    })?;
    let app = app(config, registry).await?;
    let created = app.create_invoice(&order).await?;
    let tx = &created.transaction;
    let what = if created.existing {
        "Dintero already has an invoice for this merchant_reference; continuing with"
    } else {
        "created"
    };
    say!(
        "{what} {} ({}, {} {} minor units)",
        tx.id,
        tx.payment_product_type,
        tx.amount,
        tx.currency
    );
    let outcome = app.deliver_now(&tx.id).await?;
    say!("{outcome}");
    Ok(verdict_code(&outcome))
}

pub fn channels(config: Option<&Path>, registry: &Registry) -> CommandResult {
    say!("channel kinds:");
    for factory in registry.factories() {
        say!(
            "  {:<12} {:<24} {}",
            factory.kind,
            factory.crate_name,
            factory.description
        );
    }
    if let Ok(settings) = Settings::load(config)
        && !settings.channels.is_empty()
    {
        say!("configured instances:");
        for (name, table) in &settings.channels {
            say!("  {name:<20} kind {}", table.kind);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `postbud channels --keys`: the key reference of every linked kind.
pub fn channel_keys(registry: &Registry, format: crate::key_reference::Format) -> CommandResult {
    let reference = crate::key_reference::render(registry.factories(), format);
    say!("{}", reference.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// `postbud check`: the configuration, what it cannot deliver, the store, Dintero and every
/// channel, probed without delivering and without changing anything on disk.
pub async fn check(config: Option<&Path>, registry: &Registry) -> CommandResult {
    let settings = settings(config)?;
    let channels = registry.build_all(&settings)?;
    say!(
        "✓ configuration{} is valid, its channels build",
        settings
            .file()
            .map(|f| format!(" {}", f.display()))
            .unwrap_or_default()
    );
    // The worst finding decides the exit status: a configuration that delivers nothing (2),
    // a probe refused for good (1), something unreachable now (4).
    let mut code = 0u8;
    let mut worst = |found: u8| {
        let rank = |c: u8| match c {
            exit::CONFIG => 3,
            exit::FAILED => 2,
            exit::UNAVAILABLE => 1,
            _ => 0,
        };
        if rank(found) > rank(code) {
            code = found;
        }
    };
    for dead in settings.dead_ends() {
        worst(exit::CONFIG);
        say!("✗ {dead}");
    }
    for warning in settings.warnings() {
        say!("! {warning}");
    }
    let dintero = settings.require_dintero()?;
    if dintero.callback_secret.is_none() && dintero.webhook_secret.is_none() {
        say!(
            "! neither dintero.callback_secret nor dintero.webhook_secret is set: callbacks are only hints, checked at Dintero at a bounded rate; set one before going live"
        );
    }
    let url = settings.store_url();
    match postbud::probe_store(&url).await {
        Ok(what) => {
            // A clock that differs from the database's is said on its own line.
            let (what, warning) = match what.split_once("; ! ") {
                Some((what, warning)) => (what.to_owned(), Some(warning.to_owned())),
                None => (what, None),
            };
            say!("✓ store {}: {what}", postbud::http::redact_url(&url));
            if let Some(warning) = warning {
                say!("! {warning}");
            }
        }
        Err(e) => {
            worst(match store_misconfigured(&e) {
                true => exit::CONFIG,
                false => exit::UNAVAILABLE,
            });
            say!("✗ store {}: {e}", postbud::http::redact_url(&url));
        }
    }
    let gateway = postbud::dintero::DinteroClient::new(dintero.clone()).map_err(|e| Failure {
        message: format!("dintero: {e}"),
        code: exit::CONFIG,
    })?;
    let probed = match postbud::dintero::DinteroApi::probe(&gateway).await {
        Ok(what) => postbud::dintero::scopes::check(&gateway)
            .await
            .map(|scopes| format!("{what}; {scopes}")),
        Err(e) => Err(e),
    };
    match probed {
        Ok(what) => say!("✓ dintero: {what}"),
        Err(e) => {
            worst(probe_failure(e.kind(), e.retry_class()));
            say!("✗ dintero: {e}");
        }
    }
    for (name, channel) in &channels {
        match channel.check().await {
            Ok(what) => say!("✓ channel {name}: {what}"),
            Err(e) => {
                worst(probe_failure(e.kind(), e.retry_class()));
                say!("✗ channel {name}: {e}");
                if e.kind() == postbud::ErrorKind::Unauthorized {
                    say!("  fix {}", postbud::credentials::key_to_fix(name, &e));
                }
            }
        }
    }
    Ok(ExitCode::from(code))
}

pub async fn serve(config: Option<&Path>, registry: &Registry) -> CommandResult {
    let app = Arc::new(app(config, registry).await?);
    // Credentials or a scope Dintero refuses would fail invoice after invoice: refuse to start
    // instead. Dintero out of reach is no reason not to start: callbacks are still stored, work
    // waits.
    match app.probe_dintero().await {
        Ok(what) => tracing::info!(%what, "Dintero"),
        Err(e) if refused_credentials(&e) => return Err(dintero_failure(e)),
        Err(e) => tracing::warn!(error = %e, "Dintero cannot be checked now; starting anyway"),
    }
    if let Some(clock) = app.clock_report() {
        match clock.strip_prefix("! ") {
            Some(warning) => tracing::warn!("{warning}"),
            None => tracing::info!("{clock}"),
        }
    }
    let listen = app.settings().server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure {
            message: format!("server.listen {listen}: {e}"),
            code: exit::CONFIG,
        })?;
    // The call a merchant service makes: workers, reconcile sweep, retention and the routes,
    // drained on SIGTERM or Ctrl-C.
    let routes = postbud::server::router(Arc::clone(&app));
    app.serve(listener, routes, shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

pub async fn prune(
    config: Option<&Path>,
    registry: &Registry,
    older_than: Option<Duration>,
    force: bool,
) -> CommandResult {
    let settings = settings(config)?;
    // A signed invoice link is served from the PDF in the store: pruning an invoice younger
    // than the links' lifetime breaks links customers hold, with nothing to tell them. The
    // configuration refuses such a `store.retain` for the same reason; a one-off
    // `--older-than` is refused the same way unless the operator says they mean it.
    if let Some(older_than) = older_than
        && settings.server.public_url.is_some()
        && older_than < settings.server.link_ttl
        && !force
    {
        return Err(Failure {
            message: format!(
                "--older-than {} is shorter than server.link_ttl ({}, from {}): the signed invoice links already sent to customers for the invoices it prunes would stop working before they expire; prune with --older-than {} or more, or add --force to break those links",
                humantime::format_duration(older_than),
                humantime::format_duration(settings.server.link_ttl),
                settings.source_of("server.link_ttl"),
                humantime::format_duration(settings.server.link_ttl),
            ),
            code: exit::CONFIG,
        });
    }
    let app = existing_app_of(&settings, registry).await?;
    let older_than = older_than.unwrap_or(app.settings().store.retain);
    let bar = spinner(format!(
        "pruning invoices finished more than {} ago",
        humantime::format_duration(older_than)
    ));
    let pruned = app.prune(older_than).await;
    bar.finish_and_clear();
    let pruned = pruned?;
    say!(
        "pruned {pruned} finished invoice(s) unchanged for {}: their PDFs and personal data are deleted from the store, which keeps their ids, states, dates and the PDF's SHA-256",
        humantime::format_duration(older_than)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn reconcile(config: Option<&Path>, registry: &Registry) -> CommandResult {
    let app = app(config, registry).await?;
    let bar = spinner("listing the account's authorized Kravia transactions at Dintero".into());
    let sweep = app.reconcile().await;
    bar.finish_and_clear();
    let sweep = sweep?;
    say!(
        "found {} authorized Kravia transaction(s) in {} page(s); {} new to this store, {} submitted; {} voided at Dintero stopped",
        sweep.found,
        sweep.pages,
        sweep.new,
        sweep.submitted,
        sweep.voided
    );
    if sweep.captured_elsewhere > 0 {
        say!(
            "{} unknown here but captured already (another deployment with these credentials, or a store restored from an old backup?): left alone; whoever captured them delivers them",
            sweep.captured_elsewhere
        );
    }
    if sweep.submitted > 0 {
        say!("`postbud serve` captures and delivers what was submitted; `postbud status` shows it");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn migrate(config: Option<&Path>) -> CommandResult {
    let settings = settings(config)?;
    // Opening a store applies the migrations it does not have yet.
    let records = Records::migrate(&settings).await?;
    say!(
        "the store at {} is migrated to the current schema",
        records.location()
    );
    Ok(ExitCode::SUCCESS)
}
