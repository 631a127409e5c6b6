//! The scopes Postbud's Dintero API client needs, checked once at start (`postbud check`,
//! `serve`, `deliver`) so that a missing one is one configuration error, not a failure of every
//! invoice that needs it.
//!
//! Every call Postbud makes and what it needs (Dintero's spec lists the alternatives per call):
//! reading transactions (`GET /v1/transactions/{id}`, `GET /v1/transactions`): `read:checkout`
//! or `admin:checkout`; capture, void and `POST /v1/sessions/pay`: `write:checkout` or
//! `admin:checkout`; the account's checkout configuration (`GET /v1/admin/checkout`) and payment
//! profiles (`GET /v1/admin/session/profiles/{id}`): `admin:checkout`. The token itself is the
//! client's id and secret, and the Files API that serves the invoice PDF asks for no scope.

use super::{DinteroApi, DinteroError};

/// The scope of the admin reads, which also allows every other call Postbud makes.
pub const ADMIN_CHECKOUT: &str = "admin:checkout";

/// Reads the account's checkout configuration (`GET /v1/admin/checkout`), which only
/// [`ADMIN_CHECKOUT`] opens; Postbud reads it to tell who sends an invoice whose session and
/// payment profile do not say. Since that scope allows every other call too, a client that
/// passes holds all Postbud needs. No payment profile is read: the configuration names none
/// (a transaction's own profile is read when it is dispatched).
///
/// A refusal (403) comes back naming the scope to grant; its `status` stays 403, which callers
/// take for a configuration error.
pub async fn check(api: &dyn DinteroApi) -> Result<String, DinteroError> {
    match api.checkout_configuration().await {
        Ok(_) => Ok(format!(
            "the API client may read the account's checkout configuration (scope `{ADMIN_CHECKOUT}`)"
        )),
        Err(e) if e.status() == Some(403) => Err(e.map_message(|m| {
            format!(
                "{m}; grant the scope `{ADMIN_CHECKOUT}` to the API client of dintero.client_id \
                 (Dintero Backoffice: Settings, API clients): Postbud reads the account's checkout \
                 configuration to tell who sends an invoice"
            )
        })),
        Err(e) => Err(e),
    }
}
