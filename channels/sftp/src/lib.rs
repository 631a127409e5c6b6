//! # postbud-sftp
//!
//! Kind `sftp`: files for an ERP dropped on an SFTP server, safely. Each file is written under
//! a temporary name in the target directory and renamed into place, so a poller never sees a
//! partial file; a `.sha256` sidecar follows. Names derive from the delivery, so a retry after
//! an unknown outcome finds its file, compares the checksum and counts it as delivered.
//! Formats: `ubl` (EHF 3.0 / Peppol BIS Billing 3.0 Invoice with the PDF embedded), `pdf`,
//! `json` (a manifest). A void drops a cancellation manifest and, with `ubl`, a CreditNote.
//!
//! ```toml
//! [channels.erp]
//! kind = "sftp"
//! host = "erp.merchant.example"
//! username = "postbud"
//! private_key = "/etc/postbud/erp_ed25519"
//! known_hosts = "/etc/postbud/known_hosts"     # or host_key = ["SHA256:..."]
//! remote_dir = "/inbound/invoices"
//! formats = ["ubl", "pdf", "json"]
//! [channels.erp.seller]
//! name = "Merchant AS"
//! organization_number = "745707327"
//! vat_number = "NO745707327MVA"
//! address = { line = "Storgata 1", postal_code = "0151", city = "Oslo", country = "NO" }
//! ```

#![warn(missing_docs)]

mod ssh;
pub use postbud_ubl as ubl;
mod upload;

use std::{fmt, time::Duration};

use postbud_channel::{
    BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt,
};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::Mutex;

use self::ssh::{Connection, Credentials, HostKeys, Target};

postbud_channel::register_channel! {
    /// The factory of kind `sftp`.
    pub static FACTORY = {
        kind: "sftp",
        description: "safe SFTP drops for an ERP: EHF/Peppol UBL with the PDF, the PDF, a JSON manifest",
        crate_name: env!("CARGO_PKG_NAME"),
        example: "[channels.erp]\nkind = \"sftp\"\nhost = \"erp.example\"\nusername = \"postbud\"\nprivate_key = \"/etc/postbud/erp_ed25519\"\nknown_hosts = \"/etc/postbud/known_hosts\"\nremote_dir = \"/inbound\"\n",
        config: SftpConfig,
        build: build,
    };
}

/// Links this crate's kind explicitly.
pub fn register(
    registry: &mut postbud_channel::Registry,
) -> Result<(), postbud_channel::DuplicateKind> {
    registry.add(&FACTORY)
}

/// The channel's own table.
#[derive(Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
struct SftpConfig {
    /// The SFTP server's host name.
    host: String,
    /// Its SSH port.
    #[serde(default = "ssh_port")]
    port: u16,
    /// The user to log in as.
    username: String,
    /// A path, or the key itself (`-----BEGIN ...`); exactly one of `private_key` and
    /// `password`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    private_key: Option<SecretString>,
    /// The passphrase of an encrypted `private_key` (default: none).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    passphrase: Option<SecretString>,
    /// A password, instead of `private_key`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    password: Option<SecretString>,
    /// An OpenSSH `known_hosts` file; exactly one of `known_hosts` and `host_key` is required.
    #[serde(default)]
    known_hosts: Option<String>,
    /// Pinned host key fingerprints (`SHA256:...`, as `ssh-keygen -lf key.pub` prints them)
    /// instead of `known_hosts`.
    #[serde(default)]
    host_key: Vec<String>,
    /// The directory the files are dropped in.
    remote_dir: String,
    /// The files' name without extension: `{invoice_number}`, `{transaction_id}`,
    /// `{delivery_id}`.
    #[serde(default = "invoice_number")]
    file_name: String,
    /// Any of `ubl`, `pdf` and `json`.
    #[serde(default = "all_formats")]
    formats: Vec<String>,
    /// What the UBL needs about the merchant (required with `ubl`).
    #[serde(default)]
    seller: Option<ubl::Seller>,
    /// Connecting, and each SFTP request.
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    #[schemars(with = "String")]
    timeout: Duration,
    /// Permissions of the files dropped, in octal.
    #[serde(default = "default_mode")]
    mode: String,
}

fn default_mode() -> String {
    "0640".into()
}

fn ssh_port() -> u16 {
    22
}
fn invoice_number() -> String {
    "{invoice_number}".into()
}
fn all_formats() -> Vec<String> {
    vec!["ubl".into(), "pdf".into(), "json".into()]
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// Drops invoices on an SFTP server.
pub struct SftpChannel {
    target: Target,
    remote_dir: String,
    file_name: String,
    formats: Vec<String>,
    seller: Option<ubl::Seller>,
    /// Permissions of every file dropped.
    mode: u32,
    /// Reused across deliveries; dropped after an error so the next attempt reconnects.
    connection: Mutex<Option<Connection>>,
}

impl fmt::Debug for SftpChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpChannel")
            .field("host", &self.target.host)
            .field("port", &self.target.port)
            .field("remote_dir", &self.remote_dir)
            .finish_non_exhaustive()
    }
}

fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    let c: SftpConfig = ctx.config.extract()?;
    let cfg = &ctx.config;
    let host_keys = match (&c.known_hosts, c.host_key.is_empty()) {
        (Some(path), true) => HostKeys::KnownHosts(cfg.path("known_hosts", path)),
        (None, false) => {
            if let Some(bad) = c.host_key.iter().find(|k| !k.starts_with("SHA256:")) {
                return Err(cfg.error("host_key", format!("`{bad}` is not a SHA256:... fingerprint (ssh-keygen -lf key.pub)")));
            }
            HostKeys::Pinned(c.host_key.clone())
        }
        (Some(_), false) => return Err(cfg.error("host_key", "set known_hosts or host_key, not both")),
        (None, true) => return Err(cfg.error("known_hosts", "the host key must be verified: set known_hosts (a file) or host_key = [\"SHA256:...\"]")),
    };
    let credentials = match (c.private_key, c.password) {
        (Some(key), None) => {
            use secrecy::ExposeSecret;
            let pem = if key.expose_secret().trim_start().starts_with("-----BEGIN") {
                key
            } else {
                // Relative to the configuration file, as every path in it.
                let path = cfg.path("private_key", key.expose_secret());
                let path = path.to_string_lossy().into_owned();
                // Named only when it looks like a path: an inline key in another format (PuTTY,
                // a mangled environment value) must not end up in the message.
                let shown = if path.len() < 256 && !path.contains('\n') && !path.contains(' ') {
                    format!("`{path}`")
                } else {
                    "the value (not shown: it may be a key)".to_owned()
                };
                SecretString::from(std::fs::read_to_string(&path).map_err(|e| {
                    cfg.error(
                        "private_key",
                        format!("{shown} is neither a PEM key nor a readable file: {e}"),
                    )
                })?)
            };
            Credentials::Key {
                pem,
                passphrase: c.passphrase,
            }
        }
        (None, Some(password)) => Credentials::Password(password),
        _ => {
            return Err(cfg.error(
                "private_key",
                "set private_key (a path or the key) or password, exactly one",
            ));
        }
    };
    for format in &c.formats {
        if !["ubl", "pdf", "json"].contains(&format.as_str()) {
            return Err(cfg.error("formats", format!("`{format}`: expected ubl, pdf or json")));
        }
    }
    if c.formats.iter().any(|f| f == "ubl") && c.seller.is_none() {
        return Err(cfg.error("seller", "formats includes \"ubl\": add [channels.<name>.seller] with name, organization_number, vat_number and address"));
    }
    if let Some(seller) = &c.seller {
        // The identifiers an access point would refuse, refused at start-up, naming the key.
        seller
            .check()
            .map_err(|e| cfg.error(&format!("seller.{}", e.key), e.reason))?;
    }
    let mode =
        postbud_channel::file_name::parse_mode(&c.mode).map_err(|why| cfg.error("mode", why))?;
    Ok(Box::new(SftpChannel {
        mode,
        target: Target {
            host: c.host,
            port: c.port,
            username: c.username,
            host_keys,
            credentials,
            timeout: c.timeout,
        },
        remote_dir: c.remote_dir.trim_end_matches('/').to_owned(),
        file_name: c.file_name,
        formats: c.formats,
        seller: c.seller,
        connection: Mutex::new(None),
    }))
}

/// Postbud's one sanitiser: safe characters only, distinct for distinct names.
fn safe(name: &str) -> String {
    postbud_channel::file_name::stem(name)
}

impl SftpChannel {
    fn base_name(&self, invoice: &Invoice, ctx: &DeliveryContext) -> String {
        safe(
            &self
                .file_name
                .replace("{invoice_number}", &invoice.invoice_number)
                .replace("{transaction_id}", &invoice.transaction_id)
                .replace("{delivery_id}", &ctx.delivery_id),
        )
    }

    fn files(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
        cancelled: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, ChannelError> {
        let base = self.base_name(invoice, ctx);
        let mut files = Vec::new();
        let json = |kind: &str| {
            serde_json::to_vec_pretty(&serde_json::json!({
                "type": kind, "delivery_id": ctx.delivery_id, "invoice": invoice,
                "pdf": { "file": format!("{base}.pdf"), "sha256": invoice.pdf.sha256, "size": invoice.pdf.bytes.len() },
            }))
            .map_err(|e| ChannelError::permanent(e.to_string()))
        };
        let seller = || {
            self.seller
                .as_ref()
                .ok_or_else(|| ChannelError::permanent("no seller for the UBL"))
        };
        if cancelled {
            if self.formats.iter().any(|f| f == "ubl") {
                let credit =
                    ubl::credit_note(seller()?, invoice).map_err(ChannelError::permanent)?;
                files.push((format!("{base}-credit.xml"), credit.into_bytes()));
            }
            files.push((format!("{base}.voided.json"), json("invoice.voided")?));
            return Ok(files);
        }
        // The PDF first and the UBL last: a consumer keyed on the XML finds the rest in place.
        if self.formats.iter().any(|f| f == "pdf") {
            files.push((format!("{base}.pdf"), invoice.pdf.bytes.to_vec()));
        }
        if self.formats.iter().any(|f| f == "json") {
            files.push((format!("{base}.json"), json("invoice.ready")?));
        }
        if self.formats.iter().any(|f| f == "ubl") {
            let xml = ubl::invoice(seller()?, invoice).map_err(ChannelError::permanent)?;
            files.push((format!("{base}.xml"), xml.into_bytes()));
        }
        Ok(files)
    }

    async fn drop_files(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
        cancelled: bool,
    ) -> Result<Receipt, ChannelError> {
        let files = self.files(invoice, ctx, cancelled)?;
        let mut guard = self.connection.lock().await;
        if guard.is_none() {
            *guard = Some(ssh::connect(&self.target).await?);
        }
        let connection = guard.as_ref().expect("connected above");
        let mut written = Vec::new();
        let mut already = Vec::new();
        for (name, bytes) in &files {
            match upload::put(
                &connection.sftp,
                &self.remote_dir,
                name,
                bytes,
                &ctx.delivery_id,
                self.mode,
            )
            .await
            {
                Ok(upload::Put::Written) => written.push(name.clone()),
                Ok(upload::Put::AlreadyThere) => already.push(name.clone()),
                Err(e) => {
                    // The session may be broken: start afresh next time.
                    *guard = None;
                    return Err(e);
                }
            }
        }
        let mut detail = format!(
            "{}:{}{}: wrote {}",
            self.target.host,
            self.target.port,
            self.remote_dir,
            written.join(", ")
        );
        if !already.is_empty() {
            detail.push_str(&format!(
                "; already there with the same checksum: {}",
                already.join(", ")
            ));
        }
        Ok(Receipt::new(detail))
    }
}

#[async_trait::async_trait]
impl Channel for SftpChannel {
    fn evidence(&self) -> postbud_channel::EvidenceOffer {
        postbud_channel::EvidenceOffer::new(
            "the files are on the SFTP server under their final names, each file's size read back equal to what was sent; whether the ERP picked them up, nothing reports",
        )
    }

    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.drop_files(invoice, ctx, false).await
    }

    fn supports_cancel(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.drop_files(invoice, ctx, true).await
    }

    async fn check(&self) -> Result<String, ChannelError> {
        let connection = ssh::connect(&self.target).await?;
        let metadata = connection
            .sftp
            .metadata(&self.remote_dir)
            .await
            .map_err(|e| upload::classify(&format!("remote_dir `{}`", self.remote_dir), e))?;
        if !metadata.is_dir() {
            return Err(ChannelError::permanent(format!(
                "remote_dir `{}` is not a directory",
                self.remote_dir
            )));
        }
        Ok(format!(
            "host key verified, authenticated, `{}` exists",
            self.remote_dir
        ))
    }
}
