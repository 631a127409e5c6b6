//! The gateways: request shape, response reading, error classification and delivery reports.
//! Shapes follow each provider's documented API (see `channels-reference.md`, section 3).

use std::{collections::BTreeMap, time::Duration};

use postbud_channel::ChannelError;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::segments::Encoding;

/// One message to send.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// E.164 with `+`.
    pub to: &'a str,
    /// Sender id.
    pub from: &'a str,
    /// The text.
    pub text: &'a str,
    /// How it will be encoded.
    pub encoding: Encoding,
    /// Sent as the provider's client reference where it has one.
    pub delivery_id: &'a str,
    /// Where the provider posts delivery reports.
    pub report_url: Option<&'a str>,
}

/// A provider with its credentials (the fields carry the provider's own names).
#[derive(Debug)]
#[allow(missing_docs)]
pub enum Provider {
    /// Twilio Programmable Messaging.
    Twilio {
        base: String,
        account_sid: String,
        auth_token: SecretString,
    },
    /// Vonage (Nexmo) SMS API.
    Vonage {
        base: String,
        api_key: String,
        api_secret: SecretString,
    },
    /// Sinch SMS REST (batches).
    Sinch {
        base: String,
        service_plan_id: String,
        api_token: SecretString,
    },
    /// LINK Mobility "Common" REST.
    LinkMobility {
        base: String,
        username: String,
        password: SecretString,
        platform_id: String,
        platform_partner_id: String,
        gate_id: Option<String>,
    },
    /// 46elks.
    Elks {
        base: String,
        username: String,
        password: SecretString,
    },
    /// A configurable HTTP request.
    Http(HttpPreset),
}

/// `provider = "http"`: a gateway reached without code.
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub struct HttpPreset {
    /// Full URL of the send endpoint.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default = "post")]
    pub method: String,
    /// `none` (default), `basic` (username + password), `bearer` (token), `header` (header + token).
    #[serde(default = "none")]
    pub auth: String,
    /// User for `basic`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `basic`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub password: Option<SecretString>,
    /// Token for `bearer` and `header`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub token: Option<SecretString>,
    /// Header name for `header`.
    #[serde(default)]
    pub header: Option<String>,
    /// `form` (default) or `json`.
    #[serde(default = "form")]
    pub encoding: String,
    /// Our fields to the gateway's names: `to`, `text`, and optionally `from`, `reference`, `callback`.
    pub fields: BTreeMap<String, String>,
    /// Constant fields added to every request.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
    /// `to` without the leading `+`.
    #[serde(default)]
    pub strip_plus: bool,
    /// JSON pointer that must equal `success_value` for a 2xx to count as sent.
    #[serde(default)]
    pub success_pointer: Option<String>,
    /// The value `success_pointer` must have.
    #[serde(default)]
    pub success_value: Option<String>,
    /// JSON pointer to the gateway's message id.
    #[serde(default)]
    pub message_id: Option<String>,
}

fn post() -> String {
    "POST".into()
}
fn none() -> String {
    "none".into()
}
fn form() -> String {
    "form".into()
}

use postbud_channel::{ErrorKind, http::refusal as by_status};

/// Twilio error codes that a retry can fix; the rest of the 4xx range is permanent (an invalid
/// or opted-out number, a landline, a filtered message).
const TWILIO_TEMPORARY: [i64; 3] = [20429, 20500, 20503];

impl Provider {
    /// The request for one message.
    pub fn request(
        &self,
        http: &reqwest::Client,
        m: &Outgoing<'_>,
    ) -> Result<RequestBuilder, ChannelError> {
        Ok(match self {
            Self::Twilio {
                base,
                account_sid,
                auth_token,
            } => {
                let mut form = vec![
                    ("To", m.to.to_owned()),
                    ("From", m.from.to_owned()),
                    ("Body", m.text.to_owned()),
                ];
                if let Some(url) = m.report_url {
                    form.push(("StatusCallback", url.to_owned()));
                }
                http.post(format!(
                    "{base}/2010-04-01/Accounts/{account_sid}/Messages.json"
                ))
                .basic_auth(account_sid, Some(auth_token.expose_secret()))
                .form(&form)
            }
            Self::Vonage {
                base,
                api_key,
                api_secret,
            } => {
                let mut form = vec![
                    ("api_key", api_key.clone()),
                    ("api_secret", api_secret.expose_secret().to_owned()),
                    ("from", m.from.to_owned()),
                    ("to", m.to.trim_start_matches('+').to_owned()),
                    ("text", m.text.to_owned()),
                    ("client-ref", m.delivery_id.to_owned()),
                ];
                if m.encoding == Encoding::Ucs2 {
                    form.push(("type", "unicode".into()));
                }
                if let Some(url) = m.report_url {
                    form.push(("callback", url.to_owned()));
                }
                http.post(format!("{base}/sms/json")).form(&form)
            }
            Self::Sinch {
                base,
                service_plan_id,
                api_token,
            } => {
                let mut body = json!({"from": m.from, "to": [m.to], "body": m.text, "client_reference": m.delivery_id});
                if let Some(url) = m.report_url {
                    body["delivery_report"] = json!("per_recipient");
                    body["callback_url"] = json!(url);
                }
                http.post(format!("{base}/xms/v1/{service_plan_id}/batches"))
                    .bearer_auth(api_token.expose_secret())
                    .json(&body)
            }
            Self::LinkMobility {
                base,
                username,
                password,
                platform_id,
                platform_partner_id,
                gate_id,
            } => {
                let alphanumeric = !m.from.starts_with('+');
                let mut body = json!({
                    "source": m.from, "sourceTON": if alphanumeric { "ALPHANUMERIC" } else { "MSISDN" },
                    "destination": m.to, "userData": m.text, "platformId": platform_id,
                    "platformPartnerId": platform_partner_id, "refId": m.delivery_id,
                    "dcs": if m.encoding == Encoding::Ucs2 { "UCS2" } else { "TEXT" },
                });
                if let Some(gate) = gate_id {
                    body["useDeliveryReport"] = json!(true);
                    body["deliveryReportGates"] = json!([gate]);
                }
                http.post(format!("{base}/sms/send"))
                    .basic_auth(username, Some(password.expose_secret()))
                    .json(&body)
            }
            Self::Elks {
                base,
                username,
                password,
            } => {
                let mut form = vec![
                    ("from", m.from.to_owned()),
                    ("to", m.to.to_owned()),
                    ("message", m.text.to_owned()),
                ];
                if let Some(url) = m.report_url {
                    form.push(("whendelivered", url.to_owned()));
                }
                http.post(format!("{base}/a1/sms"))
                    .basic_auth(username, Some(password.expose_secret()))
                    .form(&form)
            }
            Self::Http(preset) => preset.request(http, m)?,
        })
    }

    /// Reads the provider's answer: its message id, or a classified error; refused credentials
    /// name the key that holds them ([`Provider::credential_key`]).
    pub fn read(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Result<Option<String>, ChannelError> {
        self.read_answer(status, retry_after, body).map_err(|e| {
            if e.kind() == ErrorKind::Unauthorized {
                e.with_config_key(self.credential_key())
            } else {
                e
            }
        })
    }

    /// The key of the channel's table that holds the provider's secret.
    pub fn credential_key(&self) -> &'static str {
        match self {
            Self::Twilio { .. } => "auth_token",
            Self::Vonage { .. } => "api_secret",
            Self::Sinch { .. } => "api_token",
            Self::LinkMobility { .. } | Self::Elks { .. } => "password",
            Self::Http(preset) if preset.auth == "basic" => "http.password",
            Self::Http(_) => "http.token",
        }
    }

    fn read_answer(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Result<Option<String>, ChannelError> {
        let text = String::from_utf8_lossy(body);
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let said = |what: &str| format!("{} answered HTTP {status}: {what}", self.name());
        match self {
            Self::Twilio { .. } => {
                if status.is_success() {
                    return json["sid"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ChannelError::temporary(said("no sid in the answer")))
                        .map(Some);
                }
                let code = json["code"].as_i64().unwrap_or_default();
                let detail = said(&format!(
                    "error {code}: {}",
                    json["message"].as_str().unwrap_or(&text)
                ));
                if TWILIO_TEMPORARY.contains(&code) {
                    let error = match code {
                        20429 => ChannelError::rate_limited(detail),
                        _ => ChannelError::unavailable(detail),
                    };
                    return Err(error.with_retry_after_opt(retry_after));
                }
                Err(by_status(status, retry_after, detail))
            }
            Self::Vonage { .. } => {
                if !status.is_success() {
                    return Err(by_status(status, retry_after, said(&text)));
                }
                let message = &json["messages"][0];
                match message["status"].as_str() {
                    Some("0") => message["message-id"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ChannelError::temporary(said("no message-id")))
                        .map(Some),
                    // 1 throttled, 5 internal error: Vonage's own advice is to retry.
                    Some(code @ ("1" | "5")) => Err(ChannelError::temporary(said(&format!(
                        "status {code}: {}",
                        message["error-text"].as_str().unwrap_or_default()
                    )))),
                    // 4: invalid credentials, answered with HTTP 200.
                    Some("4") => Err(ChannelError::unauthorized(said(&format!(
                        "status 4: {}",
                        message["error-text"].as_str().unwrap_or_default()
                    )))),
                    Some(code) => Err(ChannelError::permanent(said(&format!(
                        "status {code}: {}",
                        message["error-text"].as_str().unwrap_or_default()
                    )))),
                    None => Err(ChannelError::temporary(said(&format!(
                        "unexpected answer {text}"
                    )))),
                }
            }
            Self::Sinch { .. } => match status.is_success() {
                true => json["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ChannelError::temporary(said("no batch id")))
                    .map(Some),
                false => Err(by_status(
                    status,
                    retry_after,
                    said(&format!(
                        "{} {}",
                        json["code"].as_str().unwrap_or_default(),
                        json["text"].as_str().unwrap_or(&text)
                    )),
                )),
            },
            Self::LinkMobility { .. } => match status.is_success() {
                true => json["messageId"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ChannelError::temporary(said("no messageId")))
                    .map(Some),
                false => Err(by_status(
                    status,
                    retry_after,
                    said(&format!(
                        "resultCode {}: {}",
                        json["resultCode"],
                        json["description"].as_str().unwrap_or(&text)
                    )),
                )),
            },
            Self::Elks { .. } => match status.is_success() {
                true => json["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ChannelError::temporary(said("no id")))
                    .map(Some),
                // 46elks answers 403 for a request it will not send (an invalid number), 401
                // for credentials.
                false if status == StatusCode::FORBIDDEN => {
                    Err(ChannelError::invalid_input(said(text.trim())))
                }
                false => Err(by_status(status, retry_after, said(text.trim()))),
            },
            Self::Http(preset) => preset.read(status, retry_after, &json, &text),
        }
    }

    /// The provider's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Twilio { .. } => "Twilio",
            Self::Vonage { .. } => "Vonage",
            Self::Sinch { .. } => "Sinch",
            Self::LinkMobility { .. } => "LINK Mobility",
            Self::Elks { .. } => "46elks",
            Self::Http(_) => "the SMS gateway",
        }
    }

    /// What an attempt's success means, and the states the provider's reports may give later.
    pub fn evidence(&self) -> postbud_channel::EvidenceOffer {
        use postbud_channel::EvidenceState::*;
        let later: &[postbud_channel::EvidenceState] = match self {
            Self::Twilio { .. } => &[Delivered, Opened, Bounced, Rejected],
            Self::Sinch { .. } => &[Delivered, Bounced, Rejected],
            Self::Vonage { .. } | Self::LinkMobility { .. } => {
                &[Delayed, Delivered, Bounced, Rejected]
            }
            Self::Elks { .. } => &[Delivered, Bounced],
            Self::Http(_) => &[Delivered, Bounced, Rejected],
        };
        postbud_channel::EvidenceOffer::new(format!(
            "{} accepted the message (the operator's delivery report comes later)",
            self.name()
        ))
        .later(later.iter().copied())
    }

    /// Whether the gateway cannot carry characters outside the BMP (4-byte UTF-8).
    pub fn bmp_only(&self) -> bool {
        matches!(self, Self::LinkMobility { .. })
    }
}

impl HttpPreset {
    fn request(
        &self,
        http: &reqwest::Client,
        m: &Outgoing<'_>,
    ) -> Result<RequestBuilder, ChannelError> {
        let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                ChannelError::permanent(format!(
                    "http.method `{}` is not an HTTP method",
                    self.method
                ))
            })?;
        let to = if self.strip_plus {
            m.to.trim_start_matches('+')
        } else {
            m.to
        };
        let mut fields: BTreeMap<String, String> = self.extra.clone();
        for (ours, value) in [
            ("to", Some(to)),
            ("text", Some(m.text)),
            ("from", Some(m.from)),
            ("reference", Some(m.delivery_id)),
            ("callback", m.report_url),
        ] {
            if let (Some(theirs), Some(value)) = (self.fields.get(ours), value) {
                fields.insert(theirs.clone(), value.to_owned());
            }
        }
        let mut request = http.request(method, &self.url);
        request = match self.auth.as_str() {
            "basic" => request.basic_auth(
                self.username.clone().unwrap_or_default(),
                self.password.as_ref().map(|p| p.expose_secret().to_owned()),
            ),
            "bearer" => request.bearer_auth(
                self.token
                    .as_ref()
                    .map(|t| t.expose_secret())
                    .unwrap_or_default(),
            ),
            "header" => request.header(
                self.header.clone().unwrap_or_default(),
                self.token
                    .as_ref()
                    .map(|t| t.expose_secret())
                    .unwrap_or_default(),
            ),
            _ => request,
        };
        Ok(if self.encoding == "json" {
            request.json(&fields)
        } else {
            request.form(&fields)
        })
    }

    fn read(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        json: &Value,
        text: &str,
    ) -> Result<Option<String>, ChannelError> {
        if !status.is_success() {
            return Err(by_status(
                status,
                retry_after,
                format!("the SMS gateway answered HTTP {status}: {}", text.trim()),
            ));
        }
        if let (Some(pointer), Some(expected)) = (&self.success_pointer, &self.success_value) {
            let actual = json.pointer(pointer).map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            });
            if actual.as_deref() != Some(expected.as_str()) {
                return Err(ChannelError::permanent(format!(
                    "the SMS gateway answered HTTP {status} but {pointer} is {actual:?}, not {expected:?}: {}",
                    text.trim()
                )));
            }
        }
        Ok(self
            .message_id
            .as_ref()
            .and_then(|p| json.pointer(p))
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            }))
    }
}
