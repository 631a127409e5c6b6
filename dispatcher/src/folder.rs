//! The built-in `folder` channel: the PDF and a JSON manifest written into a local directory,
//! atomically (temporary name, fsync, rename), for archives and mounted drop folders.
//!
//! The files are named after the invoice number, as a program polling the folder looks for
//! them. Kravia numbers are not unique across transactions (another account, a test account,
//! a number series restarted), so a name another transaction's invoice already holds is never
//! overwritten: the second invoice's files take its number with its transaction id
//! (`<number>_<transaction>~<digest>.pdf`), and every manifest says which transaction it is.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use postbud_channel::{
    BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt,
    file_name::parse_mode,
};

postbud_channel::register_channel! {
    /// Registered as kind `folder`.
    pub static FACTORY = {
        kind: "folder",
        description: "writes the PDF and a JSON manifest into a local directory, atomically",
        crate_name: "postbud",
        example: "[channels.archive]\nkind = \"folder\"\npath = \"./invoices\"\n",
        config: FolderConfig,
        build: build,
    };
}

/// `[channels.<name>]` of kind `folder`.
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
struct FolderConfig {
    /// The directory; a relative path is relative to the configuration file's directory.
    path: String,
    /// Create the directory when it is missing; false: a missing one fails the delivery.
    #[serde(default = "yes")]
    create: bool,
    /// Permissions of the files written, in octal (the default: the owner and its group, for
    /// the system that reads them; never the world).
    #[serde(default = "default_mode")]
    mode: String,
    /// Permissions of the directories the channel creates, in octal (default: from `mode`, the
    /// owner's `rwx` and `r-x` for whoever may read the files: `0750` for `0640`, `0700` for
    /// `0600`); an existing directory is left as it is.
    #[serde(default)]
    dir_mode: Option<String>,
}

fn default_mode() -> String {
    "0640".into()
}

fn yes() -> bool {
    true
}

fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    let config: FolderConfig = ctx.config.extract()?;
    if config.path.trim().is_empty() {
        return Err(ctx.config.error("path", "must not be empty"));
    }
    let mode = parse_mode(&config.mode).map_err(|why| ctx.config.error("mode", why))?;
    let dir_mode = match &config.dir_mode {
        Some(text) => parse_mode(text).map_err(|why| ctx.config.error("dir_mode", why))?,
        None => dir_mode_for(mode),
    };
    Ok(Box::new(FolderChannel {
        dir: ctx.config.path("path", &config.path),
        create: config.create,
        mode,
        dir_mode,
    }))
}

/// The directory mode that lets exactly those who may read the files (by `mode`) list and
/// enter it; the owner always has `rwx`. A directory made under the process umask would
/// otherwise show every invoice number to every local user.
fn dir_mode_for(mode: u32) -> u32 {
    let mut dir = 0o700;
    if mode & 0o040 != 0 {
        dir |= 0o050;
    }
    if mode & 0o004 != 0 {
        dir |= 0o005;
    }
    dir
}

/// Writes invoices into a directory.
#[derive(Debug)]
pub struct FolderChannel {
    dir: PathBuf,
    create: bool,
    mode: u32,
    dir_mode: u32,
}

/// A file name that cannot escape the directory, distinct for distinct invoice numbers.
fn safe_stem(invoice_number: &str) -> String {
    postbud_channel::file_name::stem(invoice_number)
}

/// The stems an invoice's files may have, in the order they are tried: its number, then its
/// number with its transaction id (distinct for every transaction; `~` and a digest keep it
/// from being any invoice number's own stem).
fn stems(invoice: &Invoice) -> [String; 2] {
    [
        safe_stem(&invoice.invoice_number),
        safe_stem(&format!(
            "{}~{}",
            invoice.invoice_number, invoice.transaction_id
        )),
    ]
}

/// The most of an existing manifest read to learn its transaction: far more than any manifest.
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// Whose files a stem holds in the directory.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// No file of that stem.
    Nobody,
    /// This transaction's (an earlier attempt, or the manifest says so).
    This,
    /// Another transaction's, or a file Postbud cannot tell: never overwritten.
    Other,
}

/// Reads at most `limit` bytes of `path`; `None` when there is no such file.
async fn read_prefix(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).await?;
    Ok(Some(bytes))
}

impl FolderChannel {
    async fn prepare(&self) -> Result<(), ChannelError> {
        if self.create {
            self.create_dir()
                .await
                .map_err(|e| io_error(&self.dir, "create directory", &e))?;
        } else if !self.dir.is_dir() {
            return Err(ChannelError::permanent(format!(
                "directory `{}` does not exist",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Creates the directory and its missing parents with `dir_mode`, whatever the umask.
    async fn create_dir(&self) -> std::io::Result<()> {
        let missing: Vec<PathBuf> = self
            .dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .map(Path::to_path_buf)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(self.dir_mode);
        builder.create(&self.dir).await?;
        // The umask may have taken bits away; the configured mode is what is meant.
        #[cfg(unix)]
        for dir in &missing {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(self.dir_mode)).await?;
        }
        Ok(())
    }

    /// Whose files `stem` names: the manifest's transaction, else (a PDF written and its
    /// manifest not yet, by a process that died or is still at it) whether the PDF is this
    /// invoice's.
    async fn holder(&self, stem: &str, invoice: &Invoice) -> Result<Holder, ChannelError> {
        let manifest = self.dir.join(format!("{stem}.json"));
        let read = read_prefix(&manifest, MANIFEST_LIMIT)
            .await
            .map_err(|e| io_error(&manifest, "read", &e))?;
        if let Some(bytes) = read {
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let transaction = value
                .get("transaction_id")
                .or_else(|| value.get("invoice")?.get("transaction_id"))
                .and_then(serde_json::Value::as_str);
            return Ok(if transaction == Some(invoice.transaction_id.as_str()) {
                Holder::This
            } else {
                Holder::Other
            });
        }
        let pdf = self.dir.join(format!("{stem}.pdf"));
        let limit = invoice.pdf.bytes.len() as u64 + 1;
        let read = read_prefix(&pdf, limit)
            .await
            .map_err(|e| io_error(&pdf, "read", &e))?;
        Ok(match read {
            None => Holder::Nobody,
            Some(bytes) if bytes[..] == invoice.pdf.bytes[..] => Holder::This,
            Some(_) => Holder::Other,
        })
    }

    /// Writes the PDF under the first stem that is free or already this transaction's, and
    /// returns the stem: a name another transaction holds is never overwritten, and two
    /// deliveries racing for a free name cannot both take it.
    async fn place_pdf(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<(String, PathBuf), ChannelError> {
        let bytes = &invoice.pdf.bytes;
        for stem in stems(invoice) {
            let name = format!("{stem}.pdf");
            // Twice: a name taken between the look and the write is looked at again.
            for _ in 0..2 {
                let place = match self.holder(&stem, invoice).await? {
                    Holder::Other => break,
                    Holder::This => Place::Replace,
                    Holder::Nobody => Place::New,
                };
                match self
                    .write_atomically(&name, &ctx.delivery_id, bytes, place)
                    .await
                {
                    Ok(path) => return Ok((stem, path)),
                    Err(Written::Taken) => continue,
                    Err(Written::Failed(e)) => return Err(e),
                }
            }
        }
        Err(ChannelError::permanent(format!(
            "the files for invoice number `{}` in `{}` belong to other transactions (both `{}.pdf` and `{}.pdf`); not overwriting them",
            invoice.invoice_number,
            self.dir.display(),
            stems(invoice)[0],
            stems(invoice)[1],
        )))
    }

    /// The stem this transaction's files have (or would have) in the directory.
    async fn stem_of(&self, invoice: &Invoice) -> Result<String, ChannelError> {
        let [first, second] = stems(invoice);
        if self.holder(&second, invoice).await? == Holder::This
            || self.holder(&first, invoice).await? == Holder::Other
        {
            return Ok(second);
        }
        Ok(first)
    }

    /// Writes `bytes` to `name` through a temporary file in the same directory; with
    /// [`Place::New`], only if `name` does not exist.
    async fn write_atomically(
        &self,
        name: &str,
        delivery_id: &str,
        bytes: &[u8],
        place: Place,
    ) -> Result<PathBuf, Written> {
        let target = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.{delivery_id}.tmp"));
        let result = async {
            // A stale temporary (or a symlink someone planted under its name) goes first, and the
            // new one is created exclusively: O_EXCL never follows a link.
            let _ = tokio::fs::remove_file(&temporary).await;
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(self.mode);
            let mut file = options.open(&temporary).await?;
            // The process umask may have taken bits away; the configured mode is what is meant.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(self.mode))
                    .await?;
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
            file.sync_all().await?;
            match place {
                Place::Replace => tokio::fs::rename(&temporary, &target).await,
                // A hard link never replaces: of two deliveries racing for a name, one gets
                // `AlreadyExists`. A file system without hard links gets a look, then a rename.
                Place::New => match tokio::fs::hard_link(&temporary, &target).await {
                    Ok(()) => tokio::fs::remove_file(&temporary).await,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
                    Err(_) if tokio::fs::try_exists(&target).await? => {
                        Err(std::io::ErrorKind::AlreadyExists.into())
                    }
                    Err(_) => tokio::fs::rename(&temporary, &target).await,
                },
            }
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&temporary).await;
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(Written::Taken);
            }
            return Err(Written::Failed(io_error(&target, "write", &e)));
        }
        Ok(target)
    }
}

/// How a file is put in place.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Over whatever has the name (this transaction's own file, or nothing).
    Replace,
    /// Only where nothing has the name.
    New,
}

/// Why a file was not written.
enum Written {
    /// [`Place::New`], and the name was taken meanwhile.
    Taken,
    Failed(ChannelError),
}

impl From<Written> for ChannelError {
    fn from(written: Written) -> Self {
        match written {
            Written::Taken => ChannelError::temporary("the file name was taken meanwhile"),
            Written::Failed(e) => e,
        }
    }
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> ChannelError {
    use std::io::ErrorKind::*;
    let message = format!("{what} `{}`: {e}", path.display());
    match e.kind() {
        PermissionDenied | ReadOnlyFilesystem | NotADirectory | InvalidFilename => {
            ChannelError::permanent(message)
        }
        _ => ChannelError::temporary(message),
    }
}

#[async_trait::async_trait]
impl Channel for FolderChannel {
    fn evidence(&self) -> postbud_channel::EvidenceOffer {
        postbud_channel::EvidenceOffer::new(
            "the PDF and its manifest are in the directory under their final names, written, synced and renamed; whether a program took them, nothing reports",
        )
    }

    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.prepare().await?;
        let (stem, pdf) = self.place_pdf(invoice, ctx).await?;
        let manifest = json!({
            "type": "invoice.ready",
            "delivery_id": ctx.delivery_id,
            "transaction_id": invoice.transaction_id,
            "invoice": invoice,
            "pdf": { "file": format!("{stem}.pdf"), "sha256": invoice.pdf.sha256, "size": invoice.pdf.bytes.len() },
        });
        let manifest = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ChannelError::permanent(e.to_string()))?;
        // The manifest is written last: a reader that sees it may rely on the PDF being complete.
        self.write_atomically(
            &format!("{stem}.json"),
            &ctx.delivery_id,
            &manifest,
            Place::Replace,
        )
        .await?;
        Ok(Receipt::new(format!("wrote {}", pdf.display())))
    }

    fn supports_cancel(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.prepare().await?;
        let stem = self.stem_of(invoice).await?;
        let manifest = json!({
            "type": "invoice.voided",
            "delivery_id": ctx.delivery_id,
            "transaction_id": invoice.transaction_id,
            "invoice_number": invoice.invoice_number,
            "voided_at": jiff::Timestamp::now(),
        });
        let manifest = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ChannelError::permanent(e.to_string()))?;
        let path = self
            .write_atomically(
                &format!("{stem}.voided.json"),
                &ctx.delivery_id,
                &manifest,
                Place::Replace,
            )
            .await?;
        Ok(Receipt::new(format!("wrote {}", path.display())))
    }

    /// Looks without touching: `postbud check` changes nothing on disk.
    async fn check(&self) -> Result<String, ChannelError> {
        let writable = |dir: &Path| {
            #[cfg(unix)]
            let refused = rustix::fs::access(
                dir,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            )
            .err()
            .map(|e| e.to_string());
            #[cfg(not(unix))]
            let refused = std::fs::metadata(dir)
                .map(|m| m.permissions().readonly())
                .unwrap_or(true)
                .then(|| "read-only".to_owned());
            match refused {
                None => Ok(()),
                Some(e) => Err(ChannelError::permanent(format!(
                    "directory `{}` is not writable: {e}",
                    dir.display()
                ))),
            }
        };
        if self.dir.is_dir() {
            writable(&self.dir)?;
            return Ok(format!("directory `{}` is writable", self.dir.display()));
        }
        if !self.create {
            return Err(ChannelError::permanent(format!(
                "directory `{}` does not exist (create = false)",
                self.dir.display()
            )));
        }
        let existing = self
            .dir
            .ancestors()
            .find(|a| a.is_dir())
            .unwrap_or(Path::new("/"));
        writable(existing)?;
        Ok(format!(
            "directory `{}` does not exist yet: the first delivery creates it (`{}` is writable)",
            self.dir.display(),
            existing.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_cannot_escape_the_directory() {
        let escaped = super::safe_stem("../../etc/passwd");
        assert!(escaped.starts_with("_.._etc_passwd~"), "{escaped}");
        assert_eq!(super::safe_stem("A1B2C-000001"), "A1B2C-000001");
    }
}
