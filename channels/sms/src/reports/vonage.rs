//! Vonage's signed SMS API requests (delivery receipts included): a `sig` parameter over the
//! others, as PyPI `vonage-http-client` 1.x `Auth.sign_params`/`check_signature` computes it
//! for the HMAC methods, and as Vonage's dashboard default `md5hash` does (MD5 of the same
//! string followed by the secret, the older SDKs' `signature_method = None`):
//! every parameter but `sig`, sorted by name, as `&name=value` with `&` and `=` in values
//! replaced by `_`; hex, compared without case. The `timestamp` parameter (Unix seconds) is
//! part of it; Postbud refuses one further than [`super::SIGNATURE_WINDOW`] from its clock.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::Digest as _;
use postbud_channel::{ChannelError, InboundReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::constant_time_eq;

/// How Vonage signs: the dashboard's "signature method".
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    postbud_channel::keys::JsonSchema,
)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// MD5 of the parameters followed by the secret (Vonage's default).
    #[default]
    Md5hash,
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// A request's parameters: a JSON body's members, else a form body's fields, else the query's.
pub fn params(report: &InboundReport) -> BTreeMap<String, String> {
    if let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(&report.body) {
        return members
            .into_iter()
            .map(|(name, value)| {
                // As Python's `str()` writes what is not a string, which the SDK signs.
                let value = match value {
                    Value::String(s) => s,
                    Value::Bool(true) => "True".into(),
                    Value::Bool(false) => "False".into(),
                    Value::Null => "None".into(),
                    other => other.to_string(),
                };
                (name, value)
            })
            .collect();
    }
    let source: &[u8] = if report.body.is_empty() {
        report
            .url
            .split_once('?')
            .map(|(_, q)| q.as_bytes())
            .unwrap_or_default()
    } else {
        &report.body
    };
    url::form_urlencoded::parse(source).into_owned().collect()
}

/// The `sig` for `params` (any `sig` among them left out) under `secret`.
pub fn signature(secret: &str, method: Method, params: &BTreeMap<String, String>) -> String {
    let mut signed = String::new();
    for (name, value) in params.iter().filter(|(name, _)| *name != "sig") {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&value.replace(['&', '='], "_"));
    }
    fn hmac<M: Mac + hmac::digest::KeyInit>(secret: &str, signed: &str) -> String {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes())
            .expect("any key length");
        mac.update(signed.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
    match method {
        Method::Md5hash => {
            let mut md5 = md5::Md5::new();
            md5.update(signed.as_bytes());
            md5.update(secret.as_bytes());
            hex::encode(md5.finalize())
        }
        Method::Md5 => hmac::<Hmac<md5::Md5>>(secret, &signed),
        Method::Sha1 => hmac::<Hmac<sha1::Sha1>>(secret, &signed),
        Method::Sha256 => hmac::<Hmac<sha2::Sha256>>(secret, &signed),
        Method::Sha512 => hmac::<Hmac<sha2::Sha512>>(secret, &signed),
    }
}

/// Verifies `params`' `sig` and that their `timestamp` is within the window of `now`.
pub fn verify(
    secret: &str,
    method: Method,
    params: &BTreeMap<String, String>,
    now: i64,
) -> Result<(), ChannelError> {
    let given = params.get("sig").ok_or_else(|| {
        ChannelError::unauthorized(
            "the delivery receipt carries no `sig`: Vonage signs it when signed webhooks are enabled for the account",
        )
    })?;
    let timestamp = params
        .get("timestamp")
        .ok_or_else(|| ChannelError::unauthorized("the signed receipt carries no `timestamp`"))?;
    let expected = signature(secret, method, params);
    if !constant_time_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes()) {
        return Err(ChannelError::unauthorized(
            "the receipt's `sig` does not match (are signature_secret and signature_method the dashboard's?)",
        ));
    }
    super::fresh(timestamp, now, "timestamp")
}
