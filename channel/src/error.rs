//! A failed attempt, classified twice, as OpenDAL classifies its errors: what happened
//! ([`ErrorKind`], which grows with new sinks) and whether trying again can help
//! ([`RetryClass`], which the engine's retry policy decides over).

use std::{error::Error as StdError, fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

/// What happened, apart from whether trying again can help.
///
/// Not exhaustive: new sinks bring new reasons. Match the ones you act on and treat the rest as
/// [`ErrorKind::Unexpected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The recipient's side refused what was sent: a mailbox that does not exist, an SMTP 550,
    /// an HTTP 4xx that is none of the reasons below.
    Refused,
    /// The sink refused Postbud's credentials (SMTP 535, SSH authentication, HTTP 401/403): the
    /// configuration's to fix, not the invoice's failure.
    Unauthorized,
    /// The sink asks Postbud to slow down (HTTP 429, a provider's throttling code).
    RateLimited,
    /// What the request names is not there (HTTP 404/410, a missing directory).
    NotFound,
    /// What Postbud would send cannot be sent as it is: a phone number or an address that is not
    /// one, a template that fails, an HTTP 400/422.
    InvalidInput,
    /// The sink could not be reached or is down (a refused connection, HTTP 5xx, SMTP 4xx).
    Unavailable,
    /// The sink did not answer in time.
    TimedOut,
    /// The sink holds something that conflicts (HTTP 409, a file name taken meanwhile).
    Conflict,
    /// Anything else: the sink's answer or the failure does not say more.
    Unexpected,
}

impl ErrorKind {
    /// Whether an error of this kind is worth retrying when nothing says otherwise:
    /// rate limits, unavailability, timeouts and conflicts pass; the rest would meet the same
    /// answer again.
    pub fn usual_retry_class(self) -> RetryClass {
        match self {
            Self::RateLimited | Self::Unavailable | Self::TimedOut | Self::Conflict => {
                RetryClass::Temporary
            }
            _ => RetryClass::Permanent,
        }
    }

    /// The name the history and `postbud status` show: `not authorised`, `rate limited`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Unauthorized => "not authorised",
            Self::RateLimited => "rate limited",
            Self::NotFound => "not found",
            Self::InvalidInput => "invalid input",
            Self::Unavailable => "unavailable",
            Self::TimedOut => "timed out",
            Self::Conflict => "conflict",
            Self::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether trying again can help.
///
/// Exhaustive on purpose: the engine's retry policy is a decision over exactly these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryClass {
    /// Retry later: a timeout, a 5xx, a 4xx SMTP reply, a lost connection.
    Temporary,
    /// Retrying sends the same thing to the same refusal: a bad address, a 410, a 550.
    Permanent,
}

impl fmt::Display for RetryClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Temporary => "temporary",
            Self::Permanent => "permanent",
        })
    }
}

/// A failed delivery attempt, classified: what happened ([`ChannelError::kind`]), whether to
/// retry ([`ChannelError::retry_class`]), how long the sink asked to wait, the configuration key
/// to fix when the configuration is at fault, and the underlying error
/// ([`std::error::Error::source`]).
///
/// ```
/// use postbud_channel::{ChannelError, ErrorKind, RetryClass};
///
/// let refused = ChannelError::unauthorized("SMTP 535 5.7.8 authentication failed")
///     .with_config_key("password");
/// assert_eq!(refused.kind(), ErrorKind::Unauthorized);
/// assert_eq!(refused.retry_class(), RetryClass::Permanent);
/// assert_eq!(refused.config_key(), Some("password"));
/// assert_eq!(
///     refused.to_string(),
///     "SMTP 535 5.7.8 authentication failed (not authorised, permanent)"
/// );
/// assert!(ChannelError::temporary("the line dropped").is_temporary());
/// ```
#[derive(Debug, Clone)]
pub struct ChannelError {
    kind: ErrorKind,
    retry_class: RetryClass,
    message: String,
    retry_after: Option<Duration>,
    config_key: Option<String>,
    outcome_unknown: bool,
    reference: Option<String>,
    // In an `Arc` so that the error stays `Clone`.
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl ChannelError {
    /// A failure of `kind`, retried as such failures usually are
    /// ([`ErrorKind::usual_retry_class`]).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            retry_class: kind.usual_retry_class(),
            message: message.into(),
            retry_after: None,
            config_key: None,
            outcome_unknown: false,
            reference: None,
            source: None,
        }
    }

    /// A failure worth retrying that says nothing more ([`ErrorKind::Unexpected`]).
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unexpected, message).with_retry_class(RetryClass::Temporary)
    }

    /// A failure that retrying cannot fix and that says nothing more
    /// ([`ErrorKind::Unexpected`]).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unexpected, message)
    }

    /// The recipient's side refused what was sent (permanent).
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }

    /// The sink refused the configured credentials (permanent; name the key with
    /// [`ChannelError::with_config_key`]).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    /// The sink asks to slow down (temporary; add its wait with
    /// [`ChannelError::with_retry_after`]).
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited, message)
    }

    /// What the request names is not there (permanent).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// What would be sent cannot be sent as it is (permanent).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The sink cannot be reached or is down (temporary).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// The sink did not answer in time (temporary).
    pub fn timed_out(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TimedOut, message)
    }

    /// The sink holds something that conflicts (temporary).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// The same failure, retried (or not) against its kind's habit: a 403 from a CDN for a link
    /// that expired is worth another attempt with a fresh link.
    pub fn with_retry_class(mut self, retry_class: RetryClass) -> Self {
        self.retry_class = retry_class;
        self
    }

    /// Asks the engine not to retry before this delay.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// [`ChannelError::with_retry_after`] when the sink gave a wait.
    pub fn with_retry_after_opt(self, delay: Option<Duration>) -> Self {
        match delay {
            Some(delay) => self.with_retry_after(delay),
            None => self,
        }
    }

    /// Names the key of the channel's table whose value is at fault, as the channel's
    /// configuration names it (`password`, `smtp_url`); the engine names it in full
    /// (`channels.<name>.password`).
    pub fn with_config_key(mut self, key: impl Into<String>) -> Self {
        self.config_key = Some(key.into());
        self
    }

    /// Says the sink may already have what this attempt sent: an earlier attempt's answer was
    /// lost, and this answer does not tell whether that one got through (a provider that answers
    /// a repeated idempotency key with an error it does not word as such). The engine then
    /// neither retries nor runs the route's fallback, which could give the customer the invoice
    /// twice: the delivery is dead-lettered with this message for a person to look at the sink.
    /// The engine reads this before the retry class, which a later `with_retry_class` may change.
    pub fn with_outcome_unknown(mut self) -> Self {
        self.outcome_unknown = true;
        self.retry_class = RetryClass::Permanent;
        self
    }

    /// Whether the sink may already have the invoice ([`ChannelError::with_outcome_unknown`]).
    pub fn outcome_unknown(&self) -> bool {
        self.outcome_unknown
    }

    /// The sink's id for what this attempt sent, where it is known before the sink answers (an
    /// idempotency key the sink's events carry, as [`Receipt::reference`](crate::Receipt) would
    /// be): kept on a delivery stopped by [`ChannelError::with_outcome_unknown`], so the sink's
    /// later evidence naming it settles the delivery (delivered, or failed with the fallback).
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// [`ChannelError::with_reference`].
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    /// Keeps the underlying error, for [`std::error::Error::source`]. Its `Display` must hold no
    /// secret (strip a URL that may carry one, as `reqwest::Error::without_url` does).
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same failure, its message rewritten by `f` (to add what the caller knows).
    pub fn map_message(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.message = f(&self.message);
        self
    }

    /// What happened.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Temporary or permanent.
    pub fn retry_class(&self) -> RetryClass {
        self.retry_class
    }

    /// True for [`RetryClass::Temporary`].
    pub fn is_temporary(&self) -> bool {
        self.retry_class == RetryClass::Temporary
    }

    /// What went wrong, with the sink's own words (status, reply) where it gave any.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the sink asked us to wait (HTTP `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The key of the channel's table to fix, when the channel named one.
    pub fn config_key(&self) -> Option<&str> {
        self.config_key.as_deref()
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.message, self.kind, self.retry_class)
    }
}

impl StdError for ChannelError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_kept_and_the_error_stays_clone() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let error = ChannelError::unavailable("the upload stopped").with_source(io);
        let copy = error.clone();
        assert_eq!(
            StdError::source(&copy).map(ToString::to_string).as_deref(),
            Some("reset by peer")
        );
        assert!(copy.is_temporary());
    }

    #[test]
    fn a_kind_s_usual_class_can_be_overridden() {
        let expired = ChannelError::unauthorized("403 from the CDN")
            .with_retry_class(RetryClass::Temporary)
            .with_retry_after_opt(Some(Duration::from_secs(3)));
        assert_eq!(expired.kind(), ErrorKind::Unauthorized);
        assert!(expired.is_temporary());
        assert_eq!(expired.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            ChannelError::permanent("x").kind().usual_retry_class(),
            RetryClass::Permanent
        );
    }
}
