use std::{fmt, time::Duration};

use jiff::{Timestamp, civil::Time, tz::TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[[routes]]`: which channel instances deliver which invoices. The first route whose `when`
/// matches wins.
///
/// ```toml
/// [[routes]]
/// when = { product_type = "kravia.invoice_b2b" }
/// deliver = ["erp", "customer-email"]
/// fallback = ["archive"]          # tried when a delivery fails permanently or is dead-lettered
/// delay = "10m"                   # wait before the first attempt
/// window = "08:00-20:00 Europe/Oslo"
/// ```
///
/// The route chosen for an invoice is stored with its dispatch (serialised as it is written
/// here), so a configuration changed later never changes an invoice already routed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Conditions; all must hold. Empty matches everything.
    #[serde(default)]
    pub when: When,
    /// Channel instances that each get the invoice.
    pub deliver: Vec<String>,
    /// Channel instances tried when a delivery fails for good.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Delay before the first delivery attempt.
    #[serde(default, with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Deliveries only start inside this daily window.
    #[serde(default)]
    pub window: Option<SendWindow>,
}

/// A route's conditions on the transaction.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// `kravia.invoice_b2b`, `kravia.invoice_b2c`, ... (one or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub product_type: Vec<String>,
    /// ISO 4217 (one or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub currency: Vec<String>,
    /// Billing country, ISO 3166 alpha-2 (one or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub country: Vec<String>,
    /// Whether the customer has an email address.
    #[serde(default)]
    pub has_email: Option<bool>,
    /// Whether the customer has a phone number.
    #[serde(default)]
    pub has_phone: Option<bool>,
    /// Whether the buyer receives invoices over Peppol, as the lookup (the SML and the buyer's
    /// SMP, asked by a channel of kind `peppol` before the capture) says: `true` matches only
    /// buyers it found registered for BIS Billing 3.0, `false` the others (not registered, or
    /// an organisation number that fails its check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peppol: Option<bool>,
}

/// The network `when.peppol` asks about.
pub const PEPPOL: &str = "peppol";

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn listed(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l.eq_ignore_ascii_case(v)))
}

/// What a route's `when` looks at in an invoice about to be routed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteFacts<'a> {
    /// `kravia.invoice_b2b`, `kravia.invoice_b2c`, ...
    pub product_type: &'a str,
    /// ISO 4217.
    pub currency: &'a str,
    /// The billing country, ISO 3166 alpha-2.
    pub country: Option<&'a str>,
    /// The customer has an email address.
    pub has_email: bool,
    /// The customer has a phone number.
    pub has_phone: bool,
    /// Whether the buyer is registered on Peppol; `None` when nobody asked.
    pub peppol: Option<bool>,
}

impl When {
    /// Whether the invoice meets every condition.
    pub fn matches(&self, facts: &RouteFacts<'_>) -> bool {
        listed(&self.product_type, Some(facts.product_type))
            && listed(&self.currency, Some(facts.currency))
            && listed(&self.country, facts.country)
            && self.has_email.is_none_or(|want| want == facts.has_email)
            && self.has_phone.is_none_or(|want| want == facts.has_phone)
            && self.peppol.is_none_or(|want| facts.peppol == Some(want))
    }

    /// Whether the invoice meets every condition but those a network's directory answers
    /// (`peppol`): whether its directory is worth asking for this route.
    pub fn matches_apart_from_networks(&self, facts: &RouteFacts<'_>) -> bool {
        Self {
            peppol: None,
            ..self.clone()
        }
        .matches(facts)
    }

    /// The networks whose directory this condition asks (`peppol`).
    pub fn networks(&self) -> impl Iterator<Item = &'static str> {
        self.peppol.map(|_| PEPPOL).into_iter()
    }
}

/// A daily window in a time zone, written `"08:00-20:00 Europe/Oslo"`. A window whose end is
/// before its start spans midnight.
#[derive(Clone)]
pub struct SendWindow {
    start: Time,
    end: Time,
    zone: TimeZone,
    text: String,
}

impl fmt::Debug for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendWindow({})", self.text)
    }
}

impl std::str::FromStr for SendWindow {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: String| {
            format!("window `{text}`: {why}; expected e.g. \"08:00-20:00 Europe/Oslo\"")
        };
        let (range, zone) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("no time zone".into()))?;
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| bad("no `-` between the times".into()))?;
        let time = |s: &str| {
            s.parse::<Time>()
                .map_err(|e| bad(format!("`{s}` is not a time ({e})")))
        };
        let zone =
            TimeZone::get(zone.trim()).map_err(|e| bad(format!("unknown time zone ({e})")))?;
        Ok(Self {
            start: time(start)?,
            end: time(end)?,
            zone,
            text: text.trim().to_owned(),
        })
    }
}

impl Serialize for SendWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SendWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl SendWindow {
    fn contains(&self, t: Time) -> bool {
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// `at` if it is inside the window, otherwise the next opening.
    pub fn next_open(&self, at: Timestamp) -> Timestamp {
        let local = at.to_zoned(self.zone.clone());
        if self.contains(local.time()) {
            return at;
        }
        let today = local.date();
        let opening = |date: jiff::civil::Date| {
            date.to_datetime(self.start)
                .to_zoned(self.zone.clone())
                .map(|z| z.timestamp())
                .unwrap_or(at)
        };
        let candidate = opening(today);
        if candidate > at {
            candidate
        } else {
            today.tomorrow().map(opening).unwrap_or(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_opens_at_the_next_start_in_its_zone() {
        let w: SendWindow = "08:00-20:00 Europe/Oslo".parse().expect("parses");
        // 2026-11-24 21:30 in Oslo (UTC+1) is 20:30 UTC: closed, opens 08:00 Oslo = 07:00 UTC.
        let late: Timestamp = "2026-11-24T20:30:00Z".parse().expect("ts");
        assert_eq!(w.next_open(late).to_string(), "2026-11-25T07:00:00Z");
        let early: Timestamp = "2026-11-24T05:00:00Z".parse().expect("ts");
        assert_eq!(w.next_open(early).to_string(), "2026-11-24T07:00:00Z");
        let inside: Timestamp = "2026-11-24T12:00:00Z".parse().expect("ts");
        assert_eq!(w.next_open(inside), inside);
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        assert!(
            "08:00-20:00"
                .parse::<SendWindow>()
                .unwrap_err()
                .contains("no time zone")
        );
        assert!(
            "08:00-25:00 Europe/Oslo"
                .parse::<SendWindow>()
                .unwrap_err()
                .contains("not a time")
        );
        assert!(
            "08:00-20:00 Mars/Base"
                .parse::<SendWindow>()
                .unwrap_err()
                .contains("unknown time zone")
        );
    }
}
