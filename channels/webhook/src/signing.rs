//! Request signing: Standard Webhooks (default), and Stripe- and GitHub-style signatures for
//! receivers that cannot verify Standard Webhooks. Every scheme also sends `webhook-id` and
//! `webhook-timestamp`.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

/// Which signature headers to send.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    serde::Serialize,
    postbud_channel::keys::JsonSchema,
)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret; the key is
    /// the base64-decoded secret without its `whsec_` prefix.
    #[default]
    Standard,
    /// `X-Signature: t=<timestamp>,v1=<hex HMAC-SHA256 of "timestamp.body">` per secret; the key is
    /// the secret string as it is.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` with the first secret.
    Github,
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The key of a Standard Webhooks secret, or why it is not one.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(raw)
        .map_err(|e| format!("not base64 after the whsec_ prefix ({e})"))?;
    if key.len() < 24 {
        return Err(format!(
            "decodes to {} bytes; Standard Webhooks secrets are 24 to 64 random bytes",
            key.len()
        ));
    }
    Ok(key)
}

/// Headers carrying the signatures of one attempt.
pub fn headers(
    scheme: Scheme,
    secrets: &[SecretString],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let ts = timestamp.to_string();
    match scheme {
        Scheme::Standard => {
            let signatures: Vec<String> = secrets
                .iter()
                .filter_map(|s| standard_key(s.expose_secret()).ok())
                .map(|key| {
                    format!(
                        "v1,{}",
                        STANDARD
                            .encode(mac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
                    )
                })
                .collect();
            vec![("webhook-signature", signatures.join(" "))]
        }
        Scheme::Stripe => {
            let mut value = format!("t={ts}");
            for secret in secrets {
                value.push_str(&format!(
                    ",v1={}",
                    hex::encode(mac(
                        secret.expose_secret().as_bytes(),
                        &[ts.as_bytes(), b".", body]
                    ))
                ));
            }
            vec![("x-signature", value)]
        }
        Scheme::Github => secrets
            .first()
            .map(|secret| {
                vec![(
                    "x-hub-signature-256",
                    format!(
                        "sha256={}",
                        hex::encode(mac(secret.expose_secret().as_bytes(), &[body]))
                    ),
                )]
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard(secret: &str, id: &str, ts: i64, body: &str) -> String {
        headers(
            Scheme::Standard,
            &[SecretString::from(secret)],
            id,
            ts,
            body.as_bytes(),
        )
        .remove(0)
        .1
    }

    #[test]
    fn standard_webhooks_test_vector_of_the_reference_library() {
        assert_eq!(
            standard(
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                r#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn standard_webhooks_test_vector_of_hook0() {
        assert_eq!(
            standard(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let secrets = [
            SecretString::from("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ];
        let value = headers(Scheme::Standard, &secrets, "dlv-1", 1, b"{}")
            .remove(0)
            .1;
        assert_eq!(value.split(' ').count(), 2);
        assert!(value.split(' ').all(|entry| entry.starts_with("v1,")));
    }

    #[test]
    fn stripe_and_github_schemes() {
        let secrets = [SecretString::from("s3cret")];
        let (name, value) = headers(Scheme::Stripe, &secrets, "dlv-1", 1700000000, b"{}").remove(0);
        assert_eq!(name, "x-signature");
        let expected = hex::encode(mac(b"s3cret", &[b"1700000000.{}"]));
        assert_eq!(value, format!("t=1700000000,v1={expected}"));
        let (name, value) = headers(Scheme::Github, &secrets, "dlv-1", 1, b"{}").remove(0);
        assert_eq!(
            (name, value),
            (
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(mac(b"s3cret", &[b"{}"])))
            )
        );
    }

    #[test]
    fn short_or_malformed_secrets_are_refused() {
        assert!(
            standard_key("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("24 to 64")
        );
        assert!(
            standard_key("whsec_***")
                .unwrap_err()
                .contains("not base64")
        );
    }
}
