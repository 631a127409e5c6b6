//! The operator console at `/console` (`[console] enabled = true`): invoices and their
//! verdicts, one invoice's timeline and PDF, and, for operators, retry, redeliver and void, each
//! confirmed and written to the audit log. Rendered on the server, usable without JavaScript.
//!
//! - [`auth`]: users, password checks, the login and logout handlers;
//! - [`session`]: the signed session cookie; [`csrf`]: form tokens; [`throttle`]: login limits;
//! - [`pages`]: the GET pages; [`actions`]: the POST actions; [`audit`]: the audit log;
//! - templates (minijinja, auto-escaped) and one stylesheet, embedded in the binary.
//!
//! Every response carries a Content-Security-Policy that allows no script at all.

mod actions;
mod audit;
mod auth;
mod csrf;
mod pages;
mod session;
mod throttle;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use minijinja::Environment;
use serde::Serialize;

use self::session::{Key, Session};
use crate::{App, config::ConsoleRole};

/// The Content-Security-Policy of every console response: no script, no inline style, nothing
/// from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const TEMPLATES: [(&str, &str); 7] = [
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
    ("list.html", include_str!("templates/list.html")),
    ("invoice.html", include_str!("templates/invoice.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

const STYLESHEET: &str = include_str!("assets/console.css");

/// The console's state: configuration read once, the signing key, the throttle, templates.
pub(crate) struct Console {
    app: Arc<App>,
    /// `<public path>/console`: where links and forms point, and the cookies' path.
    root: String,
    secure: bool,
    session_ttl: Duration,
    users: auth::Users,
    throttle: throttle::Throttle,
    audit: audit::Audit,
    key: tokio::sync::OnceCell<Key>,
    templates: Environment<'static>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("root", &self.root)
            .field("secure", &self.secure)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

/// Who is logged in, with the CSRF token of their forms.
#[derive(Debug, Clone)]
pub(super) struct Current {
    session: Session,
    csrf: String,
}

/// What every page's `<nav>` shows.
#[derive(Debug, Serialize)]
struct Who<'a> {
    name: &'a str,
    role: &'a str,
}

/// The console's routes, under `/console` (the server's public path, when it has one, is taken
/// off before they see the request).
pub(crate) fn routes(app: Arc<App>) -> Router {
    let settings = app.settings();
    let prefix = settings.server.public_path().unwrap_or_default();
    let mut templates = Environment::new();
    for (name, source) in TEMPLATES {
        templates
            .add_template(name, source)
            .expect("the embedded templates parse (tested)");
    }
    let console = Arc::new(Console {
        root: format!("{prefix}/console"),
        secure: settings
            .server
            .public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https"),
        session_ttl: settings.console.session_ttl,
        users: auth::Users::new(&settings.console),
        throttle: throttle::Throttle::new(settings.console.login_attempts_per_minute),
        audit: audit::Audit,
        key: tokio::sync::OnceCell::new(),
        templates,
        app,
    });
    Router::new()
        .route("/console", get(pages::list))
        .route("/console/", get(pages::list))
        .route("/console/invoices", get(pages::list))
        .route("/console/invoices/{id}", get(pages::invoice))
        .route("/console/invoices/{id}/{action}", post(actions::invoice))
        .route("/console/retry-matching", post(actions::retry_matching))
        .route("/console/audit", get(pages::audit))
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/assets/console.css", get(stylesheet))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such console page").into_response()
}

/// The headers every console response carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ] {
        headers.insert(name, value);
    }
    // Pages hold personal data: not kept by browsers or proxies.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A 303 to `to`.
fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad redirect").into_response(),
    }
}

impl Console {
    fn root(&self) -> String {
        self.root.clone()
    }

    /// The signing key, made on first use and kept in the store.
    async fn key(&self) -> Result<&Key, Response> {
        self.key
            .get_or_try_init(|| async {
                let made = session::random_hex(32);
                self.app
                    .store()
                    .meta_init("console_secret", &made)
                    .await
                    .map(|k| Key::new(&k))
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the console's key could not be read from the store");
                (StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry").into_response()
            })
    }

    /// Whether `next` (from a login form) is a path of this console: never another site.
    fn is_own_path(&self, next: &str) -> bool {
        let Some(rest) = next.strip_prefix(&self.root) else {
            return false;
        };
        (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
            && !next.contains("//")
            && !next.contains('\\')
            && !next.chars().any(char::is_control)
            && next.len() <= 2048
    }

    /// The logged-in user, if the request carries a valid session of a user still configured
    /// with the same role and password hash.
    async fn current(&self, headers: &HeaderMap) -> Result<Option<Current>, Response> {
        let Some(value) = session::cookie(headers, session::COOKIE) else {
            return Ok(None);
        };
        let key = self.key().await?;
        let now = jiff::Timestamp::now().as_second();
        Ok(Session::decode(value, key, now)
            .filter(|s| self.users.still_hold(s, key))
            .map(|session| Current {
                session,
                csrf: csrf::token(key, value),
            }))
    }

    /// The user of a GET page; otherwise a 303 to the login page that comes back to `uri`.
    async fn authorize_get(
        &self,
        headers: &HeaderMap,
        uri: &axum::http::Uri,
    ) -> Result<Current, Response> {
        match self.current(headers).await? {
            Some(current) => Ok(current),
            None => {
                let prefix = self.root.strip_suffix("/console").unwrap_or_default();
                let here = format!(
                    "{prefix}{}",
                    uri.path_and_query().map_or(uri.path(), |p| p.as_str())
                );
                let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
                Err(see_other(&format!("{}/login?next={next}", self.root)))
            }
        }
    }

    /// The user of a POST, whose form carries their CSRF token; otherwise 403, nothing done.
    async fn authorize_post(
        &self,
        headers: &HeaderMap,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<Current, Response> {
        let Some(value) = session::cookie(headers, session::COOKIE) else {
            return Err(self
                .message(
                    StatusCode::FORBIDDEN,
                    None,
                    "Forbidden",
                    "forbidden: not logged in",
                )
                .await);
        };
        let key = self.key().await?;
        let Some(current) = self.current(headers).await? else {
            return Err(self
                .message(
                    StatusCode::FORBIDDEN,
                    None,
                    "Forbidden",
                    "forbidden: the session has ended; log in again",
                )
                .await);
        };
        if !csrf::check(key, value, form.get("csrf").map(String::as_str)) {
            tracing::warn!(
                user = current.session.user,
                "console form without a valid CSRF token refused"
            );
            return Err(self
                .message(
                    StatusCode::FORBIDDEN,
                    Some(&current),
                    "Forbidden",
                    "forbidden: the form's CSRF token is missing or wrong; reload the page and try again",
                )
                .await);
        }
        Ok(current)
    }

    /// An operator's POST; a viewer's is refused (403).
    async fn authorize_operator(
        &self,
        headers: &HeaderMap,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<Current, Response> {
        let current = self.authorize_post(headers, form).await?;
        if current.session.role != ConsoleRole::Operator {
            tracing::warn!(
                user = current.session.user,
                "a viewer's console action refused"
            );
            return Err(self
                .message(
                    StatusCode::FORBIDDEN,
                    Some(&current),
                    "Forbidden",
                    "forbidden: only an operator may do this; nothing was changed",
                )
                .await);
        }
        Ok(current)
    }

    fn set_cookie(&self, response: &mut Response, name: &str, value: &str, max_age: u64) {
        let cookie = session::set_cookie(name, value, &self.root, self.secure, max_age);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }

    /// Renders `template` with `context` plus what every page needs.
    fn render(
        &self,
        status: StatusCode,
        template: &str,
        current: Option<&Current>,
        notice: Option<&str>,
        context: minijinja::Value,
    ) -> Response {
        let who = current.map(|c| Who {
            name: &c.session.user,
            role: c.session.role.as_str(),
        });
        let base = minijinja::context! {
            // A URL's path has `"`, `<`, `>` percent-encoded: shown as it is, not with its `/`
            // escaped to `&#x2f;`; escaped when it has anything HTML would read.
            root => match self.root.contains(['"', '<', '>', '&']) {
                true => minijinja::Value::from(self.root.clone()),
                false => minijinja::Value::from_safe_string(self.root.clone()),
            },
            who => minijinja::Value::from(minijinja::value::Serde(&who)),
            csrf => current.map(|c| c.csrf.as_str()),
            notice => notice,
            operator => current.is_some_and(|c| c.session.role == ConsoleRole::Operator),
        };
        let context = minijinja::context! { ..context, ..base };
        match self
            .templates
            .get_template(template)
            .and_then(|t| t.render(context))
        {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, template, "a console template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered",
                )
                    .into_response()
            }
        }
    }

    /// A page that says one thing: forbidden, not found, unavailable.
    async fn message(
        &self,
        status: StatusCode,
        current: Option<&Current>,
        heading: &str,
        message: &str,
    ) -> Response {
        self.render(
            status,
            "message.html",
            current,
            None,
            minijinja::context! { heading, message },
        )
    }

    /// The login page, with a fresh login cookie and the token bound to it.
    async fn login_page(
        &self,
        status: StatusCode,
        next: &str,
        user: &str,
        error: Option<&str>,
    ) -> Response {
        let key = match self.key().await {
            Ok(key) => key,
            Err(response) => return response,
        };
        let nonce = session::random_hex(16);
        let mut response = self.render(
            status,
            "login.html",
            None,
            None,
            minijinja::context! {
                csrf => csrf::login_token(key, &nonce),
                next,
                user,
                error,
            },
        );
        self.set_cookie(&mut response, session::LOGIN_COOKIE, &nonce, 3600);
        response
    }

    /// A store error as a page: 503, the cause logged, not shown.
    fn unavailable(&self, current: &Current, e: &dyn std::fmt::Display) -> Response {
        tracing::error!(error = %e, "the console could not read the store");
        self.render(
            StatusCode::SERVICE_UNAVAILABLE,
            "message.html",
            Some(current),
            None,
            minijinja::context! {
                heading => "Unavailable",
                message => "The store could not be read; try again in a moment.",
            },
        )
    }

    /// A notice for the page after an action, signed so that a link cannot put words in the
    /// console's mouth: `notice=…&ns=…`.
    async fn flash(&self, text: &str) -> String {
        let tag = match self.key().await {
            Ok(key) => key.tag("flash", text),
            Err(_) => String::new(),
        };
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("notice", text)
            .append_pair("ns", &tag)
            .finish()
    }

    /// The notice of a query made by [`Console::flash`], when its signature holds.
    async fn notice<'a>(
        &self,
        query: &'a std::collections::HashMap<String, String>,
    ) -> Option<&'a str> {
        let text = query.get("notice")?;
        let key = self.key().await.ok()?;
        key.verify("flash", text, query.get("ns")?)
            .then_some(text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source).expect(name);
        }
        let html = env
            .get_template("message.html")
            .expect("template")
            .render(minijinja::context! { root => "/console", heading => "<b>", message => "x" })
            .expect("renders");
        assert!(html.contains("&lt;b&gt;"), "auto-escaped: {html}");
        assert!(!html.contains("<script"), "{html}");
    }
}
