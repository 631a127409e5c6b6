//! The developer commands (feature `dev`): a Dintero sandbox, the demo and the benchmark. A
//! production operator binary leaves them, and the sandbox they start, out.

pub mod bench;
pub mod demo;
mod history;
#[cfg(feature = "screenshots")]
mod screenshots;

use std::process::ExitCode;

use crate::commands::{CommandResult, Failure, exit, shutdown_signal};

/// The stock kinds the demo's and the benchmark's configurations use.
fn stock_registry() -> Result<postbud::Registry, Failure> {
    crate::stock_registry().map_err(|e| Failure {
        message: e.to_string(),
        code: exit::CONFIG,
    })
}

/// `postbud sandbox`: a local Dintero-compatible API until Ctrl-C.
pub async fn sandbox(
    listen: std::net::SocketAddr,
    seed: u32,
    callback_secret: Option<String>,
    callback_url: Option<String>,
    token_ttl: u64,
) -> CommandResult {
    let config = postbud_sandbox::SandboxConfig {
        callback_secret,
        token_ttl,
        ..Default::default()
    };
    let sandbox = postbud_sandbox::Sandbox::start_on(listen, config)
        .await
        .map_err(|e| Failure {
            message: format!("sandbox on {listen}: {e}"),
            code: exit::CONFIG,
        })?;
    say!(
        "Dintero sandbox on {} (its CDN on {})\n",
        sandbox.url(),
        sandbox.cdn_url()
    );
    say!("{}", sandbox.dintero_toml());
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
