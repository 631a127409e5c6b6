//! The SSH connection: host key always verified (known_hosts or pinned SHA256 fingerprints),
//! key or password authentication, and the SFTP subsystem.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use postbud_channel::ChannelError;
use russh::{
    client,
    keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey},
};
use russh_sftp::client::SftpSession;
use secrecy::{ExposeSecret, SecretString};

/// How the server's key is trusted. There is no "accept any key".
#[derive(Debug, Clone)]
pub enum HostKeys {
    /// An OpenSSH `known_hosts` file.
    KnownHosts(PathBuf),
    /// `SHA256:...` fingerprints.
    Pinned(Vec<String>),
}

/// How we prove who we are.
pub enum Credentials {
    /// A private key (OpenSSH or PEM), with its passphrase if it has one.
    Key {
        pem: SecretString,
        passphrase: Option<SecretString>,
    },
    /// A password.
    Password(SecretString),
}

/// Everything needed to connect.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub host_keys: HostKeys,
    pub credentials: Credentials,
    pub timeout: Duration,
}

struct Verifier {
    host: String,
    port: u16,
    host_keys: HostKeys,
    refusal: Arc<Mutex<Option<String>>>,
}

impl Verifier {
    fn verdict(&self, key: &PublicKey) -> Result<(), String> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match &self.host_keys {
            HostKeys::Pinned(pins) if pins.contains(&fingerprint) => Ok(()),
            HostKeys::Pinned(pins) => Err(format!(
                "host key of {}:{} is {fingerprint}, which is not pinned in host_key [{}]: refusing to connect",
                self.host,
                self.port,
                pins.join(", ")
            )),
            HostKeys::KnownHosts(path) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "host key of {}:{} ({fingerprint}) is not in known_hosts `{}`: add it after checking it out of band",
                        self.host,
                        self.port,
                        path.display()
                    )),
                    Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                        "host key of {}:{} CHANGED: it is now {fingerprint}, which differs from line {line} of `{}`; refusing to connect",
                        self.host,
                        self.port,
                        path.display()
                    )),
                    Err(e) => Err(format!("known_hosts `{}`: {e}", path.display())),
                }
            }
        }
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) =
                Some("the server offered a certificate; only pinned keys are accepted".into());
            return Ok(false);
        };
        match self.verdict(key) {
            Ok(()) => Ok(true),
            Err(why) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                Ok(false)
            }
        }
    }
}

/// An open SFTP session and the SSH connection under it.
pub struct Connection {
    pub sftp: SftpSession,
    _ssh: client::Handle<Verifier>,
}

/// Connects, verifies the host key, authenticates and starts SFTP.
pub async fn connect(target: &Target) -> Result<Connection, ChannelError> {
    let refusal = Arc::new(Mutex::new(None));
    let verifier = Verifier {
        host: target.host.clone(),
        port: target.port,
        host_keys: target.host_keys.clone(),
        refusal: Arc::clone(&refusal),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(300)),
        ..Default::default()
    });
    let connecting = client::connect(config, (target.host.as_str(), target.port), verifier);
    let mut ssh = match tokio::time::timeout(target.timeout, connecting).await {
        Err(_) => {
            return Err(ChannelError::timed_out(format!(
                "SSH to {}:{} timed out after {:?}",
                target.host, target.port, target.timeout
            )));
        }
        Ok(Err(e)) => {
            if let Some(why) = refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(ChannelError::refused(why));
            }
            return Err(ChannelError::unavailable(format!(
                "SSH to {}:{}: {e}",
                target.host, target.port
            ))
            .with_source(e));
        }
        Ok(Ok(ssh)) => ssh,
    };
    // Every step after the handshake is bounded too: a server that accepts the connection and
    // then stalls (in authentication, opening the channel, starting SFTP) must not hold the
    // delivery, and the lease with it, for ever.
    let setup = async {
        let auth = match &target.credentials {
            Credentials::Key { pem, passphrase } => {
                let key = russh::keys::decode_secret_key(
                    pem.expose_secret(),
                    passphrase.as_ref().map(|p| p.expose_secret()),
                )
                .map_err(|e| {
                    ChannelError::invalid_input(format!("private_key cannot be read: {e}"))
                        .with_config_key("private_key")
                })?;
                let hash = ssh
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| ChannelError::temporary(format!("SSH: {e}")))?
                    .flatten();
                ssh.authenticate_publickey(
                    &target.username,
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
            }
            Credentials::Password(password) => {
                ssh.authenticate_password(&target.username, password.expose_secret())
                    .await
            }
        }
        .map_err(|e| {
            ChannelError::unavailable(format!("SSH authentication: {e}")).with_source(e)
        })?;
        if !auth.success() {
            // The key (or password) the configuration names is the one to fix.
            let key = match &target.credentials {
                Credentials::Key { .. } => "private_key",
                Credentials::Password(_) => "password",
            };
            return Err(ChannelError::unauthorized(format!(
                "{}@{}:{} refused our authentication (check username and {key})",
                target.username, target.host, target.port
            ))
            .with_config_key(key));
        }
        let channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| ChannelError::temporary(format!("SSH session: {e}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| ChannelError::temporary(format!("SFTP subsystem: {e}")))?;
        let sftp = SftpSession::new(channel.into_stream())
            .await
            .map_err(|e| ChannelError::temporary(format!("SFTP start: {e}")))?;
        sftp.set_timeout(target.timeout.as_secs().max(1));
        Ok::<_, ChannelError>(sftp)
    };
    let sftp = tokio::time::timeout(target.timeout, setup)
        .await
        .map_err(|_| {
            ChannelError::timed_out(format!(
                "SSH to {}:{}: authentication or starting SFTP took longer than {:?}",
                target.host, target.port, target.timeout
            ))
        })??;
    Ok(Connection { sftp, _ssh: ssh })
}
