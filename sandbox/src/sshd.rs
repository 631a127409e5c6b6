//! OpenSSH's `sshd` for tests, on a loopback port, with a temporary host key and an authorized
//! client key, serving SFTP (`internal-sftp`, or `internal-sftp -R` for a read-only target).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running sshd; stopped on drop.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn keygen(dir: &Path, name: &str) -> Result<(), String> {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(dir.join(name))
        .output()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Sshd {
    /// Starts sshd, or says why it cannot.
    pub fn start(read_only: bool) -> Result<Self, String> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("sshd not found (apt-get install openssh-server)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        keygen(dir.path(), "host_key")?;
        keygen(dir.path(), "client_key")?;
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::create_dir(dir.path().join("inbound")).map_err(|e| e.to_string())?;
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into());
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PidFile {dir}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
             Subsystem sftp internal-sftp{ro}\nLogLevel ERROR\n",
            dir = dir.path().display(),
            ro = if read_only { " -R" } else { "" }
        );
        std::fs::write(dir.path().join("sshd_config"), config).map_err(|e| e.to_string())?;
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start sshd: {e}"))?;
        let mut sshd = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || sshd.child.try_wait().ok().flatten().is_some() {
                return Err(
                    "sshd did not start listening (run as root, or check /run/sshd)".into(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sshd)
    }

    /// [`Sshd::start`], or `None` after printing why the test is skipped; a failure under
    /// `POSTBUD_REQUIRE_SERVICES=1`.
    pub fn start_or_skip(test: &str, read_only: bool) -> Option<Self> {
        match Self::start(read_only) {
            Ok(sshd) => Some(sshd),
            Err(why) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("{test}: sshd required (POSTBUD_REQUIRE_SERVICES=1) but unavailable: {why}")
            }
            Err(why) => {
                crate::skipped(&format!("{test}: no sshd: {why}"));
                None
            }
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as (the one running the tests).
    pub fn user(&self) -> String {
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into())
    }

    /// The authorized client key (OpenSSH format).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// An empty directory for uploads.
    pub fn inbound(&self) -> PathBuf {
        self.dir.path().join("inbound")
    }

    /// A `known_hosts` file naming this server's key.
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap_or_default();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let _ = std::fs::write(
            &path,
            format!("[127.0.0.1]:{} {}\n", self.port, key.join(" ")),
        );
        path
    }

    /// The host key's `SHA256:...` fingerprint.
    pub fn fingerprint(&self) -> String {
        let output = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_key.pub"))
            .output()
            .expect("ssh-keygen -lf");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
