//! Fetching the invoice PDF behind `kravia:invoice_url`, which is either the PDF itself or a
//! Files API descriptor (`{"url", "mime_type", "expires_at"}`) whose short-lived `url` holds it.
//!
//! The URL comes from transaction metadata, so it is treated as untrusted: only allow-listed
//! hosts, `https` (plain `http` on loopback only), a size limit, and bytes that are a PDF.

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use serde::Deserialize;
use url::{Host, Url};

use super::{DinteroSettings, excerpt, status_error, token::TokenCache, transport_error};
use crate::gateway::GatewayError;

const OPERATION: &str = "fetch invoice PDF";

/// Which URLs the PDF may be read from, and how large it may be.
#[derive(Debug, Clone)]
pub struct DocumentPolicy {
    hosts: Vec<String>,
    api_hosts: Vec<String>,
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

/// True for `localhost`, 127.0.0.0/8 and `::1`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn host_of(url: &Url) -> Option<String> {
    url.host_str()
        .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
}

impl DocumentPolicy {
    /// Allow-list: the hosts of `api_url` and `auth_url`, `cdn.dintero.com`, and
    /// `dintero.document_hosts`.
    pub fn from_settings(settings: &DinteroSettings) -> Self {
        let api_hosts: Vec<String> = [&settings.api_url, &settings.auth_url]
            .into_iter()
            .filter_map(host_of)
            .collect();
        let mut hosts = api_hosts.clone();
        hosts.push("cdn.dintero.com".into());
        hosts.extend(
            settings
                .document_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase()),
        );
        Self {
            hosts,
            api_hosts,
            max_bytes: settings.max_document_bytes,
        }
    }

    /// Refuses a URL outside the policy, saying why.
    pub fn check_url(&self, raw: &str) -> Result<Url, GatewayError> {
        let url = Url::parse(raw).map_err(|e| {
            GatewayError::permanent(OPERATION, format!("`{raw}` is not a URL: {e}"))
        })?;
        let host = host_of(&url).unwrap_or_default();
        if !self.hosts.contains(&host) {
            return Err(GatewayError::permanent(
                OPERATION,
                format!(
                    "refused host `{host}` in `{url}`: not in the allow-list [{}] (add it to dintero.document_hosts if it is yours)",
                    self.hosts.join(", ")
                ),
            ));
        }
        match url.scheme() {
            "https" => Ok(url),
            "http" if is_loopback(&url) => Ok(url),
            "http" => Err(GatewayError::permanent(
                OPERATION,
                format!("refused plain http URL `{url}`: https is required except on loopback"),
            )),
            other => Err(GatewayError::permanent(
                OPERATION,
                format!("refused `{other}:` URL `{url}`: only https is fetched"),
            )),
        }
    }

    fn is_api_host(&self, url: &Url) -> bool {
        host_of(url).is_some_and(|h| self.api_hosts.contains(&h))
    }

    pub(super) async fn fetch(
        &self,
        http: &reqwest::Client,
        tokens: &TokenCache,
        settings: &DinteroSettings,
        raw: &str,
    ) -> Result<Bytes, GatewayError> {
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
            GatewayError::permanent(
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
            return Err(GatewayError::permanent(
                OPERATION,
                format!("the file is `{mime}`, not application/pdf"),
            ));
        }
        if let Some(expires_at) = descriptor.expires_at
            && expires_at < jiff::Timestamp::now()
        {
            // A fresh descriptor comes with the next GET; worth a retry.
            return Err(GatewayError::temporary(
                OPERATION,
                format!("the file URL expired at {expires_at}"),
            ));
        }
        let file_url = self.check_url(&descriptor.url)?;
        let (content_type, body) = self.get(http, tokens, settings, &file_url).await?;
        if body.starts_with(b"%PDF-") {
            check_pdf(body)
        } else {
            Err(not_a_pdf(content_type.as_deref(), &body))
        }
    }

    /// GET with the size limit enforced while streaming; retries once with the bearer token on
    /// 401/403, but only towards Dintero's own API hosts.
    async fn get(
        &self,
        http: &reqwest::Client,
        tokens: &TokenCache,
        settings: &DinteroSettings,
        url: &Url,
    ) -> Result<(Option<String>, Bytes), GatewayError> {
        let mut response = http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| transport_error(OPERATION, &e))?;
        if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) && self.is_api_host(url)
        {
            let token = tokens.get(http, settings).await?;
            response = http
                .get(url.clone())
                .bearer_auth(token.expose())
                .send()
                .await
                .map_err(|e| transport_error(OPERATION, &e))?;
        }
        if !response.status().is_success() {
            return Err(status_error(OPERATION, response).await);
        }
        if let Some(length) = response.content_length()
            && length > self.max_bytes
        {
            return Err(self.too_large(length));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(OPERATION, &e))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > self.max_bytes {
                return Err(self.too_large(body.len() as u64));
            }
        }
        Ok((content_type, body.freeze()))
    }

    fn too_large(&self, size: u64) -> GatewayError {
        GatewayError::permanent(
            OPERATION,
            format!(
                "refused: the document is over the limit ({size} bytes or more > dintero.max_document_bytes = {})",
                self.max_bytes
            ),
        )
    }
}

fn check_pdf(body: Bytes) -> Result<Bytes, GatewayError> {
    let tail = &body[body.len().saturating_sub(1024)..];
    if tail.windows(5).any(|w| w == b"%%EOF") {
        Ok(body)
    } else {
        Err(GatewayError::permanent(
            OPERATION,
            format!(
                "the PDF is truncated: no %%EOF marker at its end ({} bytes)",
                body.len()
            ),
        ))
    }
}

fn not_a_pdf(content_type: Option<&str>, body: &[u8]) -> GatewayError {
    GatewayError::permanent(
        OPERATION,
        format!(
            "refused: the body is not a PDF (Content-Type {}, starts with {:?})",
            content_type.unwrap_or("none"),
            excerpt(&body[..body.len().min(16)])
        ),
    )
}
