//! CSRF tokens: an HMAC of the session cookie (or, before login, of the login cookie's nonce),
//! so a token is valid for one session only and needs no storage. Checked on every POST, in
//! constant time.

use super::session::Key;

/// The token the forms of the session whose cookie is `session` carry.
pub(super) fn token(key: &Key, session: &str) -> String {
    key.tag("csrf", session)
}

/// Whether `given` is the token of `session`.
pub(super) fn check(key: &Key, session: &str, given: Option<&str>) -> bool {
    given.is_some_and(|given| key.verify("csrf", session, given))
}

/// The login form's token, bound to the nonce of the login cookie set with the form.
pub(super) fn login_token(key: &Key, nonce: &str) -> String {
    key.tag("login-csrf", nonce)
}

/// Whether `given` is the login token of `nonce` (an empty nonce is never valid).
pub(super) fn check_login(key: &Key, nonce: Option<&str>, given: Option<&str>) -> bool {
    match (nonce, given) {
        (Some(nonce), Some(given)) if !nonce.is_empty() => key.verify("login-csrf", nonce, given),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_belongs_to_one_session_and_one_purpose() {
        let key = Key::new("k");
        let t = token(&key, "session-a");
        assert!(check(&key, "session-a", Some(&t)));
        assert!(!check(&key, "session-b", Some(&t)));
        assert!(!check(&key, "session-a", None));
        assert!(!check(&key, "session-a", Some("")));
        assert!(!check(&key, "session-a", Some("zz")));
        // A login token is no session token, and the other way round.
        assert!(!check_login(&key, Some("session-a"), Some(&t)));
        let l = login_token(&key, "n");
        assert!(check_login(&key, Some("n"), Some(&l)));
        assert!(!check(&key, "n", Some(&l)));
        assert!(!check_login(&key, Some(""), Some(&login_token(&key, ""))));
    }
}
