//! Who may log in: the `[[console.users]]`, their argon2id hashes checked off the async
//! threads, and the login and logout handlers.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Form, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Console, csrf,
    session::{self, LOGIN_COOKIE, Session},
};
use crate::config::{ConsoleRole, ConsoleSettings};

/// Longest password looked at; longer ones are refused before hashing.
const MAX_PASSWORD: usize = 1024;

/// The configured users.
pub(super) struct Users {
    by_name: HashMap<String, (SecretString, ConsoleRole)>,
    /// Checked for names nobody has, so a wrong name costs as long as a wrong password.
    decoy: SecretString,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Users {
    pub(super) fn new(settings: &ConsoleSettings) -> Self {
        let by_name = settings
            .users
            .iter()
            .map(|u| (u.name.clone(), (u.password_hash.clone(), u.role)))
            .collect();
        // The parameters of the decoy are those of the first user's hash, so both cost the
        // same; its salt and hash are of a password nobody knows.
        let decoy = settings
            .users
            .first()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| SecretString::from(String::new()));
        Self { by_name, decoy }
    }

    /// Whether `session` is of a user still configured with the same role and password hash.
    pub(super) fn still_hold(&self, session: &Session, key: &session::Key) -> bool {
        self.by_name.get(&session.user).is_some_and(|(hash, role)| {
            *role == session.role
                && session::credential(key, hash.expose_secret()) == session.credential
        })
    }

    /// The user's role and [`session::credential`] when `password` is theirs.
    pub(super) async fn authenticate(
        &self,
        name: &str,
        password: String,
        key: &session::Key,
    ) -> Option<(ConsoleRole, String)> {
        let (hash, role, known) = match self.by_name.get(name) {
            Some((hash, role)) => (hash.clone(), Some(*role), true),
            None => (self.decoy.clone(), None, false),
        };
        if password.len() > MAX_PASSWORD {
            return None;
        }
        // Argon2 is slow and takes 19 MiB on purpose: off the async threads, and two at a time,
        // so a flood of logins (unknown names cost a decoy hash too) waits its turn instead of
        // taking the blocking pool (and SQLite's reads on it) and the memory.
        static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let Ok(_turn) = VERIFYING.acquire().await else {
            return None;
        };
        let credential = session::credential(key, hash.expose_secret());
        let ok = tokio::task::spawn_blocking(move || {
            crate::password::verify(&password, hash.expose_secret())
        })
        .await
        .unwrap_or(false);
        (ok && known).then_some((role?, credential))
    }
}

/// `GET /console/login`.
pub(super) async fn login_form(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let next = query
        .get("next")
        .map(String::as_str)
        .filter(|n| console.is_own_path(n))
        .unwrap_or_default();
    // Already logged in: nothing to do here.
    if let Ok(Some(_)) = console.current(&headers).await {
        let to = if next.is_empty() {
            console.root()
        } else {
            next.to_owned()
        };
        return super::see_other(&to);
    }
    console.login_page(StatusCode::OK, next, "", None).await
}

/// `POST /console/login`.
pub(super) async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let key = match console.key().await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    if !csrf::check_login(key, session::cookie(&headers, LOGIN_COOKIE), field("csrf")) {
        return console
            .message(
                StatusCode::FORBIDDEN,
                None,
                "Forbidden",
                "The login form has expired or did not come from this console; reload the login page and try again.",
            )
            .await;
    }
    let user = field("user").unwrap_or_default().to_owned();
    let next = field("next")
        .filter(|n| console.is_own_path(n))
        .unwrap_or_default()
        .to_owned();
    let address = peer
        .map(|axum::Extension(ConnectInfo(addr))| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    // Per address, and per user from that address: a user's window filled from elsewhere
    // must not lock the real user out, nor tell which names are configured.
    let keys = vec![
        format!("addr:{address}"),
        format!(
            "user:{}@{address}",
            user.chars().take(64).collect::<String>()
        ),
    ];
    if let Err(wait) = console.throttle.attempt(&keys) {
        tracing::warn!(user, address, "console login throttled");
        let mut response = console
            .login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                &user,
                Some("Too many login attempts; wait a minute and try again."),
            )
            .await;
        if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let password = field("password").unwrap_or_default().to_owned();
    let Some((role, credential)) = console.users.authenticate(&user, password, key).await else {
        tracing::warn!(user, address, "console login refused");
        return console
            .login_page(
                StatusCode::OK,
                &next,
                &user,
                Some("Wrong user name or password."),
            )
            .await;
    };
    tracing::info!(user, role = role.as_str(), address, "console login");
    let ttl = console.session_ttl;
    let expires = jiff::Timestamp::now().as_second() + ttl.as_secs() as i64;
    let value = Session::new(&user, role, credential, expires).encode(key);
    let to = if next.is_empty() {
        console.root()
    } else {
        next
    };
    let mut response = super::see_other(&to);
    console.set_cookie(&mut response, session::COOKIE, &value, ttl.as_secs());
    console.set_cookie(&mut response, LOGIN_COOKIE, "", 0);
    response
}

/// `POST /console/logout`: the cookie is deleted (a stolen copy stays valid until it expires:
/// sessions are not stored).
pub(super) async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(response) = console.authorize_post(&headers, &form).await {
        return response;
    }
    let mut response = super::see_other(&format!("{}/login", console.root()));
    console.set_cookie(&mut response, session::COOKIE, "", 0);
    response.into_response()
}
