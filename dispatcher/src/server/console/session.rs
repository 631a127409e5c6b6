//! The login session: an HMAC-signed cookie holding the user, the role, a tag of the user's
//! password hash and the expiry. Nothing is kept on the server, so any instance sharing the store
//! (and so the key) reads it; a new password hash in the configuration ends the user's sessions.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::ConsoleRole;

/// Name of the session cookie.
pub(super) const COOKIE: &str = "postbud_console";
/// Name of the short-lived cookie the login form's CSRF token is bound to.
pub(super) const LOGIN_COOKIE: &str = "postbud_console_login";
/// Longest cookie value read: anything longer is not one of ours.
const MAX_COOKIE: usize = 1024;

/// The console's signing key: made once at random and kept in the store
/// (`meta_init("console_secret")`), like the link secret.
pub(super) struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    pub(super) fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    /// `label` separates the uses of one key (session, CSRF, flash), so a tag made for one is
    /// never accepted as another.
    fn mac(&self, label: &str, message: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(label.as_bytes());
        mac.update(b"\n");
        mac.update(message.as_bytes());
        mac
    }

    /// The hex tag of `message` under `label`.
    pub(super) fn tag(&self, label: &str, message: &str) -> String {
        hex::encode(self.mac(label, message).finalize().into_bytes())
    }

    /// Whether `tag` is `message`'s under `label`, compared in constant time.
    pub(super) fn verify(&self, label: &str, message: &str, tag: &str) -> bool {
        let Ok(given) = hex::decode(tag) else {
            return false;
        };
        self.mac(label, message).verify_slice(&given).is_ok()
    }
}

/// Random hex, `bytes` long before encoding.
pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    hex::encode(buf)
}

/// A tag of a user's password hash under the console's key: a session carries the one of the
/// hash it logged in with, so changing the password (a new hash) ends every older session without
/// a session store. Being a MAC, it tells nothing about the hash.
pub(super) fn credential(key: &Key, password_hash: &str) -> String {
    key.tag("credential", password_hash)[..16].to_owned()
}

/// A logged-in user, as the cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    pub(super) user: String,
    pub(super) role: ConsoleRole,
    /// [`credential`] of the password hash the user logged in with.
    pub(super) credential: String,
    /// Unix seconds.
    pub(super) expires: i64,
    /// Makes every login's cookie, and so its CSRF token, different.
    nonce: String,
}

impl Session {
    pub(super) fn new(user: &str, role: ConsoleRole, credential: String, expires: i64) -> Self {
        Self {
            user: user.to_owned(),
            role,
            credential,
            expires,
            nonce: random_hex(16),
        }
    }

    /// `<base64url user>.<role>.<credential>.<expires>.<nonce>.<hex tag>`: only cookie-safe
    /// characters.
    pub(super) fn encode(&self, key: &Key) -> String {
        let payload = format!(
            "{}.{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&self.user),
            self.role.as_str(),
            self.credential,
            self.expires,
            self.nonce
        );
        let tag = key.tag("session", &payload);
        format!("{payload}.{tag}")
    }

    /// The session `value` holds, when `key` signed it and it has not expired at `now`.
    pub(super) fn decode(value: &str, key: &Key, now: i64) -> Option<Self> {
        if value.len() > MAX_COOKIE {
            return None;
        }
        let (payload, tag) = value.rsplit_once('.')?;
        if !key.verify("session", payload, tag) {
            return None;
        }
        let mut parts = payload.split('.');
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let role = match parts.next()? {
            "viewer" => ConsoleRole::Viewer,
            "operator" => ConsoleRole::Operator,
            _ => return None,
        };
        let credential = parts.next()?.to_owned();
        let expires: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_owned();
        if parts.next().is_some() || expires <= now {
            return None;
        }
        Some(Self {
            user,
            role,
            credential,
            expires,
            nonce,
        })
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to the console's path, Secure when
/// the console is served over https. `max_age` 0 deletes the cookie.
pub(super) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: u64,
) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_round_trips_and_refuses_tampering_and_expiry() {
        let key = Key::new("k");
        let session = Session::new(
            "kari; o'brien",
            ConsoleRole::Viewer,
            credential(&key, "$argon2id$…"),
            2_000,
        );
        let value = session.encode(&key);
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{value}"
        );
        assert_eq!(Session::decode(&value, &key, 1_000), Some(session.clone()));
        assert_eq!(Session::decode(&value, &key, 2_000), None, "expired");
        assert_eq!(Session::decode(&value, &Key::new("other"), 1_000), None);
        let promoted = value.replacen(".viewer.", ".operator.", 1);
        assert_eq!(Session::decode(&promoted, &key, 1_000), None);
        let later = value.replacen(".2000.", ".9000.", 1);
        assert_eq!(Session::decode(&later, &key, 1_000), None);
        assert_eq!(Session::decode("", &key, 0), None);
        assert_eq!(Session::decode(&"a.".repeat(2000), &key, 0), None);
        let other_password =
            value.replacen(&session.credential, &credential(&key, "$argon2id$other"), 1);
        assert_eq!(Session::decode(&other_password, &key, 1_000), None);
        // Two logins of one user differ.
        let login = || Session::new("a", ConsoleRole::Viewer, String::new(), 1).encode(&key);
        assert_ne!(login(), login());
    }
}
