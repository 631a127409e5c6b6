//! `postbud`: the stock operator binary, the first-party channel crates linked.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match postbud_cli::stock_registry() {
        Ok(registry) => postbud_cli::run(registry).await,
        Err(e) => {
            eprintln!("postbud: {e}");
            ExitCode::from(2)
        }
    }
}
