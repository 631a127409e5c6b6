//! Built-in templates in four languages, overridable per locale and part by the merchant's own
//! files (`<dir>/<locale>/subject.txt`, `text.txt`, `html.html`, and `<dir>/layout.html`).
//! Every template is compiled and rendered with a sample invoice at start-up, so a broken one
//! is reported by `postbud check`, not by the first customer's invoice.

use std::path::Path;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};

/// Locales with built-in templates.
pub use postbud_channel::templates::LOCALES;
const PARTS: [&str; 3] = ["subject.txt", "text.txt", "html.html"];

macro_rules! builtin {
    ($locale:literal) => {
        [
            include_str!(concat!("../templates/", $locale, "/subject.txt")),
            include_str!(concat!("../templates/", $locale, "/text.txt")),
            include_str!(concat!("../templates/", $locale, "/html.html")),
        ]
    };
}

const BUILTIN: [(&str, [&str; 3]); 4] = [
    ("nb", builtin!("nb")),
    ("sv", builtin!("sv")),
    ("fi", builtin!("fi")),
    ("en", builtin!("en")),
];
const LAYOUT: &str = include_str!("../templates/layout.html");

/// The compiled templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

/// One rendered message.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

impl Templates {
    /// Built-ins, with the files under `dir` replacing them where present.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") || name == "layout" {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let builtins = std::iter::once(("layout".to_owned(), LAYOUT)).chain(
            BUILTIN.iter().flat_map(|(locale, parts)| {
                PARTS
                    .iter()
                    .zip(parts)
                    .map(move |(part, source)| (format!("{locale}/{part}"), *source))
            }),
        );
        postbud_channel::templates::add_localised(&mut env, dir, builtins)?;
        let templates = Self { env };
        for locale in LOCALES {
            for cancelled in [false, true] {
                templates.render(locale, sample(cancelled)).map_err(|e| {
                    format!(
                        "template for locale {locale} does not render with a sample invoice: {e}"
                    )
                })?;
            }
        }
        Ok(templates)
    }

    /// Renders subject, text and HTML for `locale` (one of [`LOCALES`]).
    pub fn render(&self, locale: &str, ctx: Value) -> Result<Rendered, String> {
        let render = |part: &str, ctx: Value| {
            let name = format!("{locale}/{part}");
            self.env
                .get_template(&name)
                .and_then(|t| t.render(ctx))
                .map_err(|e| format!("{name}: {e:#}"))
        };
        let subject = render("subject.txt", ctx.clone())?
            .trim()
            .replace(['\r', '\n'], " ");
        let text = render("text.txt", ctx.clone())?;
        let html = render(
            "html.html",
            context! { subject => subject.clone(), locale => locale, ..ctx },
        )?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// A complete context with every optional value present and absent across the two variants.
fn sample(cancelled: bool) -> Value {
    context! {
        cancelled => cancelled,
        attached => !cancelled,
        merchant => "Merchant AS",
        brand => context! { logo_url => (!cancelled).then_some("https://merchant.example/logo.png"), color => "#0f766e", footer => (!cancelled).then_some("Merchant AS · Org. 745 707 327") },
        invoice => context! {
            number => "A1B2C-000001", amount => "500,00 kr", due_date => (!cancelled).then_some("08.12.2026"),
            invoice_date => "24.11.2026", reference => (!cancelled).then_some("order-123"),
            customer => (!cancelled).then_some("Kari Nordmann"), link => (!cancelled).then_some("https://invoices.merchant.example/invoices/x.pdf"),
            transaction_id => "T12345678.abc", currency => "NOK",
        },
    }
}
