//! Credentials a channel's sink refused (an SMTP 535, an SSH key the server does not accept, a
//! provider's 401): the configuration's to fix, never the invoice's failure. The delivery stops
//! for the operator with the key to fix, without burning its retries and without running the
//! route's fallbacks (the invoice would reach the customer twice once the key is fixed and the
//! delivery retried).

use postbud_channel::{ChannelError, ErrorKind, RetryClass};

/// How the reason of a delivery stopped for refused credentials starts: `postbud deliver`
/// recognises it to exit as a configuration error (2).
pub const CREDENTIALS_REFUSED: &str = "credentials refused";

/// The key to fix for `error` of the channel instance `channel`: `channels.<name>.<key>` when
/// the channel named its key, the instance's table otherwise.
pub fn key_to_fix(channel: &str, error: &ChannelError) -> String {
    match error.config_key() {
        Some(key) => format!("channels.{channel}.{key}"),
        None => format!("the credentials of channels.{channel}"),
    }
}

/// The reason a delivery through `channel` of `transaction_id` stops with, when `error` says
/// the sink refused the credentials the channel holds at a key it names; `None` for any other
/// error. An unauthorized answer the channel cannot tie to its credentials (no key: a
/// receiver's own rule) is an ordinary failure and runs the fallback; one marked temporary (an
/// expired link, a token to fetch again) is retried.
pub fn refused(channel: &str, transaction_id: &str, error: &ChannelError) -> Option<String> {
    let ours = error.kind() == ErrorKind::Unauthorized
        && error.retry_class() == RetryClass::Permanent
        && error.config_key().is_some();
    ours.then(|| {
        format!(
            "{CREDENTIALS_REFUSED} ({}): {}; fix {}, then `postbud retry {transaction_id}`",
            error.kind(),
            error.message(),
            key_to_fix(channel, error)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refused_credentials_stop_and_the_reason_names_the_key() {
        let smtp = ChannelError::unauthorized("SMTP 535 5.7.8 bad credentials")
            .with_config_key("password");
        let reason = refused("customer-email", "T1.x", &smtp).expect("stopped");
        assert!(reason.starts_with(CREDENTIALS_REFUSED), "{reason}");
        assert!(
            reason.contains("fix channels.customer-email.password")
                && reason.contains("SMTP 535")
                && reason.contains("postbud retry T1.x"),
            "{reason}"
        );
        let unnamed = ChannelError::unauthorized("HTTP 401");
        assert_eq!(refused("erp", "T1.x", &unnamed), None, "no key: a failure");
        let expired = ChannelError::unauthorized("HTTP 401")
            .with_config_key("token")
            .with_retry_class(RetryClass::Temporary);
        assert_eq!(refused("erp", "T1.x", &expired), None, "temporary: retried");
        assert_eq!(
            refused("erp", "T1.x", &ChannelError::rate_limited("429")),
            None
        );
    }
}
