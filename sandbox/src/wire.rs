//! What every route of the sandbox speaks as Dintero does: its error body, its times and ids,
//! and its bearer tokens.

use axum::{
    Json,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::Shared;

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Dintero's `int32`: a JSON integer in range. A boolean, a fraction (`1.0` included), a string
/// or a number past 2^31 - 1 is refused, saying which field (`path`) and what it held.
pub(crate) fn int32(value: &serde_json::Value, path: &str) -> Result<i64, String> {
    match value.as_i64() {
        // `as_i64` is `None` for booleans, strings and any number written with a fraction or an
        // exponent, so `true` is never taken for 1.
        Some(n) if i32::try_from(n).is_ok() => Ok(n),
        Some(n) => Err(format!("`{path}` is {n}, outside int32")),
        None if value.is_null() => Err(format!("`{path}` is required and must be an integer")),
        None => Err(format!("`{path}` must be an integer, not {value}")),
    }
}

/// Unix time in milliseconds: when tokens and CDN links expire.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

pub(crate) fn uuid() -> String {
    let r = || fastrand::u64(..);
    let hex = format!("{:016x}{:016x}", r(), r());
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

pub(crate) fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let system: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("dintero-system-"))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    if !system.is_empty() {
        shared.state.lock().stats.system_headers = system.into_iter().collect();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let now = now_ms();
    match bearer.and_then(|t| shared.state.lock().tokens.get(t).copied()) {
        Some(expires) if expires > now => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "Access forbidden, invalid JWT token was used",
        )),
    }
}
