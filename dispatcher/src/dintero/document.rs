//! Fetching the invoice PDF behind `kravia:invoice_url`, which is either the PDF itself or a
//! Files API descriptor (`{"url", "mime_type", "expires_at"}`) whose short-lived `url` holds it.
//!
//! The URL comes from transaction metadata, so it is treated as untrusted: only allow-listed
//! hosts, `https` (plain `http` on loopback only), a size limit, and bytes that are a PDF.

use bytes::Bytes;
use postbud_channel::{RetryClass, http};
use reqwest::StatusCode;
use serde::Deserialize;
use url::{Origin, Url};

use super::{DinteroSettings, excerpt, status_error, token::TokenCache};
use crate::dintero::DinteroError;

const OPERATION: &str = "fetch invoice PDF";

/// How many redirects a document fetch follows, each hop checked like the first URL.
const MAX_REDIRECTS: usize = 3;

/// Which URLs the PDF may be read from, and how large it may be. Origins are compared whole
/// (scheme, host and port): another port of an allowed host is another server.
#[derive(Debug, Clone)]
pub struct DocumentPolicy {
    origins: Vec<Origin>,
    api_origins: Vec<Origin>,
    max_bytes: u64,
}

/// Files API descriptor.
#[derive(Debug, Deserialize)]
struct FileDescriptor {
    url: String,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    expires_at: Option<jiff::Timestamp>,
}

/// An origin for messages: `https://cdn.dintero.com`, `http://127.0.0.1:8080`.
fn shown(origin: &Origin) -> String {
    origin.ascii_serialization()
}

/// A `dintero.document_hosts` entry: a host name (meaning `https://host`) or an origin.
fn entry_origin(entry: &str) -> Option<Origin> {
    let entry = entry.trim().trim_end_matches('/');
    let url = if entry.contains("://") {
        Url::parse(entry).ok()?
    } else {
        Url::parse(&format!("https://{entry}")).ok()?
    };
    Some(url.origin()).filter(Origin::is_tuple)
}

impl DocumentPolicy {
    /// Allow-list: the origins of `api_url` and `auth_url`, `https://cdn.dintero.com`, and
    /// `dintero.document_hosts` (host names mean `https://` on port 443; write an origin, such
    /// as `https://files.example.com:8443`, for anything else).
    pub fn from_settings(settings: &DinteroSettings) -> Self {
        let api_origins: Vec<Origin> = [&settings.api_url, &settings.auth_url]
            .into_iter()
            .map(Url::origin)
            .collect();
        let mut origins = api_origins.clone();
        origins.extend(entry_origin("cdn.dintero.com"));
        origins.extend(
            settings
                .document_hosts
                .iter()
                .filter_map(|h| entry_origin(h)),
        );
        Self {
            origins,
            api_origins,
            max_bytes: settings.max_document_bytes,
        }
    }

    /// Refuses a URL outside the policy, saying why.
    pub fn check_url(&self, raw: &str) -> Result<Url, DinteroError> {
        let url = Url::parse(raw).map_err(|e| {
            DinteroError::permanent(
                OPERATION,
                format!("`{}` is not a URL: {e}", http::redact_url(raw)),
            )
        })?;
        match url.scheme() {
            "https" => {}
            "http" if postbud_channel::http::is_loopback(&url) => {}
            "http" => {
                return Err(DinteroError::permanent(
                    OPERATION,
                    format!(
                        "refused plain http URL `{}`: https is required except on loopback",
                        http::redact_url(url.as_str())
                    ),
                ));
            }
            other => {
                return Err(DinteroError::permanent(
                    OPERATION,
                    format!(
                        "refused `{other}:` URL `{}`: only https is fetched",
                        http::redact_url(url.as_str())
                    ),
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DinteroError::permanent(
                OPERATION,
                "refused a URL with user information: credentials never travel in a document URL",
            ));
        }
        let origin = url.origin();
        if !self.origins.contains(&origin) {
            let host = url.host_str().unwrap_or_default();
            return Err(DinteroError::permanent(
                OPERATION,
                format!(
                    "refused host `{host}` (origin {}): not in the allow-list [{}] (add it to dintero.document_hosts if it is yours)",
                    shown(&origin),
                    self.origins
                        .iter()
                        .map(shown)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(url)
    }

    /// Only Dintero's own API origins ever see the token.
    fn is_api_origin(&self, url: &Url) -> bool {
        self.api_origins.contains(&url.origin())
    }

    pub(super) async fn fetch(
        &self,
        http: &reqwest::Client,
        tokens: &TokenCache,
        settings: &DinteroSettings,
        raw: &str,
    ) -> Result<Bytes, DinteroError> {
        let url = self.check_url(raw)?;
        let (content_type, body) = self.get(http, tokens, settings, &url).await?;
        if body.starts_with(b"%PDF-") {
            return check_pdf(body);
        }
        let looks_json = content_type.as_deref().is_some_and(|c| c.contains("json"))
            || body.first() == Some(&b'{');
        if !looks_json {
            return Err(not_a_pdf(content_type.as_deref(), &body));
        }
        let descriptor: FileDescriptor = serde_json::from_slice(&body).map_err(|e| {
            DinteroError::permanent(
                OPERATION,
                format!(
                    "neither a PDF nor a Files descriptor ({e}): {}",
                    excerpt(&body)
                ),
            )
        })?;
        if let Some(mime) = descriptor.mime_type.as_deref()
            && mime != "application/pdf"
        {
            return Err(DinteroError::permanent(
                OPERATION,
                format!("the file is `{mime}`, not application/pdf"),
            ));
        }
        if let Some(expires_at) = descriptor.expires_at
            && expires_at < jiff::Timestamp::now()
        {
            // A fresh descriptor comes with the next GET; worth a retry.
            return Err(DinteroError::temporary(
                OPERATION,
                format!("the file URL expired at {expires_at}"),
            ));
        }
        let file_url = self.check_url(&descriptor.url)?;
        let (content_type, body) = self
            .get(http, tokens, settings, &file_url)
            .await
            .map_err(|e| match e.status() {
                // A CDN refuses a signed link past its time with a 403, and the link may expire
                // between the check above and its arrival (or by the CDN's clock): the next
                // attempt reads a fresh descriptor, so this is worth a retry, not the end.
                Some(403) => e.with_retry_class(RetryClass::Temporary).map_message(|m| {
                    format!(
                        "{m} (the file URL was refused; its descriptor said it expires at {}; a fresh one is read on the next attempt)",
                        descriptor
                            .expires_at
                            .map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
                    )
                }),
                _ => e,
            })?;
        if body.starts_with(b"%PDF-") {
            check_pdf(body)
        } else {
            Err(not_a_pdf(content_type.as_deref(), &body))
        }
    }

    /// GET with the size limit enforced while streaming; follows up to [`MAX_REDIRECTS`]
    /// redirects, each checked against the policy; retries once with the bearer token on
    /// 401/403, but only towards Dintero's own API origins. Not retried in place: a failed
    /// document goes back to the engine's backoff, and its error body is read only in part.
    async fn get(
        &self,
        http: &reqwest::Client,
        tokens: &TokenCache,
        settings: &DinteroSettings,
        url: &Url,
    ) -> Result<(Option<String>, Bytes), DinteroError> {
        let mut url = url.clone();
        let mut redirects = 0;
        let response = loop {
            let mut response = http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| DinteroError::transport(OPERATION, e))?;
            if matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) && self.is_api_origin(&url)
            {
                let token = tokens.get(http, settings).await?;
                response = http
                    .get(url.clone())
                    .bearer_auth(token.expose())
                    .send()
                    .await
                    .map_err(|e| DinteroError::transport(OPERATION, e))?;
            }
            if !response.status().is_redirection() {
                break response;
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(DinteroError::permanent(
                    OPERATION,
                    format!(
                        "refused: more than {MAX_REDIRECTS} redirects, the last to `{}`",
                        http::redact_url(url.as_str())
                    ),
                ));
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    DinteroError::permanent(
                        OPERATION,
                        format!(
                            "HTTP {} from `{}` without a Location",
                            response.status(),
                            http::redact_url(url.as_str())
                        ),
                    )
                })?;
            let next = url.join(location).map_err(|e| {
                DinteroError::permanent(OPERATION, format!("redirect to `{location}`: {e}"))
            })?;
            url = self.check_url(next.as_str()).map_err(|e| {
                e.map_message(|m| {
                    format!(
                        "redirect {redirects} from `{}`: {m}",
                        http::redact_url(url.as_str())
                    )
                })
            })?;
        };
        if !response.status().is_success() {
            return Err(status_error(OPERATION, response).await);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let body = http::read_limited(response, limit)
            .await
            .map_err(|e| match e {
                http::ReadError::TooLarge { .. } => self.too_large(),
                broken => DinteroError::new(OPERATION, broken.into()),
            })?;
        Ok((content_type, body))
    }

    fn too_large(&self) -> DinteroError {
        DinteroError::permanent(
            OPERATION,
            format!(
                "refused: the document is over the limit (dintero.max_document_bytes = {})",
                self.max_bytes
            ),
        )
    }
}

fn check_pdf(body: Bytes) -> Result<Bytes, DinteroError> {
    let tail = &body[body.len().saturating_sub(1024)..];
    if tail.windows(5).any(|w| w == b"%%EOF") {
        Ok(body)
    } else {
        Err(DinteroError::permanent(
            OPERATION,
            format!(
                "the PDF is truncated: no %%EOF marker at its end ({} bytes)",
                body.len()
            ),
        ))
    }
}

fn not_a_pdf(content_type: Option<&str>, body: &[u8]) -> DinteroError {
    DinteroError::permanent(
        OPERATION,
        format!(
            "refused: the body is not a PDF (Content-Type {}, starts with {:?})",
            content_type.unwrap_or("none"),
            excerpt(&body[..body.len().min(16)])
        ),
    )
}
