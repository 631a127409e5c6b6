//! `postbud-with-teams`: the operator binary a merchant builds, its `teams` kind beside the
//! core's `folder`: every command of `postbud` (`serve`, `check`, `deliver`, `status`, `void`,
//! ...), run by `postbud-cli`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut registry = match postbud_channel::Registry::discover() {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = postbud_teams::register(&mut registry) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    postbud_cli::run(registry).await
}
