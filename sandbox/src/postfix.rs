//! Postfix for tests: a real MTA on a loopback port that accepts a message, fails to deliver it,
//! and sends the sender the delivery status notification (RFC 3464) Postfix writes.
//!
//! Configured in a temporary directory (`postfix -c DIR start-fg`, its own queue and data
//! directories, no chroot, listening on 127.0.0.1 only) and routed, by a transport map, to a
//! [`Dovecot`]'s LMTP for three test domains:
//! - [`GONE`]: LMTP refuses every user there (`550 5.1.1 … User doesn't exist`), after Postfix
//!   accepted the message: Postfix bounces it;
//! - [`SLOW`]: a closed port: Postfix keeps retrying and, after a second, sends a delay warning;
//! - [`MERCHANT`]: delivered to the Dovecot user (`bounces+<anything>@merchant.example` lands in
//!   its INBOX): where the bounces go.
//!
//! Every other domain is refused (`error:`): nothing leaves the machine. Needs root (Postfix
//! switches to its `postfix` user).

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    process::{Child, Command, Stdio},
};

use crate::imap::{Dovecot, free_port, terminate, wait_for_port};

/// Mail to this domain is accepted, then bounced by the receiving server (`550 5.1.1`).
pub const GONE: &str = "gone.example";
/// Mail to this domain is accepted and stays queued: a delay warning follows.
pub const SLOW: &str = "slow.example";
/// The merchant's domain: its mail lands in the Dovecot user's INBOX.
pub const MERCHANT: &str = "merchant.example";

/// A running Postfix; stopped on drop.
#[derive(Debug)]
pub struct Postfix {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Postfix {
    /// Starts Postfix delivering into `dovecot`, or says why it cannot.
    pub fn start(dovecot: &Dovecot) -> Result<Self, String> {
        let postfix = ["/usr/sbin/postfix", "/usr/bin/postfix"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("postfix not found (apt-get install postfix)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if std::fs::metadata(dir.path())
            .map_err(|e| e.to_string())?
            .uid()
            != 0
        {
            return Err("postfix needs root (run the tests as root)".into());
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let d = dir.path().display().to_string();
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(|e| e.to_string())?;
        }
        let status = Command::new("chown")
            .args(["postfix"])
            .arg(dir.path().join("data"))
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("chown postfix: failed (is the postfix user there?)".into());
        }
        let port = free_port()?;
        let lmtp = format!("lmtp:inet:127.0.0.1:{}", dovecot.lmtp_port());
        let closed = free_port()?;
        std::fs::write(
            dir.path().join("conf/transport"),
            format!("{GONE} {lmtp}\n{MERCHANT} {lmtp}\n{SLOW} lmtp:inet:127.0.0.1:{closed}\n"),
        )
        .map_err(|e| e.to_string())?;
        let main = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.postbud.test
mydomain = postbud.test
myorigin = postbud.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relay_domains = {GONE}, {SLOW}, {MERCHANT}
transport_maps = texthash:{d}/conf/transport
default_transport = error:5.4.4 the test MTA delivers nowhere else
smtp_dns_support_level = disabled
lmtp_host_lookup = native
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
"
        );
        std::fs::write(dir.path().join("conf/main.cf"), main).map_err(|e| e.to_string())?;
        // No chroot: the queue lives in a temporary directory.
        let master = format!(
            "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
        );
        std::fs::write(dir.path().join("conf/master.cf"), master).map_err(|e| e.to_string())?;
        let child = Command::new(postfix)
            .arg("-c")
            .arg(dir.path().join("conf"))
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start postfix: {e}"))?;
        let mut postfix = Self { child, port, dir };
        wait_for_port(port, &mut postfix.child, "postfix")
            .map_err(|e| format!("{e}: {}", postfix.log()))?;
        Ok(postfix)
    }

    /// [`Postfix::start`], or `None` after printing why the test is skipped; a failure under
    /// `POSTBUD_REQUIRE_SERVICES=1`.
    pub fn start_or_skip(test: &str, dovecot: &Dovecot) -> Option<Self> {
        match Self::start(dovecot) {
            Ok(postfix) => Some(postfix),
            Err(why) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!(
                    "{test}: Postfix required (POSTBUD_REQUIRE_SERVICES=1) but unavailable: {why}"
                )
            }
            Err(why) => {
                crate::skipped(&format!("{test}: no Postfix MTA: {why}"));
                None
            }
        }
    }

    /// The SMTP port on 127.0.0.1 (no TLS, no AUTH: relaying for loopback clients).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Postfix's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // `postfix stop` reaches the master process through its pid file, whichever process
        // `start-fg` left in front of it.
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("conf"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        terminate(&mut self.child);
    }
}
