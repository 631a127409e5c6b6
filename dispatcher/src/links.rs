//! Signed, expiring links to a stored invoice PDF, served by `postbud serve`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

/// Signs and checks invoice links: `<public_url>/invoices/<transaction>.pdf?expires=<unix>&signature=<hex>`.
#[derive(Clone)]
pub struct LinkSigner {
    key: SecretString,
    base: Url,
    ttl: Duration,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("base", &self.base.as_str())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// A signer for links under `base`.
    pub fn new(key: SecretString, base: Url, ttl: Duration) -> Self {
        Self { key, base, ttl }
    }

    fn mac(&self, message: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("any key length");
        mac.update(message.as_bytes());
        mac
    }

    fn tag(&self, transaction_id: &str, expires: i64) -> String {
        hex::encode(
            self.mac(&format!("{transaction_id}\n{expires}"))
                .finalize()
                .into_bytes(),
        )
    }

    /// What a report URL's `sig` signs: the channel and the delivery, so a report can only ever
    /// speak of the delivery it was issued for, through the channel that made it.
    fn report_message(channel: &str, delivery_id: &str) -> String {
        format!("report\n{channel}\n{delivery_id}")
    }

    /// Checks a report URL's `sig`, in constant time.
    pub fn verify_report(&self, channel: &str, delivery_id: &str, signature: &str) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        self.mac(&Self::report_message(channel, delivery_id))
            .verify_slice(&given)
            .is_ok()
    }

    /// Where a channel's provider sends status callbacks for a delivery:
    /// `<public_url>/reports/<channel>?delivery=<id>&sig=<hex>`. Providers call it back as given,
    /// so the signature holds for every provider, whether it signs its callbacks or not.
    pub fn report_url(&self, channel: &str, delivery_id: &str) -> String {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map(|mut p| {
                p.pop_if_empty().push("reports").push(channel);
            })
            .ok();
        let sig = hex::encode(
            self.mac(&Self::report_message(channel, delivery_id))
                .finalize()
                .into_bytes(),
        );
        url.query_pairs_mut()
            .append_pair("delivery", delivery_id)
            .append_pair("sig", &sig);
        url.to_string()
    }

    /// A link valid for the configured time from now.
    pub fn link(&self, transaction_id: &str) -> String {
        let expires = jiff::Timestamp::now().as_second() + self.ttl.as_secs() as i64;
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map(|mut p| {
                p.pop_if_empty()
                    .push("invoices")
                    .push(&format!("{transaction_id}.pdf"));
            })
            .ok();
        url.query_pairs_mut()
            .append_pair("expires", &expires.to_string())
            .append_pair("signature", &self.tag(transaction_id, expires));
        url.to_string()
    }

    /// Checks a link's signature and expiry, in constant time.
    pub fn verify(&self, transaction_id: &str, expires: i64, signature: &str, now: i64) -> bool {
        if expires < now {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        self.mac(&format!("{transaction_id}\n{expires}"))
            .verify_slice(&given)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_expire() {
        let signer = LinkSigner::new(
            "sekret-link-key".into(),
            Url::parse("https://inv.example/base/").expect("url"),
            Duration::from_secs(60),
        );
        let link = Url::parse(&signer.link("T1.abc")).expect("url");
        assert_eq!(link.path(), "/base/invoices/T1.abc.pdf");
        let q: std::collections::HashMap<_, _> = link.query_pairs().into_owned().collect();
        let expires: i64 = q["expires"].parse().expect("int");
        let now = jiff::Timestamp::now().as_second();
        assert!(signer.verify("T1.abc", expires, &q["signature"], now));
        assert!(!signer.verify("T1.abd", expires, &q["signature"], now));
        assert!(!signer.verify("T1.abc", expires, &q["signature"], expires + 1));
        assert!(!format!("{signer:?}").contains("sekret-link-key"));
    }
}
