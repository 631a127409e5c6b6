//! `postbud-with-teams`: the kinds of the core plus `teams`, as a merchant's own binary would
//! link them. `postbud-with-teams channels` lists them; `postbud-with-teams deliver <id>` runs a
//! delivery with a configuration that may use `kind = "teams"`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut registry = match postbud::Registry::discover() {
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["channels"] => {
            println!("channel kinds:");
            for factory in registry.factories() {
                println!(
                    "  {:<12} {:<24} {}",
                    factory.kind, factory.crate_name, factory.description
                );
            }
            ExitCode::SUCCESS
        }
        ["deliver", transaction_id] => {
            let settings = match postbud::Settings::load(None) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match postbud::App::builder(&settings)
                .registry(registry)
                .open()
                .await
            {
                Ok(app) => match app.deliver_now(transaction_id).await {
                    Ok(outcome) => {
                        println!("{outcome}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        _ => {
            eprintln!(
                "usage: postbud-with-teams channels | deliver <transaction-id>   (configuration: POSTBUD_CONFIG)"
            );
            ExitCode::from(2)
        }
    }
}
