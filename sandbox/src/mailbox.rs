//! A minimal SMTP receiver (no TLS, no AUTH) on a loopback port that writes each accepted
//! message to `<dir>/<n>.eml`: the demo's local inbox on machines without a mail server. The
//! tests use a real server ([`crate::smtp`]); this one only has to accept what lettre sends.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Mailbox {
    addr: SocketAddr,
    dir: PathBuf,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mailbox {
    /// Listens on a free port of 127.0.0.1 and stores messages in `dir`.
    pub async fn start(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let count = Arc::new(AtomicUsize::new(0));
        let (store, counter) = (dir.to_path_buf(), Arc::clone(&count));
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (store, counter) = (store.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    let _ = session(socket, &store, &counter).await;
                });
            }
        });
        Ok(Self {
            addr,
            dir: dir.to_path_buf(),
            count,
            task,
        })
    }

    /// `smtp://127.0.0.1:<port>` (plain: loopback only).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Where messages land.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Messages accepted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

async fn session(socket: TcpStream, store: &Path, counter: &AtomicUsize) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 postbud-sandbox ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                write
                    .write_all(b"250-postbud-sandbox\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    .await?
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => write.write_all(b"250 OK\r\n").await?,
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut message = Vec::new();
                loop {
                    let mut data = String::new();
                    if lines.read_line(&mut data).await? == 0 {
                        return Ok(());
                    }
                    if data == ".\r\n" {
                        break;
                    }
                    // Undo dot-stuffing.
                    message.extend_from_slice(data.strip_prefix('.').unwrap_or(&data).as_bytes());
                }
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::fs::write(store.join(format!("{n}.eml")), &message).await?;
                write
                    .write_all(format!("250 queued as {n}\r\n").as_bytes())
                    .await?;
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"502 not implemented\r\n").await?,
        }
    }
}
