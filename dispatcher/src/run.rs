//! Running a deployment: the workers, the reconcile sweep and the retention pass (and the
//! server's routes, when Postbud listens itself) until one shutdown signal, then a graceful
//! drain. `postbud serve` is [`App::serve`]; a merchant service calls the same.

use std::{future::Future, sync::Arc};

use tokio::{sync::watch, task::JoinHandle};

use crate::App;

/// How long open connections may take to finish once the shutdown signal came, before
/// [`App::serve`] closes them: one half-sent request cannot keep the process alive.
#[cfg(feature = "server")]
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The background jobs of a deployment, started together and stopped by one signal.
struct Jobs {
    stop: watch::Sender<bool>,
    tasks: [(&'static str, JoinHandle<()>); 4],
}

impl Jobs {
    /// Starts the workers, the reconcile sweep (every `dintero.reconcile_every`; none when it
    /// is zero), the daily retention pass and the channels' evidence sources (bounce
    /// mailboxes), each on a task of its own.
    fn start(app: &Arc<App>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let workers = tokio::spawn({
            let (app, stopped) = (Arc::clone(app), stopped.clone());
            async move { app.run_workers(stopped).await }
        });
        let sweep = tokio::spawn({
            let (app, stopped) = (Arc::clone(app), stopped.clone());
            async move { app.run_reconciler(stopped).await }
        });
        let retention = tokio::spawn({
            let (app, stopped) = (Arc::clone(app), stopped.clone());
            async move { app.run_retention(stopped).await }
        });
        let evidence = tokio::spawn({
            let app = Arc::clone(app);
            async move { app.run_evidence_sources(stopped).await }
        });
        Self {
            stop,
            tasks: [
                ("workers", workers),
                ("reconcile sweep", sweep),
                ("retention", retention),
                ("evidence sources", evidence),
            ],
        }
    }

    /// No new work from now on: the workers stop claiming, attempts in flight go on.
    fn stop(&self) {
        tracing::info!("shutting down: no new work; finishing the attempts in flight");
        let _ = self.stop.send(true);
    }

    /// Waits for the attempts in flight to finish and each job to end.
    async fn finished(self) {
        for (job, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(job, error = %e, "ended abnormally");
            }
        }
    }
}

impl App {
    /// Runs the deployment's background work until `shutdown` completes, then drains: the
    /// workers (capture, delivery, retries, cancellation notices), the reconcile sweep that
    /// finds invoices whose callback never came (every `dintero.reconcile_every`, on by default)
    /// and the daily retention pass (`store.retain`). Once `shutdown` completes no new work is
    /// claimed and the call returns when the attempts in flight have finished.
    ///
    /// For a merchant service with an HTTP server of its own: mount [`crate::server::router`]
    /// in it for Dintero's callbacks, and stop both on the same signal. Where Postbud may
    /// listen itself, [`App::serve`] does both.
    ///
    /// ```no_run
    /// # async fn run(settings: postbud::Settings) -> Result<(), postbud::AppError> {
    /// let app = std::sync::Arc::new(postbud::App::open(&settings).await?);
    /// app.run(async { tokio::signal::ctrl_c().await.unwrap_or_default() }).await;
    /// # Ok(()) }
    /// ```
    pub async fn run(self: &Arc<Self>, shutdown: impl Future<Output = ()>) {
        let jobs = Jobs::start(self);
        shutdown.await;
        jobs.stop();
        jobs.finished().await;
    }

    /// What `postbud serve` runs: [`App::run`]'s background work and `routes` served on
    /// `listener`, until `shutdown` completes. `routes` is [`crate::server::router`], or a
    /// merchant's own app with that router merged or nested in it. The listener cuts off a
    /// client that sends its request head slowly ([`crate::server::HEADER_READ_TIMEOUT`]).
    ///
    /// On `shutdown` the workers stop claiming at once (attempts in flight finish) and the
    /// server stops accepting; open connections get [`SHUTDOWN_GRACE`] to finish. The call
    /// returns when both have drained.
    ///
    /// ```no_run
    /// # async fn run(settings: postbud::Settings) -> Result<(), Box<dyn std::error::Error>> {
    /// let app = std::sync::Arc::new(postbud::App::open(&settings).await?);
    /// let listener = tokio::net::TcpListener::bind(settings.server.listen).await?;
    /// let routes = postbud::server::router(app.clone());
    /// app.serve(listener, routes, async { tokio::signal::ctrl_c().await.unwrap_or_default() })
    ///     .await;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "server")]
    pub async fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        routes: axum::Router,
        shutdown: impl Future<Output = ()>,
    ) {
        let jobs = Jobs::start(self);
        if let Ok(listen) = listener.local_addr() {
            tracing::info!(%listen, callback = %self.settings().server.callback_path, "serving");
        }
        let stop = async {
            shutdown.await;
            jobs.stop();
        };
        crate::server::serve(listener, routes, stop, SHUTDOWN_GRACE).await;
        jobs.finished().await;
    }
}
