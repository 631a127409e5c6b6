//! Sending with a per-delivery return path, and asking for DSNs where the server offers them.
//!
//! lettre's `Transport::send` takes neither a MAIL parameter nor a RCPT one, so a channel with
//! bounces configured sends each message over a connection of its own, driven a command at a
//! time through lettre's connection API: the same connect, STARTTLS (or TLS from the start) and
//! AUTH as the pooled transport, then `MAIL FROM:<bounces+<id>@…> RET=HDRS ENVID=<id>` and
//! `RCPT TO:<…> NOTIFY=FAILURE,DELAY ORCPT=rfc822;<…>` (RFC 3461) when the second EHLO lists
//! `DSN`; without it, the return path alone. lettre xtext-encodes the parameters' values.

use lettre::{
    Address,
    transport::smtp::{
        Error,
        authentication::DEFAULT_MECHANISMS,
        client::{AsyncSmtpConnection, Tls},
        commands::{Data, Ehlo, Mail, Rcpt},
        extension::{ClientId, Extension, MailBodyParameter, MailParameter, RcptParameter},
        response::Response,
    },
};

use crate::config::SmtpSettings;

/// One message and its envelope, as [`send`] hands it over.
pub(crate) struct Outgoing<'a> {
    /// The return path: `bounces+<delivery id>@…`.
    pub return_path: Address,
    /// Every recipient (To and Bcc).
    pub recipients: &'a [Address],
    /// The delivery id, sent as `ENVID`.
    pub delivery_id: &'a str,
    /// The formatted (and DKIM-signed) message.
    pub message: &'a [u8],
}

/// Whether an EHLO reply lists `DSN` (RFC 3461 §4).
fn offers_dsn(ehlo: &Response) -> bool {
    ehlo.message().any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("DSN"))
    })
}

/// Sends `outgoing` over a new connection; the final reply to DATA, and whether DSNs were
/// asked for. On a failure the connection is closed, and the error is lettre's, classified as
/// the pooled transport's are.
pub(crate) async fn send(
    settings: &SmtpSettings,
    outgoing: &Outgoing<'_>,
) -> Result<(Response, bool), Error> {
    let hello = ClientId::default();
    let wrapper = match &settings.tls {
        Tls::Wrapper(parameters) => Some(parameters.clone()),
        _ => None,
    };
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        (settings.host.as_str(), settings.port),
        Some(settings.timeout),
        &hello,
        wrapper,
        None,
    )
    .await?;
    let result = transaction(&mut connection, settings, outgoing, &hello).await;
    match &result {
        Ok(_) => {
            let _ = connection.quit().await;
        }
        Err(_) => connection.abort().await,
    }
    result
}

async fn transaction(
    connection: &mut AsyncSmtpConnection,
    settings: &SmtpSettings,
    outgoing: &Outgoing<'_>,
    hello: &ClientId,
) -> Result<(Response, bool), Error> {
    match &settings.tls {
        Tls::Required(parameters) => connection.starttls(parameters.clone(), hello).await?,
        Tls::Opportunistic(parameters) if connection.can_starttls() => {
            connection.starttls(parameters.clone(), hello).await?
        }
        _ => {}
    }
    // lettre keeps only the extensions it knows from its EHLO; DSN is not one of them. A second
    // EHLO (RFC 5321 allows it at any time outside a transaction) shows the whole list.
    let dsn = offers_dsn(&connection.command(Ehlo::new(hello.clone())).await?);
    if let Some(credentials) = &settings.credentials {
        connection.auth(DEFAULT_MECHANISMS, credentials).await?;
    }
    let info = connection.server_info();
    // As lettre's own `send` does: SMTPUTF8 for a non-ASCII address, 8BITMIME for a non-ASCII
    // message (lettre encodes bodies as quoted-printable or base64, so this is rare); a server
    // that lacks them answers for itself.
    let mut mail = Vec::new();
    let non_ascii = std::iter::once(&outgoing.return_path)
        .chain(outgoing.recipients)
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii && info.supports_feature(Extension::SmtpUtfEight) {
        mail.push(MailParameter::SmtpUtfEight);
    }
    if !outgoing.message.is_ascii() && info.supports_feature(Extension::EightBitMime) {
        mail.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    if dsn {
        // Headers only: the returned copy need not carry the customer's PDF back.
        mail.push(other_mail("RET", "HDRS"));
        mail.push(other_mail("ENVID", outgoing.delivery_id));
    }
    connection
        .command(Mail::new(Some(outgoing.return_path.clone()), mail))
        .await?;
    for recipient in outgoing.recipients {
        let parameters = if dsn {
            vec![
                RcptParameter::Other {
                    keyword: "NOTIFY".into(),
                    value: Some("FAILURE,DELAY".into()),
                },
                RcptParameter::Other {
                    keyword: "ORCPT".into(),
                    value: Some(format!("rfc822;{recipient}")),
                },
            ]
        } else {
            Vec::new()
        };
        connection
            .command(Rcpt::new(recipient.clone(), parameters))
            .await?;
    }
    connection.command(Data).await?;
    let reply = connection.message(outgoing.message).await?;
    Ok((reply, dsn))
}

fn other_mail(keyword: &str, value: &str) -> MailParameter {
    MailParameter::Other {
        keyword: keyword.into(),
        value: Some(value.into()),
    }
}
