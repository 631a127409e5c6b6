//! A small in-process SFTP server (russh + russh-sftp) rooted at a local directory, for the demo
//! on machines without OpenSSH. It accepts one client key and presents one host key, both made
//! at start; it implements what an upload needs (open, write, read, stat, rename, remove) and
//! refuses to rename onto an existing file, as OpenSSH does.

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom, Write},
    net::SocketAddr,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use russh::{
    Channel, ChannelId,
    keys::{HashAlg, PrivateKey, PublicKey, ssh_key::LineEnding, ssh_key::private::Ed25519Keypair},
    server::{Auth, Msg, Session},
};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode,
};

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct SftpServer {
    addr: SocketAddr,
    host_fingerprint: String,
    client_key_path: PathBuf,
    stall: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ed25519() -> std::io::Result<PrivateKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

impl SftpServer {
    /// Serves `root` on a free port of 127.0.0.1; the client key is written to `key_dir`.
    pub async fn start(root: &Path, key_dir: &Path) -> std::io::Result<Self> {
        let host = ed25519()?;
        let client = ed25519()?;
        let client_key_path = key_dir.join("sftp_client_ed25519");
        let pem = client
            .to_openssh(LineEnding::LF)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::write(&client_key_path, pem.as_bytes())?;
        let host_fingerprint = host.public_key().fingerprint(HashAlg::Sha256).to_string();
        let config = Arc::new(russh::server::Config {
            keys: vec![host],
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (root, allowed) = (root.to_path_buf(), client.public_key().clone());
        let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalling = Arc::clone(&stall);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let handler = Connection {
                    root: root.clone(),
                    allowed: allowed.clone(),
                    channels: HashMap::new(),
                    stall: Arc::clone(&stalling),
                };
                let config = Arc::clone(&config);
                tokio::spawn(async move {
                    if let Ok(session) = russh::server::run_stream(config, socket, handler).await {
                        let _ = session.await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            host_fingerprint,
            client_key_path,
            stall,
            task,
        })
    }

    /// From now on, complete the SSH handshake and then never answer authentication (a server
    /// that hangs half-way).
    pub fn stall_authentication(&self, stall: bool) {
        self.stall.store(stall, std::sync::atomic::Ordering::SeqCst);
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `SHA256:...` of the host key, for `host_key = [...]`.
    pub fn host_fingerprint(&self) -> &str {
        &self.host_fingerprint
    }

    /// The accepted client key (OpenSSH format), for `private_key`.
    pub fn client_key(&self) -> &Path {
        &self.client_key_path
    }
}

struct Connection {
    root: PathBuf,
    allowed: PublicKey,
    channels: HashMap<ChannelId, Channel<Msg>>,
    stall: Arc<std::sync::atomic::AtomicBool>,
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.stall.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(if *key.public_key == self.allowed {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.channels.remove(&id)) {
            ("sftp", Some(channel)) => {
                session.channel_success(id)?;
                let files = Files {
                    root: self.root.clone(),
                    open: HashMap::new(),
                    next: 0,
                };
                tokio::spawn(russh_sftp::server::run(channel.into_stream(), files));
            }
            _ => session.channel_failure(id)?,
        }
        Ok(())
    }
}

struct Files {
    root: PathBuf,
    open: HashMap<String, std::fs::File>,
    next: u64,
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn code(error: &std::io::Error) -> StatusCode {
    match error.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    }
}

impl Files {
    /// The local path of a remote one; `..` never leaves the root.
    fn local(&self, remote: &str) -> Result<PathBuf, StatusCode> {
        let mut path = self.root.clone();
        for component in Path::new(remote).components() {
            match component {
                Component::Normal(part) => path.push(part),
                Component::RootDir | Component::CurDir => {}
                _ => return Err(StatusCode::PermissionDenied),
            }
        }
        Ok(path)
    }

    fn file(&mut self, handle: &str) -> Result<&mut std::fs::File, StatusCode> {
        self.open.get_mut(handle).ok_or(StatusCode::Failure)
    }
}

impl russh_sftp::server::Handler for Files {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        flags: OpenFlags,
        _: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let path = self.local(&filename)?;
        let file = std::fs::OpenOptions::new()
            .read(flags.contains(OpenFlags::READ))
            .write(flags.contains(OpenFlags::WRITE))
            .create(flags.contains(OpenFlags::CREATE))
            .truncate(flags.contains(OpenFlags::TRUNCATE))
            .open(path)
            .map_err(|e| code(&e))?;
        self.next += 1;
        let handle = self.next.to_string();
        self.open.insert(handle.clone(), file);
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.open.remove(&handle);
        Ok(ok(id))
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| code(&e))?;
        let mut data = vec![0; len as usize];
        let read = file.read(&mut data).map_err(|e| code(&e))?;
        if read == 0 {
            return Err(StatusCode::Eof);
        }
        data.truncate(read);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| code(&e))?;
        file.write_all(&data).map_err(|e| code(&e))?;
        Ok(ok(id))
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let metadata = std::fs::metadata(self.local(&path)?).map_err(|e| code(&e))?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&metadata),
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let metadata = self.file(&handle)?.metadata().map_err(|e| code(&e))?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&metadata),
        })
    }

    async fn rename(&mut self, id: u32, from: String, to: String) -> Result<Status, Self::Error> {
        let (from, to) = (self.local(&from)?, self.local(&to)?);
        // Like OpenSSH: link, then unlink; an existing target is never replaced.
        std::fs::hard_link(&from, &to).map_err(|e| code(&e))?;
        std::fs::remove_file(&from).map_err(|e| code(&e))?;
        Ok(ok(id))
    }

    async fn remove(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        std::fs::remove_file(self.local(&path)?).map_err(|e| code(&e))?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name {
            id,
            files: vec![File::dummy(path)],
        })
    }
}
