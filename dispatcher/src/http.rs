//! Reading HTTP bodies from servers Postbud does not control (Dintero, a document host, a
//! webhook receiver, an SMS gateway): never more than a bound, so a huge or endless body costs
//! a bounded amount of memory and time.

use bytes::{Bytes, BytesMut};

/// Most of a response body that is read only to be quoted or parsed as a small answer (an error
/// body, a provider's acknowledgement).
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// Most of a Dintero API response that is read (a transaction with its events, a list page).
pub const API_LIMIT: usize = 8 * 1024 * 1024;

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
///     postbud::http::redact_url("postgres://app:hunter2@db/postbud?sslmode=require&password=x"),
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
        crate::dintero::ensure_crypto_provider();
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
}
