//! Stand-ins for the email providers' event webhooks: each builds the events its provider
//! posts about a message that went through its relay, in the provider's published shape, and
//! signs them exactly as the provider does, so that a test can post them to
//! `<public_url>/reports/<channel>`:
//!
//! - [`SendGrid`]: a JSON array, ECDSA P-256 over timestamp and body (a key made per instance);
//! - [`Sns`]: Amazon SES events in SNS notifications, signature versions 1 and 2 with a test
//!   RSA key whose certificate it serves over HTTPS (a test CA, [`Sns::ca_file`]);
//! - [`Mailgun`]: one event with the HMAC of timestamp and token;
//! - [`Postmark`]: one record, HTTP Basic credentials.
//!
//! Each reads the message as its provider does: what the sender put in the provider's own
//! header comes back in the events (SendGrid's `X-SMTPAPI` unique arguments, Mailgun's
//! `X-Mailgun-Variables`, SES's `X-SES-MESSAGE-TAGS`, Postmark's `X-PM-Metadata-*`), and the
//! `Message-ID` where the provider echoes it. A test forges (another key, a changed body),
//! backdates (an old timestamp), replays (the same [`Post`] twice) or strips the signature.

mod mailgun;
mod postmark;
mod sendgrid;
mod sns;

pub use mailgun::Mailgun;
pub use postmark::Postmark;
pub use sendgrid::SendGrid;
pub use sns::{SIGNING_CERTIFICATE, SIGNING_KEY, SignatureVersion, Sns};

/// One message as the provider's relay took it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The recipient.
    pub recipient: String,
    /// The headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
}

impl Sent {
    /// The headers of the raw RFC 5322 `message` sent to `recipient`.
    pub fn parse(message: &[u8], recipient: &str) -> Self {
        let text = String::from_utf8_lossy(message);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Self {
            recipient: recipient.to_owned(),
            headers,
        }
    }

    /// A message that did not pass through Postbud: its own `Message-ID`, no Postbud header.
    pub fn foreign(recipient: &str) -> Self {
        Self {
            recipient: recipient.to_owned(),
            headers: vec![(
                "Message-ID".into(),
                format!("<{}@other-system.example>", random_hex(8)),
            )],
        }
    }

    /// A header's value (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header whose name starts with `prefix` (any case), the rest of the name with it.
    pub fn headers_starting(&self, prefix: &str) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| {
                n.len() > prefix.len() && n[..prefix.len()].eq_ignore_ascii_case(prefix)
            })
            .map(|(n, v)| (n[prefix.len()..].to_owned(), v.clone()))
            .collect()
    }

    /// The `Message-ID`, as written (with its angle brackets).
    pub fn message_id(&self) -> Option<&str> {
        self.header("Message-ID")
    }
}

/// What became of a message, in words every stand-in renders in its provider's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken for sending.
    Processed,
    /// The receiving server accepted it.
    Delivered,
    /// Not delivered yet; still trying (a 4.x.x), with the server's answer.
    Deferred(String),
    /// Bounced for good (a 5.x.x), with the server's diagnostic.
    Bounced(String),
    /// Refused by the receiving server for its content or the sending IP, not the address.
    Blocked(String),
    /// Never sent: the address is on the provider's suppression list.
    Suppressed(String),
    /// Opened by the recipient.
    Opened,
}

/// A request a provider would post: its headers and raw body.
#[derive(Debug, Clone)]
pub struct Post {
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Post {
    /// The same request without the headers named `name` (any case).
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// The same request with `body` in place of its own, the signature unchanged: a forgery.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Posts it to `url` as the provider does; the status and the answer's text.
    pub async fn send(&self, url: &str) -> Result<(u16, String), String> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client.post(url).body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }
}

/// `n` random bytes, hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the system's randomness");
    hex::encode(bytes)
}

/// Now, in Unix seconds.
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The `250`-like status and text of a diagnostic such as `550 5.1.1 no such user`.
fn split_diagnostic(diagnostic: &str) -> (String, String) {
    let status = diagnostic
        .split_whitespace()
        .find(|w| {
            w.split('.').count() == 3 && w.split('.').all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or("5.0.0")
        .to_owned();
    (status, diagnostic.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded_and_the_body_is_not_read() {
        let sent = Sent::parse(
            b"Message-ID: <dlv-1@m.example>\r\nX-SMTPAPI: {\"unique_args\":\r\n {\"postbud_delivery\":\"dlv-1\"}}\r\nX-PM-Metadata-postbud-delivery: dlv-1\r\n\r\nX-Body: no\r\n",
            "kari@example.no",
        );
        assert_eq!(sent.message_id(), Some("<dlv-1@m.example>"));
        assert_eq!(
            sent.header("x-smtpapi"),
            Some("{\"unique_args\": {\"postbud_delivery\":\"dlv-1\"}}")
        );
        assert_eq!(
            sent.headers_starting("X-PM-Metadata-"),
            vec![("postbud-delivery".to_owned(), "dlv-1".to_owned())]
        );
        assert_eq!(sent.header("X-Body"), None);
    }
}
