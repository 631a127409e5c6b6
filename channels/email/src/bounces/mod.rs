//! Bounces: what the receiving mail servers say after the SMTP server answered 250.
//!
//! With `[channels.<name>.bounces]` set, every message leaves with its own return path
//! (`bounces+<delivery id>@domain`, VERP) and, where the SMTP server offers DSN (RFC 3461),
//! asks for a report of failure and delay with the delivery id as `ENVID` ([`smtp`]). The
//! reports land in the bounce mailbox; [`imap`] reads them, [`dsn`] turns each into
//! [`Evidence`](postbud_channel::Evidence) about the delivery it names, and the message is
//! flagged `$PostbudRead` (and `\Seen`) once the engine took it: never deleted.
//!
//! ```toml
//! [channels.customer-email.bounces]
//! imap_url = "imaps://bounces:secret@imap.merchant.example/INBOX"   # imap:// only on loopback
//! return_path = "bounces@merchant.example"    # envelope sender: bounces+<delivery id>@merchant.example
//! ```

pub(crate) mod dsn;
pub(crate) mod imap;
pub(crate) mod smtp;

use std::time::Duration;

use lettre::Address;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// `[channels.<name>.bounces]`: the bounce mailbox and the return path.
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct BounceSettings {
    /// The bounce mailbox: `imaps://user:pass@imap.merchant.example[:993]/INBOX` (TLS);
    /// `imap://` (no TLS) only on loopback. The path names the mailbox (default `INBOX`). A
    /// secret: it may carry the password.
    #[schemars(with = "String")]
    pub imap_url: SecretString,
    /// Overrides the URL's password; or `POSTBUD_CHANNELS__<NAME>__BOUNCES__PASSWORD`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub password: Option<SecretString>,
    /// `bounces@merchant.example`: each message's envelope sender becomes
    /// `bounces+<delivery id>@merchant.example`, so a bounce names its delivery. The mailbox
    /// must receive the `+` addresses (most servers deliver `user+tag` to `user`).
    pub return_path: String,
    /// How often the mailbox is looked at when the server does not offer IDLE (with IDLE, new
    /// mail is read as it arrives).
    #[serde(default = "one_minute", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
    /// An extra trusted root certificate (PEM) for the IMAP server (default: the channel's
    /// `ca_file`, and the web's roots).
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn one_minute() -> Duration {
    Duration::from_secs(60)
}

/// The return path, split where the delivery id goes in.
#[derive(Debug, Clone)]
pub(crate) struct ReturnPath {
    user: String,
    domain: String,
}

impl ReturnPath {
    fn parse(raw: &str) -> Result<Self, String> {
        let address: Address = raw
            .trim()
            .parse()
            .map_err(|e| format!("`{raw}` is not an email address: {e}"))?;
        if address.user().contains('+') {
            return Err(format!(
                "`{raw}` already has a `+`: give the plain address; Postbud adds `+<delivery id>`"
            ));
        }
        Ok(Self {
            user: address.user().to_owned(),
            domain: address.domain().to_owned(),
        })
    }

    /// `user+<delivery id>@domain`.
    pub(crate) fn for_delivery(&self, delivery_id: &str) -> Result<Address, String> {
        Address::new(format!("{}+{delivery_id}", self.user), &self.domain)
            .map_err(|e| format!("the return path for {delivery_id}: {e}"))
    }

    /// The delivery id in `address`, when it is this return path with one.
    pub(crate) fn delivery_in(&self, address: &str) -> Option<String> {
        let address = address.trim().trim_matches(['<', '>']);
        let (local, domain) = address.rsplit_once('@')?;
        // Servers may change the case of a local part on the way back; the id is the same.
        let user = local.get(..self.user.len())?;
        if !user.eq_ignore_ascii_case(&self.user) {
            return None;
        }
        let id = local[self.user.len()..].strip_prefix('+')?;
        (domain.eq_ignore_ascii_case(&self.domain) && is_delivery_id(id)).then(|| id.to_owned())
    }

    /// Every `user+<id>@domain` in `text`, in order.
    pub(crate) fn deliveries_in(&self, text: &str) -> Vec<String> {
        let needle = format!("{}+", self.user).to_ascii_lowercase();
        let lower = text.to_ascii_lowercase();
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at;
            from = start + needle.len();
            // The user part must start there: not `xbounces+…`.
            if lower[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c))
            {
                continue;
            }
            let end = lower[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "+-._@".contains(c)))
                .map_or(lower.len(), |e| start + e);
            if let Some(id) = self.delivery_in(&text[start..end])
                && !found.contains(&id)
            {
                found.push(id);
            }
        }
        found
    }
}

/// Postbud's delivery ids are `<prefix>-<hex>`: letters, digits and `-`, nothing that needs
/// quoting in an address. Anything else in a bounce is not one of ours.
pub(crate) fn is_delivery_id(id: &str) -> bool {
    (3..=100).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && id.contains('-')
}

/// The bounce mailbox as the source reads it.
#[derive(Clone)]
pub(crate) struct Mailbox {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: String,
    pub password: SecretString,
    pub mailbox: String,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub extra_root: Option<Vec<u8>>,
}

impl std::fmt::Debug for Mailbox {
    // By hand: the password stays out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("mailbox", &self.mailbox)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// What the channel keeps of `[channels.<name>.bounces]`.
#[derive(Debug, Clone)]
pub(crate) struct Bounces {
    pub return_path: ReturnPath,
    pub mailbox: Mailbox,
}

impl Bounces {
    /// Checks the table. `ca_file` is the resolved path of the bounce mailbox's extra root (the
    /// table's, else the channel's). Errors name the key (under `bounces.`) and never quote the
    /// URL: it may hold the password.
    pub(crate) fn new(
        settings: &BounceSettings,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Self, (&'static str, String)> {
        const URL: &str = "bounces.imap_url";
        let return_path =
            ReturnPath::parse(&settings.return_path).map_err(|e| ("bounces.return_path", e))?;
        let url = Url::parse(settings.imap_url.expose_secret()).map_err(|e| {
            (
                URL,
                format!("not a URL ({e}); expected imaps://user:pass@imap.example/INBOX"),
            )
        })?;
        let (tls, default_port) = match url.scheme() {
            "imaps" => (true, 993),
            "imap" if crate::config::is_loopback(&url) => (false, 143),
            "imap" => {
                return Err((
                    URL,
                    "imap:// (no TLS) is accepted only on loopback: use imaps://".to_owned(),
                ));
            }
            other => return Err((URL, format!("scheme `{other}`: expected imaps or imap"))),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or((URL, "has no host".to_owned()))?
            .trim_matches(['[', ']'])
            .to_owned();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(url.username());
        if user.is_empty() {
            return Err((
                URL,
                "has no user name: imaps://user:pass@host/INBOX".to_owned(),
            ));
        }
        let password = settings
            .password
            .clone()
            .or_else(|| url.password().map(|p| SecretString::from(decode(p))))
            .ok_or((
                URL,
                "has no password (give it in the URL or as bounces.password)".to_owned(),
            ))?;
        let mailbox = decode(url.path().trim_start_matches('/'));
        let mailbox = if mailbox.is_empty() {
            "INBOX".to_owned()
        } else {
            mailbox
        };
        if mailbox
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err((
                URL,
                "the mailbox name has a quote, a backslash or a control character".to_owned(),
            ));
        }
        if settings.poll_interval < Duration::from_secs(1) {
            return Err(("bounces.poll_interval", "must be at least 1s".to_owned()));
        }
        let extra_root = match ca_file {
            None => None,
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| ("bounces.ca_file", format!("`{}`: {e}", path.display())))?,
            ),
        };
        imap::tls_config(extra_root.as_deref()).map_err(|e| {
            (
                "bounces.ca_file",
                format!(
                    "`{}`: {e}",
                    ca_file.map(|p| p.display().to_string()).unwrap_or_default()
                ),
            )
        })?;
        Ok(Self {
            return_path,
            mailbox: Mailbox {
                port: url.port().unwrap_or(default_port),
                host,
                tls,
                user,
                password,
                mailbox,
                poll_interval: settings.poll_interval,
                timeout,
                extra_root,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> ReturnPath {
        ReturnPath::parse("bounces@merchant.example").expect("valid")
    }

    #[test]
    fn the_return_path_carries_the_delivery_id_and_gives_it_back() {
        let address = path().for_delivery("dlv-0123abcd").expect("address");
        assert_eq!(address.to_string(), "bounces+dlv-0123abcd@merchant.example");
        assert_eq!(
            path().delivery_in("<Bounces+dlv-0123abcd@MERCHANT.example>"),
            Some("dlv-0123abcd".into())
        );
        assert_eq!(path().delivery_in("bounces@merchant.example"), None);
        assert_eq!(path().delivery_in("bounces+dlv-1@other.example"), None);
        assert_eq!(path().delivery_in("bounces+dlv 1@merchant.example"), None);
        assert_eq!(path().delivery_in("xbounces+dlv-1@merchant.example"), None);
    }

    #[test]
    fn return_paths_are_found_in_running_text_but_not_inside_other_addresses() {
        let text = "To: <bounces+dlv-aa11@merchant.example>\nsee mybounces+dlv-bb22@merchant.example and bounces+dlv-cc33@elsewhere.example; again bounces+dlv-aa11@merchant.example.";
        assert_eq!(path().deliveries_in(text), vec!["dlv-aa11".to_owned()]);
        assert!(path().deliveries_in("").is_empty());
        assert!(path().deliveries_in("bounces+").is_empty());
        assert!(path().deliveries_in("bounces+@").is_empty());
    }

    #[test]
    fn a_return_path_with_a_tag_already_is_refused() {
        assert!(ReturnPath::parse("bounces+x@merchant.example").is_err());
        assert!(ReturnPath::parse("not an address").is_err());
    }

    fn settings(url: &str) -> BounceSettings {
        BounceSettings {
            imap_url: url.to_owned().into(),
            password: None,
            return_path: "bounces@merchant.example".into(),
            poll_interval: one_minute(),
            ca_file: None,
        }
    }

    #[test]
    fn the_mailbox_url_is_read_and_never_quoted_in_errors() {
        let b = Bounces::new(
            &settings("imaps://bounce%40x:p%2Fss@imap.example/Bounces"),
            None,
            Duration::from_secs(5),
        )
        .expect("valid");
        assert_eq!(
            (b.mailbox.host.as_str(), b.mailbox.port, b.mailbox.tls),
            ("imap.example", 993, true)
        );
        assert_eq!(b.mailbox.user, "bounce@x");
        assert_eq!(b.mailbox.password.expose_secret(), "p/ss");
        assert_eq!(b.mailbox.mailbox, "Bounces");
        assert!(!format!("{b:?}").contains("p/ss"), "{b:?}");
        let inbox = Bounces::new(
            &settings("imap://u:pw@127.0.0.1:1143"),
            None,
            Duration::from_secs(5),
        )
        .expect("loopback");
        assert_eq!(
            (inbox.mailbox.mailbox.as_str(), inbox.mailbox.tls),
            ("INBOX", false)
        );
        for (url, expected) in [
            ("imap://u:hunter2@imap.example/INBOX", "only on loopback"),
            ("pop3://u:hunter2@imap.example/", "expected imaps or imap"),
            ("imaps://imap.example/", "no user name"),
            ("imaps://u@imap.example/", "no password"),
            ("imaps://u:hunter2@imap.example/In\"box", "quote"),
            ("hunter2", "not a URL"),
        ] {
            let (key, why) =
                Bounces::new(&settings(url), None, Duration::from_secs(5)).expect_err(url);
            assert_eq!(key, "bounces.imap_url");
            assert!(why.contains(expected), "{url}: {why}");
            assert!(!why.contains("hunter2"), "{why}");
        }
    }
}
