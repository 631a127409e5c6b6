//! `Dintero-Signature` on session callbacks: `t=<unix>,v0-hmac-sha256=<hex>` over
//! `t \n account \n METHOD \n host \n path \n sorted-form-encoded-query`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a callback signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Dintero-Signature` header although a secret is configured.
    #[error("the Dintero-Signature header is missing")]
    Missing,
    /// The header does not have `t=` and `v0-hmac-sha256=` parts.
    #[error("the Dintero-Signature header is malformed: {0}")]
    Malformed(String),
    /// `t` is more than the tolerance away from now.
    #[error("the Dintero-Signature timestamp is {0} s away from now (tolerance 300 s)")]
    Stale(i64),
    /// The HMAC does not match.
    #[error("the Dintero-Signature does not match")]
    Mismatch,
}

/// How far a callback's `t` may be from now.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The string Dintero signs. `query` is the raw query string; it is sorted by parameter name
/// only, with a stable sort, so repeated parameters keep their order (Dintero's reference code
/// uses `URLSearchParams.sort()`), then form-encoded (spaces as `+`).
pub fn signed_string(
    timestamp: i64,
    account_id: &str,
    method: &str,
    host: &str,
    path: &str,
    query: &str,
) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!(
        "{timestamp}\n{account_id}\n{}\n{host}\n{path}\n{query}",
        method.to_ascii_uppercase()
    )
}

fn mac(secret: &[u8], message: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac
}

/// Produces the header value (used by the sandbox and by tests).
pub fn sign(secret: &[u8], timestamp: i64, signed: &str) -> String {
    let tag = hex::encode(mac(secret, signed).finalize().into_bytes());
    format!("t={timestamp},v0-hmac-sha256={tag}")
}

/// The parts of a request that the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// Host name without port, as Dintero called it.
    pub host: &'a str,
    /// URL path.
    pub path: &'a str,
    /// Raw query string.
    pub query: &'a str,
}

/// Verifies a `Dintero-Signature` header in constant time.
pub fn verify(
    secret: &[u8],
    account_id: &str,
    header: Option<&str>,
    request: SignedRequest<'_>,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(
                    t.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed(format!("t={t}")))?,
                )
            }
            Some(("v0-hmac-sha256", tag)) => tags.push(tag),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| SignatureError::Malformed("no t=".into()))?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed("no v0-hmac-sha256=".into()));
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale(now - timestamp));
    }
    let signed = signed_string(
        timestamp,
        account_id,
        request.method,
        request.host,
        request.path,
        request.query,
    );
    let matches = tags.iter().any(|tag| {
        hex::decode(tag)
            .map(|bytes| mac(secret, &signed).verify_slice(&bytes).is_ok())
            .unwrap_or(false)
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Verifies an account webhook delivery: `event-signature` is the hex HMAC-SHA1 of the raw body
/// with the subscription's secret (Dintero's webhook docs), compared in constant time.
pub fn verify_webhook(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    use sha1::Sha1;
    let header = header.ok_or(SignatureError::Missing)?;
    let given = hex::decode(header.trim())
        .map_err(|_| SignatureError::Malformed("event-signature is not hex".into()))?;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `event-signature` of a webhook body (used by tests and the sandbox).
pub fn sign_webhook(secret: &[u8], body: &[u8]) -> String {
    use sha1::Sha1;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: SignedRequest<'static> = SignedRequest {
        method: "GET",
        host: "example.com",
        path: "/callback",
        query: "B=123&A=992",
    };

    #[test]
    fn documented_test_vector() {
        let signed = signed_string(
            1582236537,
            "P00000000",
            "GET",
            "example.com",
            "/callback",
            "B=123&A=992",
        );
        assert_eq!(
            signed,
            "1582236537\nP00000000\nGET\nexample.com\n/callback\nA=992&B=123"
        );
        assert_eq!(
            sign(b"123", 1582236537, &signed),
            "t=1582236537,v0-hmac-sha256=6bed2ab1b919d460ef7465a20dc6c97260dca73fab6647106ca525f0908df64a"
        );
        let header = "t=1582236537,v0-hmac-sha256=6bed2ab1b919d460ef7465a20dc6c97260dca73fab6647106ca525f0908df64a";
        assert_eq!(
            verify(b"123", "P00000000", Some(header), REQUEST, 1582236537 + 10),
            Ok(())
        );
    }

    #[test]
    fn refusals() {
        let header = "t=1582236537,v0-hmac-sha256=6bed2ab1b919d460ef7465a20dc6c97260dca73fab6647106ca525f0908df64a";
        assert_eq!(
            verify(b"124", "P00000000", Some(header), REQUEST, 1582236537),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"123", "P00000001", Some(header), REQUEST, 1582236537),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"123", "P00000000", Some(header), REQUEST, 1582236537 + 301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(b"123", "P00000000", None, REQUEST, 0),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            verify(b"123", "P00000000", Some("garbage"), REQUEST, 0),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn repeated_parameters_keep_their_order() {
        let s = signed_string(
            1,
            "T1",
            "GET",
            "h",
            "/p",
            "report_event=VOID&b=1&report_event=CAPTURE",
        );
        assert!(
            s.ends_with("\nb=1&report_event=VOID&report_event=CAPTURE"),
            "{s}"
        );
        let s = signed_string(1, "T1", "GET", "h", "/p", "z=2&a=9&z=1");
        assert!(s.ends_with("\na=9&z=2&z=1"), "{s}");
    }

    #[test]
    fn spaces_are_form_encoded_as_plus() {
        let s = signed_string(1, "T1", "post", "h", "/p", "b=x%20y&a=1");
        assert!(s.ends_with("POST\nh\n/p\na=1&b=x+y"), "{s}");
    }
}
