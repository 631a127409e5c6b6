//! The merchant service: `POSTBUD_CONFIG=shop.toml cargo run -p merchant-service`.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let settings = postbud::Settings::load(None)?;
    // `postbud-email` registered by hand as well: a crate only ever named in `Cargo.toml` may be
    // dropped by the linker, and its kind with it.
    let mut registry = postbud::Registry::discover()?;
    postbud_email::register(&mut registry)?;
    let app = Arc::new(
        postbud::App::builder(&settings)
            .registry(registry)
            .open()
            .await?,
    );
    let listener = tokio::net::TcpListener::bind(settings.server.listen).await?;
    tracing::info!(listen = %settings.server.listen, "merchant service up");
    // Everything `postbud serve` runs (workers, reconcile sweep, retention, Postbud's routes)
    // with the shop's routes beside them, until Ctrl-C; then a graceful drain.
    let shutdown = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
    app.serve(
        listener,
        merchant_service::router(Arc::clone(&app)),
        shutdown,
    )
    .await;
    Ok(())
}
