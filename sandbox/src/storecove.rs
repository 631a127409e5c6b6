//! A stand-in for Storecove's API (the Peppol access point), on its own loopback port, as strict
//! as the published API (`reference-peppol-evidence-console.md`, section 1a):
//!
//! - every request needs `Authorization: Bearer <key>` (401 otherwise);
//! - `POST /api/v2/document_submissions` takes exactly the documented body: `legalEntityId` of a
//!   configured legal entity, `idempotencyGuid` of 36 characters, `routing.eIdentifiers`
//!   `[{scheme, id}]` (and optionally `emails`), `document.documentType` `"invoice"` and
//!   `document.rawDocumentData` `{document, parse, parseStrategy: "ubl"}` whose `document` is
//!   base64 of well-formed UBL whose buyer `EndpointID` (value and `schemeID`) is the routing
//!   identifier. An unknown or missing field is a 422, as Storecove's own validation answers;
//!   a second submission with the same `idempotencyGuid` is a 422 and is not processed;
//! - `GET /api/v2/webhook_instances/` gives the oldest queued event `{guid, body}` (200) until
//!   it is acknowledged with `DELETE /api/v2/webhook_instances/{guid}`, 204 when none waits;
//! - `GET /api/v2/document_submissions/{guid}/evidence/sending` is 404 until the submission
//!   succeeded;
//! - `GET /api/v2/legal_entities/{id}`, for a client's check.
//!
//! A test decides each submission's fate ([`Storecove::succeed`], [`Storecove::fail`]), injects
//! faults ([`Storecove::inject`]: 401, 429 with `Retry-After`, 5xx, an answer lost after the
//! submission was processed), and reads what arrived ([`Storecove::submissions`], the UBL bytes
//! included, for the official rules). The same controls are served under `/sandbox/storecove/`
//! for a stand-in in another process.
//!
//! Storecove does not publish the body of its status events; the stand-in's is
//! `{"event_type": "document_submission", "guid", "idempotencyGuid", "status", "details",
//! "timestamp"}`, the fields an integrator reports seeing (`status` `succeeded`, `failed`,
//! `no_action_taken`, …).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The stand-in's API key, unless configured otherwise.
pub const API_KEY: &str = "storecove-sandbox-key";
/// The stand-in's legal entity, unless configured otherwise.
pub const LEGAL_ENTITY_ID: u64 = 100_001;

/// The UBL namespaces the buyer's `EndpointID` is read under.
const CAC: &str = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2";
const CBC: &str = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2";
const ROOTS: [(&str, &str); 2] = [
    (
        "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
        "Invoice",
    ),
    (
        "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
        "CreditNote",
    ),
];

/// Storecove's routing scheme names for the ICD codes Postbud routes to.
pub const SCHEMES: [(&str, &str); 5] = [
    ("NO:ORG", "0192"),
    ("SE:ORGNR", "0007"),
    ("FI:OVT", "0216"),
    ("DK:DIGST", "0184"),
    ("GLN", "0088"),
];

/// An extra check of the UBL a submission carries (the official Peppol rules): `Err` with the
/// findings makes the submission a 422, as Storecove refuses what fails validation.
pub type Validator = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

/// What the stand-in plays.
#[derive(Clone)]
pub struct StorecoveConfig {
    /// The only API key it accepts ([`API_KEY`]).
    pub api_key: String,
    /// The legal entities of the account ([`LEGAL_ENTITY_ID`]).
    pub legal_entities: Vec<u64>,
    /// Run on every submission's UBL after the stand-in's own checks (none by default).
    pub validator: Option<Validator>,
    /// The body of the 422 a repeated `idempotencyGuid` gets. Storecove documents the status
    /// ("any subsequent ones will trigger an HTTP 422 Unprocessable Entity response"), not the
    /// words: by default the error list names the field and says it was used; a test sets
    /// another wording to play the other reading.
    pub repeat_answer: Option<String>,
}

impl std::fmt::Debug for StorecoveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorecoveConfig")
            .field("legal_entities", &self.legal_entities)
            .field("validator", &self.validator.is_some())
            .field("repeat_answer", &self.repeat_answer)
            .finish_non_exhaustive()
    }
}

impl Default for StorecoveConfig {
    fn default() -> Self {
        Self {
            api_key: API_KEY.into(),
            legal_entities: vec![LEGAL_ENTITY_ID],
            validator: None,
            repeat_answer: None,
        }
    }
}

/// One submission the stand-in accepted (a 200).
#[derive(Debug, Clone, Serialize)]
pub struct Submission {
    /// Storecove's guid for it, as answered.
    pub guid: String,
    /// The client's idempotency GUID.
    pub idempotency_guid: Option<String>,
    /// The legal entity it was sent for.
    pub legal_entity_id: u64,
    /// The routing identifier: Storecove's scheme name (`NO:ORG`) and the value.
    pub scheme: String,
    /// The routing identifier's value.
    pub id: String,
    /// The UBL as decoded from `rawDocumentData.document`.
    #[serde(skip)]
    pub ubl: Vec<u8>,
    /// `submitted`, then `succeeded` or `failed` as a test decides.
    pub status: String,
}

/// One event waiting in the pull queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    /// The instance's own guid (what `DELETE` names).
    pub guid: String,
    /// The event, a JSON string.
    pub body: String,
}

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /document_submissions`.
    Submit,
    /// `GET /legal_entities/{id}`.
    LegalEntity,
    /// `GET /webhook_instances/`.
    Pull,
    /// `DELETE /webhook_instances/{guid}`.
    Acknowledge,
    /// `GET /document_submissions/{guid}/evidence/{type}`.
    Evidence,
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answers this status (401, 403, 500, 503…) without doing anything.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`, without doing anything.
    RateLimited(u64),
    /// Does what was asked (the submission is accepted and kept), then drops the connection
    /// before any answer: the client cannot tell whether it went through.
    LoseAnswer,
    /// Does what was asked, then holds the answer this many seconds: a test kills the client
    /// while the provider has the submission and the client does not know it yet.
    HoldAnswer(u64),
}

/// A fault for the next `times` requests to `on`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// The endpoint.
    pub on: Endpoint,
    /// What happens.
    pub kind: FaultKind,
    /// How many requests it hits (1 by default).
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// `kind` on the next request to `on`.
    pub fn once(on: Endpoint, kind: FaultKind) -> Self {
        Self { on, kind, times: 1 }
    }
}

#[derive(Debug, Default)]
struct Inner {
    submissions: Vec<Submission>,
    queue: VecDeque<Instance>,
    faults: Vec<Fault>,
    /// Every request: method and path.
    requests: Vec<(String, String)>,
    /// Acknowledged instances, in order.
    acknowledged: Vec<String>,
    /// The seconds the request being admitted holds its answer ([`FaultKind::HoldAnswer`]).
    hold: Option<u64>,
}

#[derive(Debug)]
struct Shared {
    config: StorecoveConfig,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running Storecove stand-in on a loopback port. Dropping it stops the server.
#[derive(Debug)]
pub struct Storecove {
    shared: Arc<Shared>,
    base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Storecove {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Storecove {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(config: StorecoveConfig) -> std::io::Result<Self> {
        // As `Sandbox::start`: a test's own HTTP client needs the process's crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::default(),
        });
        let app = router().with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Storecove stand-in stopped");
            }
        });
        Ok(Self {
            shared,
            base,
            server,
        })
    }

    /// `http://127.0.0.1:<port>/api/v2`: the channel's `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v2", self.base)
    }

    /// `http://127.0.0.1:<port>`: the controls are under `/sandbox/storecove/`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Every submission accepted so far, in order (a refused or repeated one is not here).
    pub fn submissions(&self) -> Vec<Submission> {
        self.shared.lock().submissions.clone()
    }

    /// The UBL bytes of every accepted submission, for the official rules.
    pub fn ubl(&self) -> Vec<Vec<u8>> {
        self.shared
            .lock()
            .submissions
            .iter()
            .map(|s| s.ubl.clone())
            .collect()
    }

    /// The submission made under `idempotency_guid`, if one was.
    pub fn submission(&self, idempotency_guid: &str) -> Option<Submission> {
        find(&self.shared.lock(), idempotency_guid).cloned()
    }

    /// The submission under `idempotency_guid` reached its receiver (its access point's AS4
    /// receipt): a `succeeded` event is queued and the sending evidence appears.
    pub fn succeed(&self, idempotency_guid: &str) -> Result<String, String> {
        settle(&self.shared, idempotency_guid, "succeeded", "")
    }

    /// The submission under `idempotency_guid` failed (`failed`, or `no_action_taken`), for
    /// `reason`: the event is queued.
    pub fn fail(
        &self,
        idempotency_guid: &str,
        status: &str,
        reason: &str,
    ) -> Result<String, String> {
        settle(&self.shared, idempotency_guid, status, reason)
    }

    /// Queues an event with this raw `body` (garbled, foreign, of another shape); its instance
    /// guid.
    pub fn queue_raw(&self, body: impl Into<String>) -> String {
        let guid = uuid();
        self.shared.lock().queue.push_back(Instance {
            guid: guid.clone(),
            body: body.into(),
        });
        guid
    }

    /// The events waiting in the queue, oldest first.
    pub fn queued(&self) -> Vec<Instance> {
        self.shared.lock().queue.iter().cloned().collect()
    }

    /// The instances acknowledged (deleted) so far, in order.
    pub fn acknowledged(&self) -> Vec<String> {
        self.shared.lock().acknowledged.clone()
    }

    /// Every request so far: method and path.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.lock().requests.clone()
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }
}

fn find<'a>(inner: &'a Inner, idempotency_guid: &str) -> Option<&'a Submission> {
    inner
        .submissions
        .iter()
        .find(|s| s.idempotency_guid.as_deref() == Some(idempotency_guid))
}

fn settle(
    shared: &Shared,
    idempotency_guid: &str,
    status: &str,
    reason: &str,
) -> Result<String, String> {
    let mut inner = shared.lock();
    let submission = inner
        .submissions
        .iter_mut()
        .find(|s| s.idempotency_guid.as_deref() == Some(idempotency_guid))
        .ok_or_else(|| format!("no submission under idempotencyGuid {idempotency_guid}"))?;
    submission.status = status.to_owned();
    let event = json!({
        "event_type": "document_submission",
        "guid": submission.guid,
        "idempotencyGuid": idempotency_guid,
        "status": status,
        "details": reason,
        "timestamp": jiff::Timestamp::now().to_string(),
    });
    let guid = uuid();
    inner.queue.push_back(Instance {
        guid: guid.clone(),
        body: event.to_string(),
    });
    Ok(guid)
}

/// A random GUID in the 8-4-4-4-12 shape.
fn uuid() -> String {
    let hex: String = (0..16)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

type St = State<Arc<Shared>>;

/// The API under `/api/v2` and the controls under `/sandbox/storecove`.
fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/document_submissions", post(submit))
        .route("/api/v2/legal_entities/{id}", get(legal_entity))
        .route("/api/v2/webhook_instances", get(pull))
        .route("/api/v2/webhook_instances/", get(pull))
        .route("/api/v2/webhook_instances/{guid}", delete(acknowledge))
        .route(
            "/api/v2/document_submissions/{guid}/evidence/{kind}",
            get(evidence),
        )
        .route("/sandbox/storecove/submissions", get(control_submissions))
        .route(
            "/sandbox/storecove/submissions/{idempotency_guid}/{outcome}",
            post(control_settle),
        )
        .route("/sandbox/storecove/faults", post(control_fault))
}

/// Storecove's error shape: a list of `{source, details}`.
fn error(status: StatusCode, source: &str, details: impl Into<String>) -> Response {
    (
        status,
        Json(json!([{"source": source, "details": details.into()}])),
    )
        .into_response()
}

/// Counts the request, checks the key, and applies a fault for `on` if one is due. `Ok(lose)`
/// when the request proceeds, `lose` when its answer is to be lost.
fn admit(
    shared: &Shared,
    on: Endpoint,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<bool, Response> {
    let mut inner = shared.lock();
    inner.requests.push((method.to_owned(), path.to_owned()));
    let expected = format!("Bearer {}", shared.config.api_key);
    let authorised = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h == expected);
    if !authorised {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Authorization",
            "a valid API key is required: Authorization: Bearer <key>",
        ));
    }
    let Some(at) = inner.faults.iter().position(|f| f.on == on && f.times > 0) else {
        return Ok(false);
    };
    let fault = &mut inner.faults[at];
    fault.times -= 1;
    let kind = fault.kind.clone();
    if fault.times == 0 {
        inner.faults.remove(at);
    }
    match kind {
        FaultKind::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(error(status, "sandbox", format!("injected {code}")))
        }
        FaultKind::RateLimited(seconds) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "sandbox",
                "too many requests",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
            Err(r)
        }
        FaultKind::LoseAnswer => Ok(true),
        FaultKind::HoldAnswer(seconds) => {
            inner.hold = Some(seconds);
            Ok(false)
        }
    }
}

async fn submit(State(shared): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let lose = match admit(
        &shared,
        Endpoint::Submit,
        "POST",
        "/document_submissions",
        &headers,
    ) {
        Ok(lose) => lose,
        Err(r) => return r,
    };
    // Taken now, so a request refused below does not leave its hold to the next one.
    let hold = shared.lock().hold.take();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
            format!("expected application/json, got `{content_type}`"),
        );
    }
    let parsed = match read_submission(&shared.config, &body) {
        Ok(parsed) => parsed,
        Err((source, details)) => return error(StatusCode::UNPROCESSABLE_ENTITY, &source, details),
    };
    let guid = {
        let mut inner = shared.lock();
        // Checked under the lock that records it: two concurrent submissions with one key
        // cannot both pass.
        if let Some(key) = &parsed.idempotency_guid
            && find(&inner, key).is_some()
        {
            if let Some(body) = &shared.config.repeat_answer {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.clone(),
                )
                    .into_response();
            }
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotencyGuid",
                "this idempotencyGuid has already been used: only the first submission is processed",
            );
        }
        let guid = uuid();
        inner.submissions.push(Submission {
            guid: guid.clone(),
            status: "submitted".into(),
            ..parsed
        });
        guid
    };
    if lose {
        return crate::api::dropped();
    }
    if let Some(seconds) = hold {
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    }
    Json(json!({"guid": guid})).into_response()
}

type Refusal = (String, String);

fn refuse(source: &str, details: impl Into<String>) -> Refusal {
    (source.to_owned(), details.into())
}

/// Fields of `value` (an object at `path`) that are not `allowed`, or `required` ones missing.
fn shape(value: &Value, path: &str, required: &[&str], allowed: &[&str]) -> Result<(), Refusal> {
    let object = value
        .as_object()
        .ok_or_else(|| refuse(path, "must be an object"))?;
    for key in object.keys() {
        if !required.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
            let name = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            return Err(refuse(&name, "is not a known field"));
        }
    }
    for key in required {
        if object.get(*key).is_none_or(Value::is_null) {
            let name = if path.is_empty() {
                (*key).to_owned()
            } else {
                format!("{path}.{key}")
            };
            return Err(refuse(&name, "is required"));
        }
    }
    Ok(())
}

fn read_submission(config: &StorecoveConfig, body: &[u8]) -> Result<Submission, Refusal> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| refuse("body", format!("is not JSON: {e}")))?;
    shape(
        &value,
        "",
        &["legalEntityId", "routing", "document"],
        &["idempotencyGuid", "attachments", "receiveGuid"],
    )?;
    let legal_entity_id = value["legalEntityId"]
        .as_u64()
        .ok_or_else(|| refuse("legalEntityId", "must be an integer"))?;
    if !config.legal_entities.contains(&legal_entity_id) {
        return Err(refuse(
            "legalEntityId",
            format!("legal entity {legal_entity_id} does not exist in this account"),
        ));
    }
    let idempotency_guid = match value.get("idempotencyGuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() == 36 => Some(s.clone()),
        Some(_) => {
            return Err(refuse(
                "idempotencyGuid",
                "must be a string of 36 characters",
            ));
        }
    };
    let routing = &value["routing"];
    shape(routing, "routing", &[], &["eIdentifiers", "emails"])?;
    let identifiers = routing["eIdentifiers"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| refuse("routing.eIdentifiers", "must be a non-empty array"))?;
    if identifiers.len() != 1 {
        return Err(refuse(
            "routing.eIdentifiers",
            "the stand-in routes to exactly one identifier",
        ));
    }
    shape(
        &identifiers[0],
        "routing.eIdentifiers[0]",
        &["scheme", "id"],
        &[],
    )?;
    let scheme = identifiers[0]["scheme"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = identifiers[0]["id"].as_str().unwrap_or_default().to_owned();
    let icd = SCHEMES
        .iter()
        .find(|(name, _)| *name == scheme)
        .map(|(_, icd)| *icd)
        .ok_or_else(|| {
            refuse(
                "routing.eIdentifiers[0].scheme",
                format!("unknown scheme `{scheme}`"),
            )
        })?;
    if let Some(emails) = routing.get("emails")
        && !emails
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(refuse("routing.emails", "must be an array of strings"));
    }
    let document = &value["document"];
    shape(
        document,
        "document",
        &["documentType", "rawDocumentData"],
        &[],
    )?;
    if document["documentType"] != "invoice" {
        return Err(refuse(
            "document.documentType",
            format!(
                "`{}` is not sendable here: expected \"invoice\"",
                document["documentType"]
            ),
        ));
    }
    let raw = &document["rawDocumentData"];
    shape(
        raw,
        "document.rawDocumentData",
        &["document", "parse", "parseStrategy"],
        &[],
    )?;
    if raw["parse"] != true || raw["parseStrategy"] != "ubl" {
        return Err(refuse(
            "document.rawDocumentData",
            "parse must be true and parseStrategy \"ubl\"",
        ));
    }
    let ubl = raw["document"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .ok_or_else(|| refuse("document.rawDocumentData.document", "must be base64"))?;
    let (endpoint_scheme, endpoint) =
        buyer_endpoint(&ubl).map_err(|why| refuse("document.rawDocumentData.document", why))?;
    if endpoint_scheme != icd || endpoint != id {
        return Err(refuse(
            "routing.eIdentifiers[0]",
            format!(
                "routes to {scheme} ({icd}):{id}, but the document's buyer EndpointID is {endpoint_scheme}:{endpoint}"
            ),
        ));
    }
    if let Some(validate) = &config.validator {
        validate(&ubl).map_err(|why| refuse("document", why))?;
    }
    Ok(Submission {
        guid: String::new(),
        idempotency_guid,
        legal_entity_id,
        scheme,
        id,
        ubl,
        status: String::new(),
    })
}

/// The first child element of `node` named `{ns}name`.
fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().namespace() == Some(ns) && c.tag_name().name() == name
    })
}

/// The buyer's `cac:AccountingCustomerParty/cac:Party/cbc:EndpointID`: its `schemeID` and value.
fn buyer_endpoint(ubl: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(ubl).map_err(|_| "the UBL is not UTF-8".to_owned())?;
    // roxmltree: a small, maintained, namespace-aware parser that refuses what is not
    // well-formed; DTDs are refused by default (no entity expansion).
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| format!("the UBL is not well-formed XML: {e}"))?;
    let root = doc.root_element();
    let tag = root.tag_name();
    if !ROOTS
        .iter()
        .any(|(ns, name)| tag.namespace() == Some(ns) && tag.name() == *name)
    {
        return Err(format!(
            "the root element is {{{}}}{}, not a UBL Invoice or CreditNote",
            tag.namespace().unwrap_or_default(),
            tag.name()
        ));
    }
    let endpoint = child(root, CAC, "AccountingCustomerParty")
        .and_then(|p| child(p, CAC, "Party"))
        .and_then(|p| child(p, CBC, "EndpointID"))
        .ok_or("the UBL has no cac:AccountingCustomerParty/cac:Party/cbc:EndpointID")?;
    let scheme = endpoint
        .attribute("schemeID")
        .ok_or("the buyer's EndpointID has no schemeID")?;
    Ok((
        scheme.to_owned(),
        endpoint.text().unwrap_or_default().trim().to_owned(),
    ))
}

async fn legal_entity(State(shared): St, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = admit(
        &shared,
        Endpoint::LegalEntity,
        "GET",
        &format!("/legal_entities/{id}"),
        &headers,
    ) {
        return r;
    }
    match id.parse::<u64>() {
        Ok(id) if shared.config.legal_entities.contains(&id) => Json(json!({
            "id": id, "party_name": "Sandbox Merchant AS", "country": "NO",
        }))
        .into_response(),
        _ => error(StatusCode::NOT_FOUND, "id", "no such legal entity"),
    }
}

async fn pull(State(shared): St, headers: HeaderMap) -> Response {
    let lose = match admit(
        &shared,
        Endpoint::Pull,
        "GET",
        "/webhook_instances/",
        &headers,
    ) {
        Ok(lose) => lose,
        Err(r) => return r,
    };
    let first = shared.lock().queue.front().cloned();
    if lose {
        return crate::api::dropped();
    }
    match first {
        Some(instance) => Json(instance).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn acknowledge(State(shared): St, Path(guid): Path<String>, headers: HeaderMap) -> Response {
    let lose = match admit(
        &shared,
        Endpoint::Acknowledge,
        "DELETE",
        &format!("/webhook_instances/{guid}"),
        &headers,
    ) {
        Ok(lose) => lose,
        Err(r) => return r,
    };
    let removed = {
        let mut inner = shared.lock();
        let at = inner.queue.iter().position(|i| i.guid == guid);
        if let Some(at) = at {
            inner.queue.remove(at);
            inner.acknowledged.push(guid.clone());
        }
        at.is_some()
    };
    if lose {
        return crate::api::dropped();
    }
    if removed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "guid", "no such webhook instance")
    }
}

async fn evidence(
    State(shared): St,
    Path((guid, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(
        &shared,
        Endpoint::Evidence,
        "GET",
        &format!("/document_submissions/{guid}/evidence/{kind}"),
        &headers,
    ) {
        return r;
    }
    let inner = shared.lock();
    let submission = inner.submissions.iter().find(|s| s.guid == guid);
    match submission {
        Some(s) if kind == "sending" && s.status == "succeeded" => Json(json!({
            "guid": s.guid,
            "evidence": {
                "network": "peppol",
                "receiver": format!("{}:{}", s.scheme, s.id),
                "receiving_accesspoint": "CN=PNO000000,O=Sandbox Receiving AP,C=NO",
                "as4_receipt": "<eb:Receipt>sandbox</eb:Receipt>",
            },
            "documents": [],
        }))
        .into_response(),
        _ => error(
            StatusCode::NOT_FOUND,
            "guid",
            "no evidence (yet) for this submission",
        ),
    }
}

async fn control_submissions(State(shared): St) -> Response {
    Json(shared.lock().submissions.clone()).into_response()
}

#[derive(Deserialize)]
struct Outcome {
    #[serde(default)]
    reason: String,
}

async fn control_settle(
    State(shared): St,
    Path((key, outcome)): Path<(String, String)>,
    body: Option<Json<Outcome>>,
) -> Response {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let status = match outcome.as_str() {
        "succeed" => "succeeded",
        "fail" => "failed",
        "no_action_taken" => "no_action_taken",
        other => {
            return (StatusCode::NOT_FOUND, format!("unknown outcome `{other}`")).into_response();
        }
    };
    match settle(&shared, &key, status, &reason) {
        Ok(instance) => Json(json!({"instance": instance})).into_response(),
        Err(why) => (StatusCode::NOT_FOUND, why).into_response(),
    }
}

async fn control_fault(State(shared): St, Json(fault): Json<Fault>) -> Response {
    shared.lock().faults.push(fault);
    StatusCode::NO_CONTENT.into_response()
}
