//! Dovecot for tests: IMAP (plain and TLS) and LMTP on loopback ports, one mailbox user
//! ([`USER`]) whose mail is a Maildir in a temporary directory, a throw-away CA and server
//! certificate made with `openssl`. Started as `dovecot -F` (not a daemon) with its own
//! `base_dir`, so it touches nothing of the machine's own mail setup.
//!
//! LMTP delivers to [`USER`] under any domain and any `+detail` (`bounces+dlv-…@merchant.example`
//! lands in its INBOX) and refuses every other user with `550 5.1.1`: a mail server that
//! [`crate::postfix::Postfix`] hands both the bounce and the doomed message to.

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The mailbox user.
pub const USER: &str = "bounces";
/// Its password.
pub const PASSWORD: &str = "s3cret-imap";

/// A running Dovecot; stopped on drop.
#[derive(Debug)]
pub struct Dovecot {
    child: Child,
    imap_port: u16,
    imaps_port: u16,
    lmtp_port: u16,
    dir: tempfile::TempDir,
}

/// One stored message, as `doveadm fetch` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its IMAP UID.
    pub uid: u32,
    /// Its flags and keywords (`\Seen`, `$PostbudRead`).
    pub flags: Vec<String>,
}

pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

pub(crate) fn wait_for_port(port: u16, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            return Err(format!(
                "{what} did not start listening on 127.0.0.1:{port}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn find(candidates: &[&'static str]) -> Option<&'static str> {
    candidates.iter().copied().find(|p| Path::new(p).exists())
}

impl Dovecot {
    /// Starts Dovecot, or says why it cannot.
    pub fn start() -> Result<Self, String> {
        Self::start_with(true)
    }

    /// Starts Dovecot offering IDLE (RFC 2177) or not: a server without it makes a client poll.
    pub fn start_with(idle: bool) -> Result<Self, String> {
        let dovecot = find(&["/usr/sbin/dovecot", "/usr/bin/dovecot"])
            .ok_or("dovecot not found (apt-get install dovecot-imapd dovecot-lmtpd)")?;
        find(&["/usr/lib/dovecot/lmtp", "/usr/libexec/dovecot/lmtp"])
            .ok_or("Dovecot's LMTP server not found (apt-get install dovecot-lmtpd)")?;
        find(&["/usr/lib/dovecot/imap", "/usr/libexec/dovecot/imap"])
            .ok_or("Dovecot's IMAP server not found (apt-get install dovecot-imapd)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // Dovecot's own processes (login, auth, the mail user) look into it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        crate::smtp::certificates(dir.path())?;
        let d = dir.path().display().to_string();
        for sub in ["run", "state", "home"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(|e| e.to_string())?;
        }
        let me = std::fs::metadata(dir.path()).map_err(|e| e.to_string())?;
        // As root, the mail belongs to `nobody` (Dovecot does not store mail as root); as
        // another user, to that user, with Dovecot's helper processes run as it too.
        let (uid, gid, users) = if me.uid() == 0 {
            (65534, 65534, String::new())
        } else {
            let name = std::env::var("USER").unwrap_or_default();
            (
                me.uid(),
                me.gid(),
                format!("default_internal_user = {name}\ndefault_login_user = {name}\n"),
            )
        };
        let home = dir.path().join("home").join(USER);
        std::fs::create_dir(&home).map_err(|e| e.to_string())?;
        let status = Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(&home)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err(format!("chown {uid}:{gid} {}: failed", home.display()));
        }
        std::fs::write(
            dir.path().join("passwd"),
            format!(
                "{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{}::\n",
                home.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let (imap_port, imaps_port, lmtp_port) = (free_port()?, free_port()?, free_port()?);
        let capabilities = if idle {
            ""
        } else {
            "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ UIDPLUS UNSELECT NAMESPACE\n"
        };
        let config = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
{users}ssl = yes
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
{capabilities}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {d}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"#
        );
        std::fs::write(dir.path().join("dovecot.conf"), config).map_err(|e| e.to_string())?;
        let child = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(dir.path().join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start dovecot: {e}"))?;
        let mut dovecot = Self {
            child,
            imap_port,
            imaps_port,
            lmtp_port,
            dir,
        };
        for port in [imap_port, imaps_port, lmtp_port] {
            wait_for_port(port, &mut dovecot.child, "dovecot")
                .map_err(|e| format!("{e}: {}", dovecot.log()))?;
        }
        Ok(dovecot)
    }

    /// [`Dovecot::start`], or `None` after printing why the test is skipped; a failure under
    /// `POSTBUD_REQUIRE_SERVICES=1`.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        Self::start_or_skip_with(test, true)
    }

    /// [`Dovecot::start_with`], or `None` after printing why the test is skipped; a failure
    /// under `POSTBUD_REQUIRE_SERVICES=1`.
    pub fn start_or_skip_with(test: &str, idle: bool) -> Option<Self> {
        match Self::start_with(idle) {
            Ok(dovecot) => Some(dovecot),
            Err(why) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!(
                    "{test}: Dovecot required (POSTBUD_REQUIRE_SERVICES=1) but unavailable: {why}"
                )
            }
            Err(why) => {
                crate::skipped(&format!("{test}: no Dovecot IMAP server: {why}"));
                None
            }
        }
    }

    /// The plain IMAP port on 127.0.0.1.
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The IMAP-over-TLS port on 127.0.0.1.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// The LMTP port on 127.0.0.1.
    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// `imaps://bounces:…@127.0.0.1:<port>/INBOX`.
    pub fn imaps_url(&self) -> String {
        format!(
            "imaps://{USER}:{PASSWORD}@127.0.0.1:{}/INBOX",
            self.imaps_port
        )
    }

    /// `imap://bounces:…@127.0.0.1:<port>/INBOX` (no TLS).
    pub fn imap_url(&self) -> String {
        format!(
            "imap://{USER}:{PASSWORD}@127.0.0.1:{}/INBOX",
            self.imap_port
        )
    }

    /// The CA certificate that signed the server's (for `ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// Stores `raw` in the user's INBOX, as a delivery would (`doveadm save`).
    pub fn deliver(&self, raw: &[u8]) -> Result<(), String> {
        use std::io::Write as _;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(self.conf())
            .args(["save", "-u", USER, "-m", "INBOX"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("doveadm save: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(raw)
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "doveadm save: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The INBOX's messages and their flags, oldest first.
    pub fn messages(&self) -> Vec<Stored> {
        let output = Command::new("doveadm")
            .arg("-c")
            .arg(self.conf())
            .args(["fetch", "-u", USER, "uid flags", "mailbox", "INBOX", "all"])
            .output()
            .expect("doveadm fetch");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut stored = Vec::new();
        let mut uid = None;
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("uid: ") {
                uid = value.trim().parse().ok();
            } else if let (Some(value), Some(u)) = (line.strip_prefix("flags:"), uid.take()) {
                stored.push(Stored {
                    uid: u,
                    flags: value.split_whitespace().map(str::to_owned).collect(),
                });
            }
        }
        stored
    }

    /// The raw messages in the INBOX, oldest first.
    pub fn raw_messages(&self) -> Vec<Vec<u8>> {
        let maildir = self.dir.path().join("home").join(USER).join("Maildir");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
            .flatten()
            .flatten()
            .map(|e| {
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (modified, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| std::fs::read(path).ok())
            .collect()
    }

    /// Dovecot's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

/// Asks `child` to stop (SIGTERM: a master process then stops its own children), and kills it
/// when it has not after a while.
pub(crate) fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg(child.id().to_string())
        .stderr(Stdio::null())
        .status();
    for _ in 0..250 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}
