//! The SMS text: built-in in four languages, overridable per locale with `<dir>/<locale>/sms.txt`
//! and `<dir>/<locale>/cancel.txt`. Checked with a sample invoice when the channel is built.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, Value, context};

/// Locales with built-in texts.
pub use postbud_channel::templates::LOCALES;

const BUILTIN: [(&str, &str, &str); 4] = [
    (
        "nb",
        "Faktura {{ number }} fra {{ merchant }}: {{ amount }}{% if due_date %}, forfall {{ due_date }}{% endif %}. Se fakturaen: {{ link }}",
        "Faktura {{ number }} fra {{ merchant }} er kansellert. Du trenger ikke å betale den.",
    ),
    (
        "sv",
        "Faktura {{ number }} från {{ merchant }}: {{ amount }}{% if due_date %}, förfallodag {{ due_date }}{% endif %}. Se fakturan: {{ link }}",
        "Faktura {{ number }} från {{ merchant }} har makulerats. Du behöver inte betala den.",
    ),
    (
        "fi",
        "Lasku {{ number }} ({{ merchant }}): {{ amount }}{% if due_date %}, eräpäivä {{ due_date }}{% endif %}. Katso lasku: {{ link }}",
        "Lasku {{ number }} ({{ merchant }}) on peruttu. Sitä ei tarvitse maksaa.",
    ),
    (
        "en",
        "Invoice {{ number }} from {{ merchant }}: {{ amount }}{% if due_date %}, due {{ due_date }}{% endif %}. View it: {{ link }}",
        "Invoice {{ number }} from {{ merchant }} has been cancelled. You do not need to pay it.",
    ),
];

/// The compiled texts.
#[derive(Debug)]
pub struct Texts {
    env: Environment<'static>,
}

impl Texts {
    /// Built-ins, replaced by the files under `dir` where present.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let builtins = BUILTIN.iter().flat_map(|(locale, invoice, cancel)| {
            [("sms.txt", *invoice), ("cancel.txt", *cancel)]
                .map(|(name, source)| (format!("{locale}/{name}"), source))
        });
        postbud_channel::templates::add_localised(&mut env, dir, builtins)?;
        let texts = Self { env };
        for locale in LOCALES {
            for cancelled in [false, true] {
                texts
                    .render(locale, cancelled, sample())
                    .map_err(|e| format!("with a sample invoice: {e}"))?;
            }
        }
        Ok(texts)
    }

    /// The text for `locale`.
    pub fn render(&self, locale: &str, cancelled: bool, ctx: Value) -> Result<String, String> {
        let name = format!(
            "{locale}/{}",
            if cancelled { "cancel.txt" } else { "sms.txt" }
        );
        let text = self
            .env
            .get_template(&name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| format!("{name}: {e:#}"))?;
        Ok(text.trim().to_owned())
    }
}

fn sample() -> Value {
    context! {
        number => "A1B2C-000001", merchant => "Merchant AS", amount => "500,00 kr", due_date => "08.12.2026",
        link => "https://invoices.merchant.example/invoices/T1.x.pdf?expires=1&signature=00", customer => "Kari Nordmann",
    }
}
