//! Twilio's status callbacks: `X-Twilio-Signature`, computed as PyPI `twilio` 9.x
//! `request_validator.py` computes it, in both of its modes.
//!
//! - The account's auth token signs with HMAC-SHA1 (the default).
//! - A SharedKey signs when the request carries `X-Twilio-Webhooks-Signature-Settings:
//!   key=<id>,algorithm=HMAC_SHA1|HMAC_SHA256`; its secret is the channel's `webhook_secret`.
//!
//! The signed string is the URL Twilio called followed by each parameter's name and values,
//! sorted. A JSON body is covered instead by `bodySHA256` (its hex SHA-256) in the URL's query.
//! Twilio computes over the URL with or without the port, so both are tried.

use std::collections::{BTreeMap, BTreeSet};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use postbud_channel::{ChannelError, InboundReport};
use sha2::Digest as _;

use super::constant_time_eq;

/// The header that names a SharedKey and its algorithm.
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";

/// The HMAC a Twilio signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `HMAC_SHA1`: the auth token's, and a SharedKey's by default.
    Sha1,
    /// `HMAC_SHA256`: a SharedKey's when so configured.
    Sha256,
}

impl Algorithm {
    /// The algorithm `X-Twilio-Webhooks-Signature-Settings` names (`HMAC_SHA1` when it names
    /// none, as the SDK reads it), or the name it gives that Twilio's SDK does not know.
    pub fn from_settings(header: Option<&str>) -> Result<Self, String> {
        let named = header
            .unwrap_or_default()
            .split(',')
            .filter_map(|part| part.split_once('='))
            .find(|(name, value)| name.trim() == "algorithm" && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_ascii_uppercase());
        match named.as_deref() {
            None | Some("HMAC_SHA1") => Ok(Self::Sha1),
            Some("HMAC_SHA256") => Ok(Self::Sha256),
            Some(other) => Err(other.to_owned()),
        }
    }
}

/// The parameters a callback's signature covers: each name with its distinct values, sorted.
pub type Params = BTreeMap<String, BTreeSet<String>>;

/// A form body's parameters.
pub fn form_params(body: &[u8]) -> Params {
    let mut params = Params::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        params
            .entry(name.into_owned())
            .or_default()
            .insert(value.into_owned());
    }
    params
}

/// `X-Twilio-Signature` for `url` and `params` under `secret`.
pub fn signature(secret: &str, url: &str, params: &Params, algorithm: Algorithm) -> String {
    let mut signed = url.to_owned();
    for (name, values) in params {
        for value in values {
            signed.push_str(name);
            signed.push_str(value);
        }
    }
    let mac = match algorithm {
        Algorithm::Sha1 => {
            let mut mac =
                Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(signed.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha256 => {
            let mut mac =
                Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(signed.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    STANDARD.encode(mac)
}

/// `url` with its port as written, and with the scheme's default port made explicit (or
/// removed): the two forms Twilio may have signed.
pub fn url_forms(url: &str) -> [String; 2] {
    let Some((scheme, rest)) = url.split_once("://") else {
        return [url.to_owned(), url.to_owned()];
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // A port follows the last colon, outside an IPv6 literal's brackets.
    let port_at = authority
        .rfind(':')
        .filter(|&i| !authority[i..].contains(']') && authority[i + 1..].parse::<u16>().is_ok());
    match port_at {
        Some(i) => [
            format!("{scheme}://{}{tail}", &authority[..i]),
            url.to_owned(),
        ],
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            [
                url.to_owned(),
                format!("{scheme}://{authority}:{port}{tail}"),
            ]
        }
    }
}

/// Verifies a callback's `X-Twilio-Signature`: with the SharedKey secret when the request names
/// a SharedKey, else with the auth token.
pub fn verify(
    auth_token: &str,
    shared_key: Option<&str>,
    report: &InboundReport,
) -> Result<(), ChannelError> {
    let given = report
        .header("x-twilio-signature")
        .ok_or_else(|| ChannelError::unauthorized("X-Twilio-Signature is missing"))?;
    let settings = report
        .header(SETTINGS_HEADER)
        .filter(|h| !h.trim().is_empty());
    let algorithm = Algorithm::from_settings(settings).map_err(|named| {
        ChannelError::unauthorized(format!(
            "X-Twilio-Webhooks-Signature-Settings names the algorithm `{}`, which is neither HMAC_SHA1 nor HMAC_SHA256",
            super::clean(&named)
        ))
    })?;
    let secret = match settings {
        Some(_) => shared_key.ok_or_else(|| {
            ChannelError::unauthorized(
                "the callback is signed with a Twilio SharedKey: set the channel's webhook_secret to its secret",
            )
        })?,
        None => auth_token,
    };
    let params = match report.query("bodySHA256") {
        Some(hash) => {
            let computed = hex::encode(sha2::Sha256::digest(&report.body));
            if !constant_time_eq(computed.as_bytes(), hash.as_bytes()) {
                return Err(ChannelError::unauthorized(
                    "the body does not match bodySHA256 in the URL",
                ));
            }
            Params::new()
        }
        None => form_params(&report.body),
    };
    let matches = url_forms(&report.url).iter().any(|url| {
        constant_time_eq(
            signature(secret, url, &params, algorithm).as_bytes(),
            given.as_bytes(),
        )
    });
    if matches {
        Ok(())
    } else {
        Err(ChannelError::unauthorized(
            "X-Twilio-Signature does not match (is server.public_url the URL Twilio calls?)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_url_forms_are_tried() {
        assert_eq!(
            url_forms("https://inv.example/reports/sms?delivery=d"),
            [
                "https://inv.example/reports/sms?delivery=d".to_owned(),
                "https://inv.example:443/reports/sms?delivery=d".to_owned()
            ]
        );
        assert_eq!(
            url_forms("http://127.0.0.1:8080/r?a=1"),
            [
                "http://127.0.0.1/r?a=1".to_owned(),
                "http://127.0.0.1:8080/r?a=1".to_owned()
            ]
        );
        assert_eq!(
            url_forms("http://[::1]:81/r")[0],
            "http://[::1]/r",
            "the port of an IPv6 literal"
        );
        assert_eq!(url_forms("http://[::1]/r")[1], "http://[::1]:80/r");
    }

    #[test]
    fn the_settings_header_names_the_algorithm() {
        assert_eq!(Algorithm::from_settings(None), Ok(Algorithm::Sha1));
        assert_eq!(
            Algorithm::from_settings(Some("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256")),
            Ok(Algorithm::Sha256)
        );
        assert_eq!(Algorithm::from_settings(Some("key=k")), Ok(Algorithm::Sha1));
        assert_eq!(
            Algorithm::from_settings(Some("algorithm=HMAC_MD5")),
            Err("HMAC_MD5".into())
        );
    }
}
