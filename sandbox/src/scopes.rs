//! The scopes of the sandbox's API client. Dintero grants an API client scopes (`read:checkout`,
//! `write:checkout`, `admin:checkout`); a token of a client without the one an endpoint needs is
//! answered 403. The sandbox grants everything unless `admin:checkout` is withheld
//! ([`crate::Sandbox::withhold_scope`], or `PUT /sandbox/scopes/withheld`): then the admin
//! endpoints (`/v1/admin/...`: the checkout configuration, payment profiles) answer 403.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::put,
};

use crate::{
    Shared,
    wire::{authorized, error},
};

/// The scope every `/v1/admin/...` endpoint needs.
pub const ADMIN_CHECKOUT: &str = "admin:checkout";

/// Scopes the client is not granted.
#[derive(Debug, Default)]
pub(crate) struct Withheld(std::sync::Mutex<BTreeSet<String>>);

impl Withheld {
    pub(crate) fn set(&self, scopes: impl IntoIterator<Item = String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = scopes.into_iter().collect();
    }

    pub(crate) fn add(&self, scope: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope.to_owned());
    }

    fn contains(&self, scope: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(scope)
    }
}

/// `PUT /sandbox/scopes/withheld` with a JSON list of scopes (`["admin:checkout"]`; `[]` grants
/// everything again).
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new().route(
        "/sandbox/scopes/withheld",
        put(
            |State(shared): State<Arc<Shared>>, Json(scopes): Json<Vec<String>>| async move {
                shared.withheld.set(scopes);
                StatusCode::NO_CONTENT
            },
        ),
    )
}

/// Answers an admin endpoint 403 when `admin:checkout` is withheld, after the token check, as
/// Dintero does: a bad token is still a 401. The body does not name the scope; Dintero's need
/// not, and Postbud must say which to grant on its own.
pub(crate) async fn enforce(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/v1/admin/") && shared.withheld.contains(ADMIN_CHECKOUT) {
        if let Err(unauthorized) = authorized(&shared, request.headers()) {
            return unauthorized;
        }
        return error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "Access forbidden: the token does not grant access to this resource",
        )
        .into_response();
    }
    next.run(request).await
}
