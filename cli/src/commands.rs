//! One function per subcommand. Each returns the exit code, or a [`Failure`] to print.

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use postbud::{
    App, Registry, Settings,
    app::AppError,
    engine::{Outcome, Verdict},
    store::fmt_ms,
};

/// Exit codes.
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const SKIPPED: u8 = 3;
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

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        let code = match e {
            AppError::Config(_)
            | AppError::Registry(_)
            | AppError::InvalidId(_)
            | AppError::UnknownTransaction(_) => exit::CONFIG,
            AppError::Store(_) | AppError::Gateway(_) | AppError::Busy(_) => exit::UNAVAILABLE,
            AppError::VoidRefused(_) => exit::FAILED,
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

impl From<postbud::store::StoreError> for Failure {
    fn from(e: postbud::store::StoreError) -> Self {
        Self {
            message: e.to_string(),
            code: exit::UNAVAILABLE,
        }
    }
}

type CommandResult = Result<ExitCode, Failure>;

fn settings(config: Option<&Path>) -> Result<Settings, Failure> {
    Ok(Settings::load(config)?)
}

/// The channel kinds this binary links: the core's and each channel crate's, named explicitly
/// so the linker cannot drop them.
pub fn registry() -> Result<Registry, Failure> {
    let duplicate = |e: postbud::registry::DuplicateKind| Failure {
        message: e.to_string(),
        code: exit::CONFIG,
    };
    let mut registry = Registry::discover().map_err(duplicate)?;
    postbud_email::register(&mut registry).map_err(duplicate)?;
    postbud_webhook::register(&mut registry).map_err(duplicate)?;
    postbud_sms::register(&mut registry).map_err(duplicate)?;
    postbud_sftp::register(&mut registry).map_err(duplicate)?;
    Ok(registry)
}

pub async fn open(settings: &Settings) -> Result<App, Failure> {
    Ok(App::builder(settings).registry(registry()?).open().await?)
}

async fn app(config: Option<&Path>) -> Result<App, Failure> {
    open(&settings(config)?).await
}

/// The app for a command that acts on what the store holds: it never creates one.
async fn existing_app(config: Option<&Path>) -> Result<App, Failure> {
    let settings = settings(config)?;
    Ok(App::builder(&settings)
        .registry(registry()?)
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
        Verdict::Skipped => exit::SKIPPED,
        Verdict::Failed => exit::FAILED,
    })
}

pub async fn deliver(
    config: Option<&Path>,
    transaction_id: &str,
    wait: Duration,
    json: bool,
) -> CommandResult {
    let app = app(config).await?;
    // Bad credentials are the operator's to fix, not this transaction's failure: say so at once.
    app.probe_gateway().await.map_err(|e| Failure {
        message: format!("Dintero: {e}"),
        code: exit::UNAVAILABLE,
    })?;
    let bar = spinner(format!("capturing and delivering {transaction_id}"));
    let outcome = app.deliver_waiting(transaction_id, wait).await;
    bar.finish_and_clear();
    let outcome = outcome?;
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
            Verdict::Failed => say!("fix the cause, then `postbud retry {transaction_id}`"),
            _ => {}
        }
    }
    Ok(verdict_code(&outcome))
}

pub async fn void(config: Option<&Path>, transaction_id: &str, wait: Duration) -> CommandResult {
    let app = existing_app(config).await?;
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

pub async fn status(
    config: Option<&Path>,
    transaction_id: Option<&str>,
    json: bool,
) -> CommandResult {
    let settings = settings(config)?;
    if let Some(id) = transaction_id {
        let account = settings.dintero.as_ref().map(|d| d.account_id.as_str());
        postbud::dintero::transaction_id::check(id, account)?;
    }
    let url = settings.store_url();
    let store = postbud::store::open_existing(&url).await?;
    let shown = postbud::store::redact(&url);
    let Some(id) = transaction_id else {
        let totals = store.totals().await?;
        let recent = store.recent(20).await?;
        if json {
            let sweep = postbud::reconcile::last_sweep(store.as_ref()).await?;
            say!(
                "{}",
                serde_json::json!({"store": shown, "totals": totals, "recent": recent, "last_sweep": sweep})
            );
            return Ok(ExitCode::SUCCESS);
        }
        say!("store {shown}");
        if let Some(sweep) = postbud::reconcile::last_sweep(store.as_ref()).await? {
            say!(
                "last reconciliation sweep {}: found {}, new {}, submitted {}, voided {}{}",
                fmt_ms(sweep.at),
                sweep.found,
                sweep.new,
                sweep.submitted,
                sweep.voided,
                sweep
                    .error
                    .as_deref()
                    .map(|e| format!(", stopped early: {e}"))
                    .unwrap_or_default()
            );
        }
        say!(
            "dispatches {}  queued {}  in flight {}  delivered {}  failed {}  dead {}  skipped {}",
            totals.dispatches,
            totals.queued,
            totals.in_flight,
            totals.delivered,
            totals.failed,
            totals.dead,
            totals.skipped
        );
        for d in recent {
            say!(
                "  {:<40} {:<10} {:<16} {}",
                d.transaction_id,
                d.stage,
                d.invoice_number.as_deref().unwrap_or("-"),
                d.reason.as_deref().unwrap_or("")
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(dispatch) = store.dispatch(id).await? else {
        return Err(Failure {
            message: format!("no dispatch for transaction {id} in {}", shown),
            code: exit::FAILED,
        });
    };
    let jobs = store.jobs(id).await?;
    let history = store.history(id).await?;
    if json {
        say!(
            "{}",
            serde_json::json!({"dispatch": dispatch, "jobs": jobs, "history": history})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = Outcome {
        transaction_id: id.to_owned(),
        newly_queued: true,
        dispatch: Some(dispatch),
        jobs,
    };
    say!("store {shown}");
    say!("{outcome}");
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

pub async fn retry(
    config: Option<&Path>,
    transaction_id: &str,
    channel: Option<&str>,
) -> CommandResult {
    let app = existing_app(config).await?;
    let transaction_id = app.transaction_id(transaction_id)?;
    let requeued = app.store().retry(transaction_id, channel).await?;
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

pub async fn create_invoice(config: Option<&Path>, order: &Path) -> CommandResult {
    let text = std::fs::read_to_string(order).map_err(|e| Failure {
        message: format!("read {}: {e}", order.display()),
        code: exit::CONFIG,
    })?;
    let order: serde_json::Value = serde_json::from_str(&text).map_err(|e| Failure {
        message: format!("{} is not JSON: {e}", order.display()),
        code: exit::CONFIG,
    })?;
    let app = app(config).await?;
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

pub fn channels(config: Option<&Path>) -> CommandResult {
    let registry = registry()?;
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

pub async fn check(config: Option<&Path>) -> CommandResult {
    let settings = settings(config)?;
    let app = open(&settings).await?;
    say!(
        "✓ configuration{} is valid, its channels build",
        settings
            .file()
            .map(|f| format!(" {}", f.display()))
            .unwrap_or_default()
    );
    let mut ok = true;
    let dintero = settings.dintero.as_ref();
    if dintero.is_some_and(|d| d.callback_secret.is_none() && d.webhook_secret.is_none()) {
        say!(
            "! neither dintero.callback_secret nor dintero.webhook_secret is set: callbacks are only hints, checked at Dintero at a bounded rate; set one before going live"
        );
    }
    match app.probe_gateway().await {
        Ok(what) => say!("✓ dintero: {what}"),
        Err(e) => {
            ok = false;
            say!("✗ dintero: {e}");
        }
    }
    for (name, result) in app.check().await {
        match result {
            Ok(what) => say!("✓ channel {name}: {what}"),
            Err(e) => {
                ok = false;
                say!("✗ channel {name}: {e}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILED)
    })
}

pub async fn serve(config: Option<&Path>) -> CommandResult {
    let app = Arc::new(app(config).await?);
    let listen = app.settings().server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure {
            message: format!("server.listen {listen}: {e}"),
            code: exit::CONFIG,
        })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn({
        let app = Arc::clone(&app);
        let stopped = stopped.clone();
        async move { app.run_workers(stopped).await }
    });
    let reconciler = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.run_reconciler(stopped).await }
    });
    tracing::info!(%listen, callback = %app.settings().server.callback_path, "serving");
    // On SIGTERM the workers stop claiming at once (attempts in flight finish) while the server
    // answers what it is answering, for a bounded time.
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new work; finishing the attempts in flight");
        let _ = stop.send(true);
    };
    postbud::server::serve(
        listener,
        postbud::server::router(Arc::clone(&app)),
        shutdown,
        Duration::from_secs(10),
    )
    .await;
    let _ = workers.await;
    let _ = reconciler.await;
    Ok(ExitCode::SUCCESS)
}

pub async fn reconcile(config: Option<&Path>) -> CommandResult {
    let app = app(config).await?;
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

async fn shutdown_signal() {
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
    let url = settings.store_url();
    postbud::store::open(&url).await?;
    say!(
        "the store at {} is migrated to the current schema",
        postbud::store::redact(&url)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn sandbox(
    listen: std::net::SocketAddr,
    seed: u32,
    callback_secret: Option<String>,
    callback_url: Option<String>,
) -> CommandResult {
    let config = postbud_sandbox::SandboxConfig {
        callback_secret,
        ..Default::default()
    };
    let sandbox = postbud_sandbox::Sandbox::start_on(listen, config)
        .await
        .map_err(|e| Failure {
            message: format!("sandbox on {listen}: {e}"),
            code: exit::CONFIG,
        })?;
    let c = sandbox.config();
    say!("Dintero sandbox on {}\n", sandbox.url());
    say!(
        "[dintero]\naccount_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\napi_url = \"{}\"\nauth_url = \"{}\"\n",
        c.account_id,
        c.client_id,
        c.client_secret,
        sandbox.api_url(),
        sandbox.api_url()
    );
    for _ in 0..seed {
        let seed = postbud_sandbox::Seed {
            callback_url: callback_url.clone(),
            ..Default::default()
        };
        say!("seeded transaction {}", sandbox.seed(seed));
    }
    say!(
        "\nseed more: curl -X POST {}/sandbox/transactions -H 'content-type: application/json' -d '{{}}'",
        sandbox.url()
    );
    say!("counters:  curl {}/sandbox/stats", sandbox.url());
    shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}
