//! Amounts and dates as a reader of each locale expects them (`nb`, `sv`, `fi`, `en`).

/// `1 234,50 kr` (nb, sv), `1 234,50 €` (fi), `NOK 1,234.50` (en). Minor units in.
pub fn amount(minor: i64, currency: &str, locale: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    let (whole, cents) = (minor / 100, minor % 100);
    let digits = whole.to_string();
    let group = |separator: &str| {
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push_str(separator);
            }
            out.push(c);
        }
        out
    };
    let symbol = match currency {
        "NOK" | "SEK" | "DKK" => "kr",
        "EUR" => "€",
        other => other,
    };
    let nordic = matches!(locale, "nb" | "sv" | "fi");
    let (separator, decimal) = if nordic { ("\u{a0}", ",") } else { (",", ".") };
    let number = format!("{sign}{}{decimal}{cents:02}", group(separator));
    if nordic {
        format!("{number}\u{a0}{symbol}")
    } else {
        format!("{currency}\u{a0}{number}")
    }
}

/// `24.11.2026` (nb, fi), `2026-11-24` (sv), `24 November 2026` (en).
pub fn date(date: jiff::civil::Date, locale: &str) -> String {
    match locale {
        "nb" | "fi" => date.strftime("%d.%m.%Y").to_string(),
        "sv" => date.to_string(),
        _ => date.strftime("%-d %B %Y").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_per_locale() {
        assert_eq!(amount(123450, "NOK", "nb"), "1\u{a0}234,50\u{a0}kr");
        assert_eq!(amount(123450, "SEK", "sv"), "1\u{a0}234,50\u{a0}kr");
        assert_eq!(amount(99, "EUR", "fi"), "0,99\u{a0}€");
        assert_eq!(amount(123456789, "NOK", "en"), "NOK\u{a0}1,234,567.89");
        assert_eq!(amount(50000, "NOK", "en"), "NOK\u{a0}500.00");
    }

    #[test]
    fn dates_per_locale() {
        let d = jiff::civil::date(2026, 12, 8);
        assert_eq!(date(d, "nb"), "08.12.2026");
        assert_eq!(date(d, "sv"), "2026-12-08");
        assert_eq!(date(d, "en"), "8 December 2026");
    }
}
