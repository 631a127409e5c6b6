//! Sinch's delivery report callbacks: `X-Sinch-Webhook-Signature`, as PyPI `sinch` 2.x
//! (`validate_sinch_event_signature_with_nonce`) verifies it: base64 HMAC-SHA256 keyed with the
//! webhook secret over `body + "." + nonce + "." + timestamp`, the nonce and timestamp in
//! `x-sinch-webhook-signature-nonce` and `-timestamp`. The SDK does not look at the timestamp;
//! Postbud refuses one further than [`super::SIGNATURE_WINDOW`] from its clock.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use postbud_channel::{ChannelError, InboundReport};

use super::constant_time_eq;

/// The signature header's value for `body`, `nonce` and `timestamp` under `secret`.
pub fn signature(secret: &str, body: &[u8], nonce: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.update(b".");
    mac.update(nonce.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Verifies the signature and that its timestamp (Unix seconds) is within the window of `now`.
pub fn verify(secret: &str, report: &InboundReport, now: i64) -> Result<(), ChannelError> {
    let header = |name: &str| {
        report.header(name).ok_or_else(|| {
            ChannelError::unauthorized(format!(
                "{name} is missing: Sinch signs its callbacks when the channel has a webhook_secret"
            ))
        })
    };
    let given = header("x-sinch-webhook-signature")?;
    let nonce = header("x-sinch-webhook-signature-nonce")?;
    let timestamp = header("x-sinch-webhook-signature-timestamp")?;
    let expected = signature(secret, &report.body, nonce, timestamp);
    if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(ChannelError::unauthorized(
            "X-Sinch-Webhook-Signature does not match (is webhook_secret the callback secret Sinch holds?)",
        ));
    }
    super::fresh(timestamp, now, "x-sinch-webhook-signature-timestamp")
}
