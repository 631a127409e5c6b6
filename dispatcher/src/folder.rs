//! The built-in `folder` channel: the PDF and a JSON manifest written into a local directory,
//! atomically (temporary name, fsync, rename), for archives and mounted drop folders.

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
        build: build,
    };
}

/// `[channels.<name>]` of kind `folder`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderConfig {
    /// Target directory.
    path: String,
    /// Create the directory when it is missing (default true).
    #[serde(default = "yes")]
    create: bool,
    /// Permissions of the files written, in octal (default `"0640"`: the owner and its group,
    /// for the system that reads them; never the world).
    #[serde(default = "default_mode")]
    mode: String,
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
    Ok(Box::new(FolderChannel {
        dir: ctx.config.path("path", &config.path),
        create: config.create,
        mode,
    }))
}

/// Writes invoices into a directory.
#[derive(Debug)]
pub struct FolderChannel {
    dir: PathBuf,
    create: bool,
    mode: u32,
}

/// A file name that cannot escape the directory, distinct for distinct invoice numbers.
fn safe_stem(invoice_number: &str) -> String {
    postbud_channel::file_name::stem(invoice_number)
}

impl FolderChannel {
    async fn prepare(&self) -> Result<(), ChannelError> {
        if self.create {
            tokio::fs::create_dir_all(&self.dir)
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

    /// Writes `bytes` to `name` through a temporary file in the same directory.
    async fn write_atomically(
        &self,
        name: &str,
        delivery_id: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, ChannelError> {
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
            tokio::fs::rename(&temporary, &target).await
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(io_error(&target, "write", &e));
        }
        Ok(target)
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
    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.prepare().await?;
        let stem = safe_stem(&invoice.invoice_number);
        let pdf = self
            .write_atomically(&format!("{stem}.pdf"), &ctx.delivery_id, &invoice.pdf.bytes)
            .await?;
        let manifest = json!({
            "type": "invoice.ready",
            "delivery_id": ctx.delivery_id,
            "invoice": invoice,
            "pdf": { "file": format!("{stem}.pdf"), "sha256": invoice.pdf.sha256, "size": invoice.pdf.bytes.len() },
        });
        let manifest = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ChannelError::permanent(e.to_string()))?;
        // The manifest is written last: a reader that sees it may rely on the PDF being complete.
        self.write_atomically(&format!("{stem}.json"), &ctx.delivery_id, &manifest)
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
        let stem = safe_stem(&invoice.invoice_number);
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
            .write_atomically(&format!("{stem}.voided.json"), &ctx.delivery_id, &manifest)
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
