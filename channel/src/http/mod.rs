//! HTTP as every channel needs it: one client set up the same way (rustls with ring, no
//! redirects), one rule for what a status says and whether it is worth a retry, one classifier
//! for requests that got no answer, one `Retry-After` reader, and
//! bodies from servers Postbud does not control read to a bound, so a huge or endless body
//! costs a bounded amount of memory and time.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, header::HeaderMap};

use crate::{ChannelError, ErrorKind, RetryClass};

pub mod target;

/// The HTTP client [`client`] builds and the helpers here read, with rustls and without a
/// second TLS stack: a channel names it as `postbud_channel::http::reqwest`.
pub use reqwest;

/// Makes sure rustls has a process-wide crypto provider (ring), once. [`client`] calls it; call
/// it yourself before building another TLS client.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder for a sink: rustls (ring), no redirects (a redirect would carry an invoice
/// or a credential somewhere nobody configured), `timeout` for the whole request and at most
/// 10 seconds to connect.
pub fn client(timeout: Duration) -> reqwest::ClientBuilder {
    ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("postbud/", env!("CARGO_PKG_VERSION")))
}

/// Whether a sink's answer `status` is worth another attempt: 408, 429 and 5xx are; any other
/// refusal would meet the same refusal again.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// What a refusal `status` says happened: 401/403 [`ErrorKind::Unauthorized`], 404/410
/// [`ErrorKind::NotFound`], 408 [`ErrorKind::TimedOut`], 409 [`ErrorKind::Conflict`], 429
/// [`ErrorKind::RateLimited`], 400/413/415/422 [`ErrorKind::InvalidInput`], 5xx
/// [`ErrorKind::Unavailable`], any other 4xx [`ErrorKind::Refused`].
pub fn status_kind(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 | 403 => ErrorKind::Unauthorized,
        404 | 410 => ErrorKind::NotFound,
        408 => ErrorKind::TimedOut,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        400 | 413 | 415 | 422 => ErrorKind::InvalidInput,
        500..=599 => ErrorKind::Unavailable,
        400..=499 => ErrorKind::Refused,
        _ => ErrorKind::Unexpected,
    }
}

/// Temporary when [`is_retryable`], permanent otherwise.
pub fn status_retry_class(status: StatusCode) -> RetryClass {
    if is_retryable(status) {
        RetryClass::Temporary
    } else {
        RetryClass::Permanent
    }
}

/// The error for a sink's refusal `status`, described by `detail`: of [`status_kind`],
/// temporary when [`is_retryable`], permanent otherwise, carrying the sink's `Retry-After`.
///
/// ```
/// use postbud_channel::{ErrorKind, http::refusal};
/// use reqwest::StatusCode;
/// use std::time::Duration;
///
/// let busy = refusal(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(30)), "slow down");
/// assert!(busy.is_temporary());
/// assert_eq!(busy.kind(), ErrorKind::RateLimited);
/// assert_eq!(busy.retry_after(), Some(Duration::from_secs(30)));
/// assert!(!refusal(StatusCode::GONE, None, "gone").is_temporary());
/// assert_eq!(refusal(StatusCode::UNAUTHORIZED, None, "who?").kind(), ErrorKind::Unauthorized);
/// ```
pub fn refusal(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: impl Into<String>,
) -> ChannelError {
    ChannelError::new(status_kind(status), detail)
        .with_retry_class(status_retry_class(status))
        .with_retry_after_opt(retry_after)
}

/// A request that got no answer, classified: a timeout is [`ErrorKind::TimedOut`], a refused
/// or lost connection [`ErrorKind::Unavailable`], anything else [`ErrorKind::Unexpected`]; all
/// are temporary. The message says which, with the innermost cause ("Connection refused"); the
/// error is kept as the source with its URL stripped, since a URL may carry a credential (a
/// webhook's path, an `?api_key=`): add what the caller knows with
/// [`ChannelError::map_message`], a URL only through [`redact_url`].
pub fn transport_error(error: reqwest::Error) -> ChannelError {
    let (kind, what) = if error.is_timeout() {
        (ErrorKind::TimedOut, "timed out")
    } else if error.is_connect() {
        (ErrorKind::Unavailable, "could not connect")
    } else if error.is_body() {
        (ErrorKind::Unavailable, "the response body broke off")
    } else if error.is_decode() {
        (ErrorKind::Unexpected, "the response could not be decoded")
    } else if error.is_request() {
        (ErrorKind::Unavailable, "the request failed")
    } else {
        (ErrorKind::Unexpected, "the request failed")
    };
    let error = error.without_url();
    let mut cause = std::error::Error::source(&error).map(ToString::to_string);
    let mut next = std::error::Error::source(&error);
    while let Some(inner) = next {
        cause = Some(inner.to_string());
        next = inner.source();
    }
    let message = format!("{what}: {}", cause.unwrap_or_else(|| error.to_string()));
    ChannelError::new(kind, message)
        .with_retry_class(RetryClass::Temporary)
        .with_source(error)
}

/// The wait a `Retry-After` header asks for: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`, from now; a date in the past is no wait). `None` when the
/// header is absent or neither.
///
/// ```
/// use postbud_channel::http::retry_after;
/// use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
/// use std::time::Duration;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
/// assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
/// assert_eq!(retry_after(&headers), Some(Duration::ZERO));
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
/// assert_eq!(retry_after(&headers), None);
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether `url` names this machine (`localhost`, `127.0.0.0/8`, `::1`): the one place plain
/// HTTP is accepted for a credential or a document.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Characters of a body quoted in an error or a receipt.
pub const EXCERPT_CHARS: usize = 200;

/// `body` fit to quote: lossy UTF-8, trimmed, cut at [`EXCERPT_CHARS`] characters with `…`,
/// `(empty body)` when there is nothing.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_owned(),
    }
}

/// Most of a response body that is read only to be quoted or parsed as a small answer (an error
/// body, a provider's acknowledgement).
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// Why a bounded read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is longer than the limit.
    #[error("the response body is over {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("reading the response body failed: {0}")]
    Transport(#[from] reqwest::Error),
}

impl From<ReadError> for ChannelError {
    /// A body over its limit is permanent (the same answer comes again); a broken read is
    /// [`transport_error`].
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Transport(e) => transport_error(e),
            too_large => ChannelError::permanent(too_large.to_string()),
        }
    }
}

/// The whole body, or [`ReadError::TooLarge`] as soon as it passes `limit` (a `Content-Length`
/// over the limit is refused before anything is read).
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// At most the first `limit` bytes of the body, for a message or a small answer; the rest is
/// never read. A connection that fails midway gives what arrived.
pub async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body.freeze()
}

/// Query parameters that carry credentials in the URLs people configure (a PostgreSQL
/// `?password=`, an SMS gateway's `?api_key=`).
const SECRET_PARAMETERS: [&str; 10] = [
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "sig",
    "auth",
    "credential",
];

/// A URL fit to print or store: the password of `user:password@` and every query parameter
/// whose name says it holds a credential are replaced by `***`.
///
/// ```
/// assert_eq!(
///     postbud_channel::http::redact_url("postgres://app:hunter2@db/postbud?sslmode=require&password=x"),
///     "postgres://app:***@db/postbud?sslmode=require&password=***"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "an unreadable URL".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    } else if !parsed.username().is_empty() && parsed.scheme().starts_with("http") {
        // `https://TOKEN@host/…`: a user name alone is a token in web URLs.
        let _ = parsed.set_username("***");
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = SECRET_PARAMETERS.iter().any(|s| lower.contains(s));
                let v = if secret {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string().replace("%2A%2A%2A", "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://gw.example/send?api_key=abc123&to=47&accessToken=z"),
            "https://gw.example/send?api_key=***&to=47&accessToken=***"
        );
        assert_eq!(redact_url("sqlite://postbud.db"), "sqlite://postbud.db");
        assert_eq!(redact_url("postgres://u:p@h/d"), "postgres://u:***@h/d");
    }

    /// A server whose every answer is an endless body.
    async fn endless() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(|| async {
            let chunk = Bytes::from_static(&[b'x'; 8192]);
            let stream =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            axum::body::Body::from_stream(stream)
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_bound() {
        ensure_crypto_provider();
        let url = endless().await;
        let client = reqwest::Client::new();
        let prefix = read_prefix(client.get(&url).send().await.expect("get"), 100_000).await;
        assert_eq!(prefix.len(), 100_000);
        let whole = read_limited(client.get(&url).send().await.expect("get"), 100_000).await;
        assert!(
            matches!(whole, Err(ReadError::TooLarge { limit: 100_000 })),
            "{whole:?}"
        );
    }

    #[tokio::test]
    async fn a_request_without_an_answer_says_whether_it_timed_out_or_found_nobody() {
        let nobody = client(Duration::from_secs(2))
            .build()
            .expect("client")
            .get("http://127.0.0.1:9/?api_key=SECRET-1")
            .send()
            .await
            .expect_err("nothing listens on port 9");
        let error = transport_error(nobody);
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(error.is_temporary());
        assert!(
            error.message().starts_with("could not connect: "),
            "{error}"
        );
        let source = std::error::Error::source(&error).expect("a source");
        assert!(!format!("{error} {source} {error:?}").contains("SECRET-1"));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let slow = client(Duration::from_millis(200))
            .build()
            .expect("client")
            .get(&url)
            .send()
            .await
            .expect_err("too slow");
        let error = transport_error(slow);
        assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
        assert!(error.is_temporary());
    }
}
