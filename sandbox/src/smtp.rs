//! A real SMTP server for tests: Debian's `python3-aiosmtpd`, started on a loopback port with
//! STARTTLS (a throw-away CA and certificate made with `openssl`) and AUTH required.
//!
//! Recipients starting with `reject` get `550` at RCPT; those starting with `greylist` get `451`
//! the first time. Accepted messages land in [`SmtpServer::messages`].

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

const SCRIPT: &str = include_str!("smtp_server.py");

/// A running aiosmtpd; stopped on drop.
#[derive(Debug)]
pub struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    /// The raw RFC 5322 message.
    pub raw: Vec<u8>,
    /// The envelope: `mail_from`, `rcpt_tos`, `tls`, `auth`.
    pub envelope: serde_json::Value,
}

/// The user name the server accepts.
pub const USER: &str = "postbud";
/// The password the server accepts.
pub const PASSWORD: &str = "s3cret-smtp";

fn python_with_aiosmtpd() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost.
pub(crate) fn certificates(dir: &Path) -> Result<(), String> {
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Postbud Test CA",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ])
}

impl SmtpServer {
    /// Starts the server, or says why it cannot. Under `POSTBUD_REQUIRE_SERVICES=1` a missing
    /// server is a failure; otherwise the caller skips, loudly.
    pub fn start() -> Result<Self, String> {
        let python = python_with_aiosmtpd()
            .ok_or("python3 with aiosmtpd not found (apt-get install python3-aiosmtpd)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        certificates(dir.path())?;
        std::fs::create_dir(dir.path().join("mail")).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("smtp_server.py"), SCRIPT).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut child = Command::new(python)
            .arg(dir.path().join("smtp_server.py"))
            .args([
                "--port",
                &port.to_string(),
                "--user",
                USER,
                "--password",
                PASSWORD,
            ])
            .arg("--cert")
            .arg(dir.path().join("server.pem"))
            .arg("--key")
            .arg(dir.path().join("server.key"))
            .arg("--maildir")
            .arg(dir.path().join("mail"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start aiosmtpd: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "READY" {
            let _ = child.kill();
            return Err(format!("aiosmtpd did not start: {line}"));
        }
        Ok(Self { child, port, dir })
    }

    /// [`SmtpServer::start`], or `None` after printing why the test is skipped. Panics when
    /// `POSTBUD_REQUIRE_SERVICES=1`.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(server) => Some(server),
            Err(why) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!(
                    "{test}: SMTP server required (POSTBUD_REQUIRE_SERVICES=1) but unavailable: {why}"
                )
            }
            Err(why) => {
                crate::skipped(&format!("{test}: no SMTP server: {why}"));
                None
            }
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://postbud:...@127.0.0.1:<port>?tls=required`.
    pub fn url(&self) -> String {
        format!(
            "smtp://{USER}:{PASSWORD}@127.0.0.1:{}?tls=required",
            self.port
        )
    }

    /// The CA certificate that signed the server's (for `ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        let mail = self.dir.path().join("mail");
        (1..)
            .map_while(|n| {
                let raw = std::fs::read(mail.join(format!("{n}.eml"))).ok()?;
                let envelope = std::fs::read(mail.join(format!("{n}.json"))).ok()?;
                Some(Received {
                    raw,
                    envelope: serde_json::from_slice(&envelope).unwrap_or_default(),
                })
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
