//! Client-credentials token, cached until shortly before `expires_in`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{DinteroSettings, status_error};
use crate::dintero::DinteroError;
use postbud_channel::{ErrorKind, RetryClass, http};

#[derive(Debug, Default)]
pub(super) struct TokenCache {
    current: Mutex<Option<(SecretString, Instant)>>,
}

/// A bearer token; only [`Token::expose`] shows it.
pub(super) struct Token(SecretString);

impl Token {
    pub(super) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: SecretString,
    expires_in: u64,
}

impl TokenCache {
    /// A valid token: the cached one, or a new one when it is close to expiry. Concurrent callers
    /// wait for one fetch instead of each fetching.
    pub(super) async fn get(
        &self,
        http: &reqwest::Client,
        settings: &DinteroSettings,
    ) -> Result<Token, DinteroError> {
        let mut current = self.current.lock().await;
        if let Some((token, valid_until)) = current.as_ref()
            && Instant::now() < *valid_until
        {
            return Ok(Token(token.clone()));
        }
        let (token, lifetime) = fetch(http, settings).await?;
        // Refresh a little early: a minute, or a tenth of short lifetimes.
        let margin = Duration::from_secs(60).min(lifetime / 10);
        *current = Some((token.clone(), Instant::now() + lifetime - margin));
        Ok(Token(token))
    }

    pub(super) async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

/// A new token, read again in place under [`super::retry::read`]'s policy when Dintero is busy.
async fn fetch(
    http: &reqwest::Client,
    settings: &DinteroSettings,
) -> Result<(SecretString, Duration), DinteroError> {
    super::retry::read(OPERATION, || fetch_once(http, settings)).await
}

const OPERATION: &str = "get access token";

async fn fetch_once(
    http: &reqwest::Client,
    settings: &DinteroSettings,
) -> Result<(SecretString, Duration), DinteroError> {
    let url = format!(
        "{}/accounts/{}/auth/token",
        settings.auth_url.as_str().trim_end_matches('/'),
        settings.account_id
    );
    let body = serde_json::json!({
        "grant_type": "client_credentials",
        "audience": format!("https://api.dintero.com/v1/accounts/{}", settings.account_id),
    });
    let response = http
        .post(&url)
        .basic_auth(
            &settings.client_id,
            Some(settings.client_secret.expose_secret()),
        )
        .json(&body)
        .send()
        .await
        .map_err(|e| DinteroError::transport(OPERATION, e))?;
    let status = response.status();
    if status == StatusCode::OK {
        let body = http::read_limited(response, http::ANSWER_LIMIT)
            .await
            // Whatever broke the answer, the credentials were accepted: worth another attempt.
            .map_err(|e| {
                DinteroError::new(OPERATION, e.into()).with_retry_class(RetryClass::Temporary)
            })?;
        let token: AccessToken = serde_json::from_slice(&body).map_err(|e| {
            DinteroError::permanent(OPERATION, format!("the token response is malformed: {e}"))
        })?;
        return Ok((
            token.access_token,
            // Dintero's number, not ours: a day at most, so no Instant arithmetic can overflow.
            Duration::from_secs(token.expires_in.clamp(1, 24 * 3600)),
        ));
    }
    let error = status_error(OPERATION, response).await;
    if error.kind() != ErrorKind::Unauthorized {
        return Err(error);
    }
    // Our credentials, not the transaction, are at fault: jobs wait (with backoff) for an
    // operator to fix them instead of failing for good, and the commands that meet this exit
    // as a configuration error.
    Err(error
        .with_retry_class(RetryClass::Temporary)
        .map_message(|m| {
            format!(
                "{m} (check dintero.client_id and dintero.client_secret for account {})",
                settings.account_id
            )
        }))
}
