//! The CDN the Files API descriptor points at: a second listener, so another origin than the
//! API's, as `cdn.dintero.com` is beside `checkout.dintero.com`. Its links are signed and expire
//! at the descriptor's `expires_at`, and it refuses a request that carries an `Authorization`
//! header, as a presigned-URL store does: a client must never send Dintero's bearer token there.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Shared, state::Operation, wire::now_ms};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new().route("/files/{file}", get(file))
}

fn tag(key: &[u8], fid: &str, expires_ms: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{fid}\n{expires_ms}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A link to file `fid` valid until `expires_ms` (Unix milliseconds).
pub(crate) fn link(shared: &Shared, fid: &str, expires_ms: u64) -> String {
    format!(
        "{}/files/{fid}.pdf?expires={expires_ms}&signature={}",
        shared.cdn_base,
        tag(&shared.link_key, fid, expires_ms)
    )
}

/// A refusal in the plain words of a storage service (not Dintero's JSON error body: the CDN is
/// not Dintero's API).
fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        message.to_owned(),
    )
        .into_response()
}

async fn file(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let fid = file.strip_suffix(".pdf").unwrap_or(&file).to_owned();
    let id = fid.strip_prefix("f-").unwrap_or(&fid).to_owned();
    let fault = shared.state.lock().take_fault(Operation::Pdf, Some(&id));
    if headers.contains_key(header::AUTHORIZATION) {
        shared.state.lock().stats.cdn_with_authorization += 1;
        return refuse(
            StatusCode::BAD_REQUEST,
            "a signed link takes no Authorization header: only one authentication mechanism is allowed",
        );
    }
    if let Some(r) = crate::api::fault_response(&fault) {
        return r;
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(expires_ms) = param("expires").and_then(|e| e.parse::<u64>().ok()) else {
        return refuse(StatusCode::FORBIDDEN, "the link has no valid `expires`");
    };
    let signed = param("signature").is_some_and(|s| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&shared.link_key).expect("any key length");
        mac.update(format!("{fid}\n{expires_ms}").as_bytes());
        hex::decode(s).is_ok_and(|s| mac.verify_slice(&s).is_ok())
    });
    if !signed {
        return refuse(StatusCode::FORBIDDEN, "the link's signature does not match");
    }
    if now_ms() >= expires_ms {
        shared.state.lock().stats.cdn_expired += 1;
        let at = jiff::Timestamp::from_millisecond(expires_ms as i64)
            .map(|t| t.to_string())
            .unwrap_or_default();
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("the link expired at {at}: read the file descriptor again"),
        );
    }
    let response = {
        let inner = shared.state.lock();
        match inner.transactions.get(&id) {
            Some(stored) => crate::api::pdf_body(stored),
            None => refuse(StatusCode::NOT_FOUND, "no such file"),
        }
    };
    crate::api::finish(&fault, response).await
}
