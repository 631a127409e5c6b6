//! One file, atomically: written under a temporary name in the same directory, renamed into
//! place, then a `.sha256` sidecar the same way.
//!
//! The rename is SFTP's own `SSH_FXP_RENAME`, which OpenSSH implements as link-then-unlink: it
//! never replaces an existing file and the file appears whole. An existing target is a repeat of
//! this delivery when its checksum matches, and an error when it does not.

use postbud_channel::ChannelError;
use russh_sftp::{client::SftpSession, protocol::StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// What happened to one file.
pub enum Put {
    /// Written and renamed into place.
    Written,
    /// A file with the same name and checksum was there already.
    AlreadyThere,
}

/// SFTP errors: missing directories and refused permissions are permanent; the rest (a lost
/// connection, a timeout, a generic failure) is retried.
pub fn classify(what: &str, error: russh_sftp::client::error::Error) -> ChannelError {
    use russh_sftp::client::error::Error;
    match &error {
        Error::Status(status) if status.status_code == StatusCode::PermissionDenied => {
            ChannelError::refused(format!(
                "{what}: permission denied by the server (is the target read-only?): {}",
                status.error_message
            ))
        }
        Error::Status(status) if status.status_code == StatusCode::NoSuchFile => {
            ChannelError::not_found(format!(
                "{what}: no such file or directory on the server: {}",
                status.error_message
            ))
        }
        _ => ChannelError::temporary(format!("{what}: {error}")),
    }
}

/// Whether the file at `path` holds exactly `bytes`: the size first (a file of another size is
/// never read), then the checksum, so the read is bounded by what we would have written.
async fn holds(sftp: &SftpSession, path: &str, bytes: &[u8]) -> Result<bool, ChannelError> {
    let size = sftp
        .metadata(path)
        .await
        .map_err(|e| classify(&format!("stat `{path}`"), e))?
        .len();
    if size != bytes.len() as u64 {
        return Ok(false);
    }
    let there = sftp
        .read(path)
        .await
        .map_err(|e| classify(&format!("read `{path}`"), e))?;
    Ok(Sha256::digest(&there) == Sha256::digest(bytes))
}

async fn exists(sftp: &SftpSession, path: &str) -> Result<bool, ChannelError> {
    sftp.try_exists(path)
        .await
        .map_err(|e| classify(&format!("stat `{path}`"), e))
}

async fn write_then_rename(
    sftp: &SftpSession,
    dir: &str,
    name: &str,
    bytes: &[u8],
    delivery_id: &str,
    mode: u32,
) -> Result<Put, ChannelError> {
    let target = format!("{dir}/{name}");
    if exists(sftp, &target).await? {
        return if holds(sftp, &target, bytes).await? {
            Ok(Put::AlreadyThere)
        } else {
            Err(ChannelError::permanent(format!(
                "`{target}` exists with different contents; not overwriting it"
            )))
        };
    }
    let temporary = format!("{dir}/.{name}.{delivery_id}.part");
    let mut file = sftp
        .create(&temporary)
        .await
        .map_err(|e| classify(&format!("create `{temporary}`"), e))?;
    // Before a byte is written: the invoice is never readable with the server's default mode.
    let attributes = russh_sftp::protocol::FileAttributes {
        permissions: Some(mode),
        ..Default::default()
    };
    match sftp.set_metadata(&temporary, attributes).await {
        Ok(()) => {}
        // A server that keeps permissions to itself (some managed SFTP services do) decides
        // them; that is no reason to leave the invoice undelivered.
        Err(russh_sftp::client::error::Error::Status(status))
            if status.status_code == StatusCode::OpUnsupported =>
        {
            tracing::warn!(file = %temporary, mode = format!("{mode:o}"), "the SFTP server does not set permissions; its own apply");
        }
        Err(e) => return Err(classify(&format!("chmod `{temporary}` to {mode:o}"), e)),
    }
    file.write_all(bytes)
        .await
        .map_err(|e| ChannelError::temporary(format!("write `{temporary}`: {e}")))?;
    file.shutdown()
        .await
        .map_err(|e| ChannelError::temporary(format!("close `{temporary}`: {e}")))?;
    let size = sftp
        .metadata(&temporary)
        .await
        .map_err(|e| classify(&format!("stat `{temporary}`"), e))?
        .len();
    if size != bytes.len() as u64 {
        let _ = sftp.remove_file(&temporary).await;
        return Err(ChannelError::temporary(format!(
            "`{temporary}` has {size} bytes after upload, expected {}",
            bytes.len()
        )));
    }
    if let Err(error) = sftp.rename(&temporary, &target).await {
        let _ = sftp.remove_file(&temporary).await;
        // Lost a race with another attempt of the same delivery: its file decides.
        if exists(sftp, &target).await? && holds(sftp, &target, bytes).await? {
            return Ok(Put::AlreadyThere);
        }
        return Err(classify(
            &format!("rename `{temporary}` to `{target}`"),
            error,
        ));
    }
    Ok(Put::Written)
}

/// Puts `name` and its `.sha256` sidecar into `dir`.
pub async fn put(
    sftp: &SftpSession,
    dir: &str,
    name: &str,
    bytes: &[u8],
    delivery_id: &str,
    mode: u32,
) -> Result<Put, ChannelError> {
    let main = write_then_rename(sftp, dir, name, bytes, delivery_id, mode).await?;
    let sidecar = format!("{}  {name}\n", hex::encode(Sha256::digest(bytes)));
    write_then_rename(
        sftp,
        dir,
        &format!("{name}.sha256"),
        sidecar.as_bytes(),
        delivery_id,
        mode,
    )
    .await?;
    Ok(main)
}
