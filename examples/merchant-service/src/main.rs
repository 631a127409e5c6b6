//! The merchant service: `POSTBUD_CONFIG=shop.toml cargo run -p merchant-service`.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let settings = postbud::Settings::load(None)?;
    let mut registry = postbud::Registry::discover()?;
    postbud_email::register(&mut registry)?;
    let app = Arc::new(
        postbud::App::builder(&settings)
            .registry(registry)
            .open()
            .await?,
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.run_workers(stopped).await }
    });
    let listener = tokio::net::TcpListener::bind(settings.server.listen).await?;
    tracing::info!(listen = %settings.server.listen, "merchant service up");
    axum::serve(listener, merchant_service::router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = stop.send(true);
    workers.await?;
    Ok(())
}
