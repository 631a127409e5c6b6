//! Configurations that are valid and deliver nothing: no route, a route that can never be
//! taken, a channel no route names, a secret left as a placeholder. `postbud check` fails on
//! each; `serve` would start and quietly fail every invoice.

use figment::value::{Dict, Value};

use super::{Settings, When, is_secret_key};

/// Kravia's payment product types that a merchant delivers (Dintero documents merchant
/// delivery for these two; `kravia.invoice_b2b_grouped` is not dispatched).
const PRODUCT_TYPES: [&str; 2] = ["kravia.invoice_b2b", "kravia.invoice_b2c"];

/// Kravia's markets are Norway, Sweden and Finland (Dintero's transaction reference): its
/// invoices are in their currencies.
const CURRENCIES: [&str; 3] = ["NOK", "SEK", "EUR"];

/// One dead end: what, at which key, set where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadEnd {
    /// The key (`routes[1].when.currency`, `channels.sms`, `dintero.client_secret`).
    pub key: String,
    /// What is wrong and what happens because of it.
    pub problem: String,
}

impl std::fmt::Display for DeadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl Settings {
    /// Everything in this configuration that makes it deliver less than it says, each with the
    /// key and where it was set. Empty for a configuration that can deliver every invoice.
    ///
    /// ```
    /// let settings = postbud::Settings::from_toml(
    ///     "[channels.archive]\nkind = \"folder\"\npath = \"invoices\"\n",
    /// ).unwrap();
    /// let found = settings.dead_ends();
    /// assert!(found.iter().any(|d| d.key == "routes"), "{found:?}");
    /// ```
    pub fn dead_ends(&self) -> Vec<DeadEnd> {
        let mut found = Vec::new();
        let from = |key: &str| format!("(from {})", self.source_of(key));
        if self.routes.is_empty() {
            found.push(DeadEnd {
                key: "routes".into(),
                problem: format!(
                    "there is no [[routes]] entry: every invoice would fail with \"no route matches\" (nothing captured, nobody invoiced); add one {}",
                    from("channels")
                ),
            });
        }
        for (index, route) in self.routes.iter().enumerate() {
            for (field, why) in impossible(&route.when) {
                found.push(DeadEnd {
                    key: format!("routes[{index}].when.{field}"),
                    problem: format!("{why}: this route is never taken {}", from("routes")),
                });
            }
            if let Some(first) = self.routes[..index]
                .iter()
                .position(|r| matches_everything(&r.when))
            {
                found.push(DeadEnd {
                    key: format!("routes[{index}]"),
                    problem: format!(
                        "never taken: routes[{first}] before it has no `when` and takes every invoice (the first route that matches wins) {}",
                        from("routes")
                    ),
                });
            }
        }
        for name in self.channels.keys() {
            let named = self
                .routes
                .iter()
                .any(|r| r.deliver.contains(name) || r.fallback.contains(name));
            if !named {
                found.push(DeadEnd {
                    key: format!("channels.{name}"),
                    problem: format!(
                        "no route names this channel: it never delivers; add it to a route's `deliver` or `fallback`, or remove it {}",
                        from(&format!("channels.{name}.kind"))
                    ),
                });
            }
        }
        if let Ok(root) = self.figment().extract::<Dict>() {
            let mut secrets = Vec::new();
            placeholder_secrets(&root, "", &mut secrets);
            for (key, why) in secrets {
                let problem = format!("{why} {}", from(&key));
                found.push(DeadEnd { key, problem });
            }
        }
        found
    }
}

/// Conditions of `when` that no Kravia transaction meets: (field, why).
fn impossible(when: &When) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for value in &when.product_type {
        let known = PRODUCT_TYPES.iter().any(|p| p.eq_ignore_ascii_case(value));
        if value.eq_ignore_ascii_case("kravia.invoice_b2b_grouped") {
            found.push((
                "product_type",
                format!(
                    "`{value}` is not delivered by Postbud: Dintero documents no merchant delivery of grouped invoices"
                ),
            ));
        } else if !known {
            found.push((
                "product_type",
                format!(
                    "`{value}` never occurs: Kravia's invoices are {}",
                    PRODUCT_TYPES.join(" or ")
                ),
            ));
        }
    }
    for value in &when.currency {
        if !CURRENCIES.iter().any(|c| c.eq_ignore_ascii_case(value)) {
            found.push((
                "currency",
                format!(
                    "`{value}` never occurs: Kravia invoices are in {} (Norway, Sweden, Finland)",
                    CURRENCIES.join(", ")
                ),
            ));
        }
    }
    for value in &when.country {
        let code = value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic());
        if !code {
            found.push((
                "country",
                format!(
                    "`{value}` never occurs: billing countries are ISO 3166 alpha-2 codes (NO, SE, FI, ...)"
                ),
            ));
        }
    }
    found
}

fn matches_everything(when: &When) -> bool {
    when.product_type.is_empty()
        && when.currency.is_empty()
        && when.country.is_empty()
        && when.has_email.is_none()
        && when.has_phone.is_none()
        && when.peppol.is_none()
}

/// Secret keys under `dict` (at `path`) whose values are empty or placeholders.
fn placeholder_secrets(dict: &Dict, path: &str, found: &mut Vec<(String, String)>) {
    for (key, value) in dict {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            Value::Dict(_, inner) => placeholder_secrets(inner, &at, found),
            Value::String(_, text) if is_secret_key(key) => {
                if let Some(why) = placeholder(text) {
                    found.push((at, why));
                }
            }
            Value::Array(_, items) if is_secret_key(key) => {
                for (index, item) in items.iter().enumerate() {
                    if let Value::String(_, text) = item
                        && let Some(why) = placeholder(text)
                    {
                        found.push((format!("{at}[{index}]"), why));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Why `value` is not a real secret, if it is not. Never quotes the value beyond a placeholder
/// marker: a real secret that merely looks odd must not reach the terminal.
fn placeholder(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Some("is empty".into());
    }
    let lower = trimmed.to_ascii_lowercase();
    const WORDS: [&str; 12] = [
        "changeme",
        "change-me",
        "change_me",
        "replaceme",
        "replace-me",
        "todo",
        "tbd",
        "fixme",
        "placeholder",
        "secret",
        "password",
        "example",
    ];
    let placeholder = WORDS.contains(&lower.as_str())
        || trimmed.contains("...")
        || trimmed.contains('…')
        || lower.starts_with("set postbud_")
        || lower.starts_with("your")
        || (trimmed.starts_with('<') && trimmed.ends_with('>'))
        || (trimmed.starts_with("${") && trimmed.ends_with('}'))
        || trimmed.chars().all(|c| matches!(c, 'x' | 'X' | '*'));
    placeholder.then(|| {
        "is a placeholder, not a secret: set it (in the file, in POSTBUD_<KEY>, or as <key>_file)"
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::placeholder;

    #[test]
    fn placeholders_are_told_from_secrets() {
        for p in [
            "",
            "  ",
            "change-me",
            "...",
            "whsec_new...",
            "set POSTBUD_DINTERO__CLIENT_SECRET",
            "<secret>",
            "${SMTP_PASSWORD}",
            "xxxxxxxx",
            "your-token",
            "TODO",
        ] {
            assert!(placeholder(p).is_some(), "{p:?}");
        }
        for real in [
            "sandbox-secret",
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "hunter2",
            "bearer",
        ] {
            assert!(placeholder(real).is_none(), "{real:?}");
        }
    }
}
