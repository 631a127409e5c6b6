//! The bounce mailbox, read over IMAP (async-imap on tokio, TLS by rustls).
//!
//! Each pass reads the messages not yet flagged `$PostbudRead`, hands their evidence to the
//! engine, and flags what the engine took (`$PostbudRead` and `\Seen`); a message the engine
//! answered "not yet" or failed to record stays as it was, to be read on a later pass. A message
//! that is not a bounce about a delivery this channel can name gets `$PostbudRead` alone, so
//! that Postbud passes it by and a person still sees it unread. Nothing is ever deleted. Between
//! passes the source waits in IDLE where the server offers it (and at most
//! `poll_interval` while something waits to be read again), else `poll_interval`.

use std::{sync::Arc, time::Duration};

use async_imap::{Session, types::Flag};
use futures_util::TryStreamExt;
use postbud_channel::{ChannelError, EvidenceSink, EvidenceSource, Recorded};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use secrecy::ExposeSecret;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use super::{Bounces, Mailbox, dsn::Reader};

/// The keyword a message read by Postbud carries.
pub(crate) const READ_FLAG: &str = "$PostbudRead";
/// How long one IDLE lasts before it is renewed (RFC 2177: under 29 minutes).
const IDLE_RENEWAL: Duration = Duration::from_secs(20 * 60);
/// Messages fetched per command.
const BATCH: usize = 20;
/// Failed sessions in a row after which the source gives up and lets the engine restart it.
const MAX_FAILURES: u32 = 5;

/// The rustls configuration for the bounce mailbox: the web's roots, plus `extra_root` (PEM)
/// when given.
pub(crate) fn tls_config(extra_root: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_root {
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|e| format!("not a PEM certificate: {e}"))?;
            roots
                .add(certificate)
                .map_err(|e| format!("not a usable root certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("holds no PEM certificate".to_owned());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The channel's [`EvidenceSource`]: its bounce mailbox.
#[derive(Debug)]
pub(crate) struct BounceMailbox {
    mailbox: Mailbox,
    reader: Reader,
}

impl BounceMailbox {
    pub(crate) fn new(bounces: Bounces, bcc: Vec<String>) -> Self {
        Self {
            reader: Reader {
                return_path: bounces.return_path,
                bcc,
            },
            mailbox: bounces.mailbox,
        }
    }
}

/// Anything an IMAP session runs over: TLS, or plain TCP on loopback.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}

type ImapSession = Session<Box<dyn Stream>>;

/// What went wrong with the mailbox, for the log and the engine. Never holds the password.
fn failure(what: &str, mailbox: &Mailbox, error: impl std::fmt::Display) -> ChannelError {
    ChannelError::unavailable(format!(
        "bounce mailbox {}@{}:{} ({}): {what}: {error}",
        mailbox.user, mailbox.host, mailbox.port, mailbox.mailbox
    ))
}

#[async_trait::async_trait]
impl EvidenceSource for BounceMailbox {
    async fn run(
        &self,
        channel: &str,
        sink: Arc<dyn EvidenceSink>,
        mut stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Result<(), ChannelError> {
        let mut failures = 0;
        loop {
            let error = tokio::select! {
                () = &mut stop => return Ok(()),
                result = self.session(channel, sink.as_ref(), &mut failures) => match result {
                    Ok(never) => match never {},
                    Err(error) => error,
                },
            };
            failures += 1;
            if failures >= MAX_FAILURES {
                return Err(error);
            }
            // Reconnect after a pause that grows with each failure in a row.
            let pause = Duration::from_secs(1 << failures.min(6)).min(self.mailbox.poll_interval);
            tracing::warn!(channel, %error, ?pause, "bounce mailbox: reconnecting");
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// `fut`, or a timeout naming `what`.
async fn within<T, E: std::fmt::Display>(
    mailbox: &Mailbox,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ChannelError> {
    match tokio::time::timeout(mailbox.timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(failure(what, mailbox, error)),
        Err(_) => Err(failure(what, mailbox, "no answer in time")),
    }
}

/// How a pass marks what it read, by what the mailbox lets a client keep.
#[derive(Debug, Clone, Copy)]
struct Marking {
    /// Keywords can be stored (`\*` in PERMANENTFLAGS, or `$PostbudRead` itself).
    keywords: bool,
}

impl Marking {
    fn search(self) -> &'static str {
        if self.keywords {
            "UNKEYWORD $PostbudRead"
        } else {
            "UNSEEN"
        }
    }

    /// Taken by the engine: read for Postbud and for people.
    fn taken(self) -> &'static str {
        if self.keywords {
            "+FLAGS.SILENT ($PostbudRead \\Seen)"
        } else {
            "+FLAGS.SILENT (\\Seen)"
        }
    }

    /// Not a bounce of ours: passed by, left unread for people where the mailbox allows it.
    fn passed_by(self) -> &'static str {
        if self.keywords {
            "+FLAGS.SILENT ($PostbudRead)"
        } else {
            "+FLAGS.SILENT (\\Seen)"
        }
    }
}

enum Never {}

impl BounceMailbox {
    async fn connect(&self) -> Result<ImapSession, ChannelError> {
        let m = &self.mailbox;
        let tcp = within(m, "connect", TcpStream::connect((m.host.as_str(), m.port))).await?;
        let stream: Box<dyn Stream> = if m.tls {
            let config =
                tls_config(m.extra_root.as_deref()).map_err(|e| failure("TLS setup", m, e))?;
            let name = ServerName::try_from(m.host.clone())
                .map_err(|e| failure("TLS server name", m, e))?;
            let tls = within(
                m,
                "TLS handshake",
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut client = async_imap::Client::new(stream);
        match within(m, "greeting", client.read_response()).await? {
            Some(_) => {}
            None => return Err(failure("greeting", m, "the server closed the connection")),
        }
        let login =
            tokio::time::timeout(m.timeout, client.login(&m.user, m.password.expose_secret()))
                .await
                .map_err(|_| failure("login", m, "no answer in time"))?;
        login.map_err(|(error, _)| {
            // The server's words only: the command carried the password.
            ChannelError::unauthorized(format!(
                "bounce mailbox {}@{}:{}: login refused: {error}",
                m.user, m.host, m.port
            ))
            .with_config_key("bounces.password")
        })
    }

    /// What `postbud check` says of the mailbox: it logs in and opens the mailbox, reading
    /// nothing.
    pub(crate) async fn check(&self) -> Result<String, ChannelError> {
        let m = &self.mailbox;
        let mut session = self.connect().await?;
        let selected = within(m, "examine", session.examine(&m.mailbox)).await?;
        let idle = within(m, "capabilities", session.capabilities())
            .await?
            .has_str("IDLE");
        let _ = within(m, "logout", session.logout()).await;
        Ok(format!(
            "bounce mailbox {} on {}:{} ({}) opened: {} message(s); {}",
            m.mailbox,
            m.host,
            m.port,
            if m.tls { "TLS" } else { "NO TLS, loopback" },
            selected.exists,
            if idle {
                "new mail is read as it arrives (IDLE)".to_owned()
            } else {
                format!(
                    "no IDLE: looked at every {}",
                    humantime::format_duration(m.poll_interval)
                )
            }
        ))
    }

    /// One session: connect, then read passes until the connection fails.
    async fn session(
        &self,
        channel: &str,
        sink: &dyn EvidenceSink,
        failures: &mut u32,
    ) -> Result<Never, ChannelError> {
        let m = &self.mailbox;
        let mut session = self.connect().await?;
        let selected = within(m, "select", session.select(&m.mailbox)).await?;
        let marking = Marking {
            keywords: selected
                .permanent_flags
                .iter()
                .any(|f| matches!(f, Flag::MayCreate) || *f == Flag::Custom(READ_FLAG.into())),
        };
        let idle = within(m, "capabilities", session.capabilities())
            .await?
            .has_str("IDLE");
        tracing::info!(channel, mailbox = %m.mailbox, idle, keywords = marking.keywords, "bounce mailbox: reading");
        loop {
            let pending = self.pass(channel, sink, &mut session, marking).await?;
            *failures = 0;
            while session.unsolicited_responses.try_recv().is_ok() {}
            let wait = if pending {
                m.poll_interval
            } else {
                IDLE_RENEWAL
            };
            if idle {
                let mut handle = session.idle();
                within(m, "IDLE", handle.init()).await?;
                let (answer, _interrupt) = handle.wait_with_timeout(wait.min(IDLE_RENEWAL));
                answer.await.map_err(|e| failure("IDLE", m, e))?;
                session = within(m, "DONE", handle.done()).await?;
            } else {
                tokio::time::sleep(m.poll_interval).await;
                within(m, "NOOP", session.noop()).await?;
            }
        }
    }

    /// Reads what waits; whether something was left to read again.
    async fn pass(
        &self,
        channel: &str,
        sink: &dyn EvidenceSink,
        session: &mut ImapSession,
        marking: Marking,
    ) -> Result<bool, ChannelError> {
        let m = &self.mailbox;
        let mut uids: Vec<u32> = within(m, "search", session.uid_search(marking.search()))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        let mut pending = false;
        for batch in uids.chunks(BATCH) {
            let set = batch
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            // PEEK: reading must not set \Seen; the partial fetch bounds what a huge message
            // costs.
            let query = format!("(UID BODY.PEEK[]<0.{}>)", super::dsn::MAX_PARSED);
            let fetched: Vec<_> = within(m, "fetch", async {
                session.uid_fetch(&set, &query).await?.try_collect().await
            })
            .await?;
            for message in fetched {
                let Some(uid) = message.uid else { continue };
                let raw = message.body().unwrap_or_default();
                let evidence = self.reader.evidence(raw);
                let mark = if evidence.is_empty() {
                    tracing::info!(
                        channel,
                        uid,
                        "bounce mailbox: not a bounce of ours, passed by"
                    );
                    Some(marking.passed_by())
                } else {
                    let mut taken = true;
                    for piece in evidence {
                        match sink.record(channel, piece.clone()).await {
                            Ok(Recorded::New) => {
                                tracing::info!(channel, uid, state = %piece.state, about = ?piece.about, "bounce mailbox: recorded");
                            }
                            Ok(Recorded::Duplicate) => {}
                            Ok(Recorded::Unknown(why)) => {
                                tracing::info!(channel, uid, %why, "bounce mailbox: a bounce about no delivery Postbud knows");
                            }
                            Ok(Recorded::NotYet) => taken = false,
                            Ok(other) => {
                                tracing::warn!(channel, uid, ?other, "bounce mailbox: left unread");
                                taken = false;
                            }
                            Err(error) => {
                                tracing::warn!(channel, uid, %error, "bounce mailbox: not recorded now; left to read again");
                                taken = false;
                            }
                        }
                    }
                    taken.then(|| marking.taken())
                };
                match mark {
                    Some(flags) => {
                        within(m, "store", async {
                            session
                                .uid_store(uid.to_string(), flags)
                                .await?
                                .try_collect::<Vec<_>>()
                                .await
                        })
                        .await?;
                    }
                    None => pending = true,
                }
            }
        }
        Ok(pending)
    }
}
