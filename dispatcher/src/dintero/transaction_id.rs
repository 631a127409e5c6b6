//! Transaction ids as Dintero writes them: `<account id>.<opaque>`, for example
//! `T12345678.3YkJXSdSnUBXcmQSzn7uJj`.
//!
//! Every id is checked where it enters (callback, command line, library call) because the id is
//! the key of everything Postbud does once: the dispatch, every delivery id, the capture
//! reference. `x/../T`, `T/` or `./T` all read transaction `T` at an HTTP server that normalises
//! paths, but they would be different keys here; refusing every spelling but the documented one
//! keeps one transaction one dispatch.

/// Longest id accepted. Dintero's ids are 32 characters (`T12345678.` and 22 more); the bound
/// leaves room for longer opaque parts without letting a caller store arbitrary text.
pub const MAX_LEN: usize = 64;

/// An id that is not a Dintero transaction id of this account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction id {shown} is refused: {why}")]
pub struct InvalidTransactionId {
    shown: String,
    why: String,
}

impl InvalidTransactionId {
    fn new(raw: &str, why: impl Into<String>) -> Self {
        Self {
            shown: shown(raw),
            why: why.into(),
        }
    }

    /// Why the id was refused.
    pub fn reason(&self) -> &str {
        &self.why
    }
}

/// The id quoted for a message: control characters escaped, cut to a readable length.
fn shown(raw: &str) -> String {
    let escaped: String = raw
        .chars()
        .take(MAX_LEN + 8)
        .flat_map(char::escape_debug)
        .collect();
    if raw.chars().count() > MAX_LEN + 8 {
        format!("\"{escaped}…\"")
    } else {
        format!("\"{escaped}\"")
    }
}

/// Checks `raw` against the documented shape `^[TP]\d{8}\.[A-Za-z0-9]+$`, the length bound, and,
/// when `account_id` is given, that it belongs to that account.
///
/// ```
/// use postbud::dintero::transaction_id::check;
///
/// assert!(check("T12345678.3YkJXSdSnUBXcmQSzn7uJj", Some("T12345678")).is_ok());
/// assert!(check("x/../T12345678.3YkJ", Some("T12345678")).is_err());
/// assert!(check("P12345678.3YkJ", Some("T12345678")).is_err());
/// ```
pub fn check<'a>(raw: &'a str, account_id: Option<&str>) -> Result<&'a str, InvalidTransactionId> {
    if raw.len() > MAX_LEN {
        return Err(InvalidTransactionId::new(
            raw,
            format!("it is {} bytes long (at most {MAX_LEN})", raw.len()),
        ));
    }
    let Some((account, opaque)) = raw.split_once('.') else {
        return Err(InvalidTransactionId::new(
            raw,
            "expected <account id>.<letters and digits>, as in T12345678.3YkJXSdSnUBXcmQSzn7uJj",
        ));
    };
    let a = account.as_bytes();
    if a.len() != 9 || !matches!(a[0], b'T' | b'P') || !a[1..].iter().all(u8::is_ascii_digit) {
        return Err(InvalidTransactionId::new(
            raw,
            "it does not start with an account id (T or P and 8 digits, then a dot)",
        ));
    }
    if opaque.is_empty() || !opaque.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InvalidTransactionId::new(
            raw,
            "after the dot Dintero ids have only letters and digits",
        ));
    }
    if let Some(expected) = account_id
        && account != expected
    {
        return Err(InvalidTransactionId::new(
            raw,
            format!("it belongs to account {account}, not to dintero.account_id {expected}"),
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "T12345678.3YkJXSdSnUBXcmQSzn7uJj";

    #[test]
    fn the_documented_shape_is_accepted() {
        assert_eq!(check(ID, Some("T12345678")), Ok(ID));
        assert_eq!(
            check("P00000000.465UfBENeLpkBvwmqfTC4k", None).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn every_other_spelling_is_refused() {
        let long = format!("T12345678.{}", "a".repeat(60));
        for raw in [
            "x/../T12345678.3YkJXSdSnUBXcmQSzn7uJj",
            "./T12345678.3YkJXSdSnUBXcmQSzn7uJj",
            "T12345678.3YkJXSdSnUBXcmQSzn7uJj/",
            "T12345678.3YkJXSdSnUBXcmQSzn7uJj/.",
            "T12345678.3YkJ%2FX",
            " T12345678.3YkJXSdSnUBXcmQSzn7uJj",
            "T12345678.3YkJXSdSnUBXcmQSzn7uJj\n",
            "t12345678.3YkJXSdSnUBXcmQSzn7uJj",
            "T1234567.3YkJXSdSnUBXcmQSzn7uJj",
            "T12345678.",
            "T12345678",
            "T12345678.ab.cd",
            "T12345678.Ω",
            "",
            long.as_str(),
        ] {
            let err = check(raw, Some("T12345678")).expect_err(raw);
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn another_account_is_refused_by_name() {
        let err = check("T87654321.abc", Some("T12345678")).expect_err("other account");
        assert!(
            err.to_string().contains("dintero.account_id T12345678"),
            "{err}"
        );
    }

    #[test]
    fn refused_ids_are_quoted_with_control_characters_escaped_and_cut() {
        let err = check("T1\u{1b}[31m\r\n", None).expect_err("control characters");
        assert!(err.to_string().contains(r#""T1\u{1b}[31m\r\n""#), "{err}");
        let err = check(&"A".repeat(10_000), None).expect_err("huge");
        assert!(err.to_string().len() < 300, "{err}");
    }
}
