//! What every test of the binary needs: a sandbox, a configuration file beside a SQLite store,
//! the binary itself, and `postbud serve` on a free port.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use postbud_sandbox::Sandbox;

pub struct Setup {
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub async fn setup(extra: &str) -> Setup {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("postbud.toml");
    let routes = if extra.contains("[[routes]]") {
        ""
    } else {
        "[[routes]]\ndeliver = [\"archive\"]\n"
    };
    std::fs::write(
        &config,
        format!(
            "{dintero}\n\
             [store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n[engine]\nbackoff_base = \"50ms\"\nbackoff_max = \"300ms\"\n\n\
             [channels.archive]\nkind = \"folder\"\npath = \"{dir}/invoices\"\n\n{extra}\n{routes}",
            dintero = sandbox.dintero_toml(),
            dir = dir.path().display()
        ),
    )
    .expect("config");
    Setup {
        sandbox,
        dir,
        config,
    }
}

pub fn postbud() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postbud"));
    command
        .env_remove("POSTBUD_CONFIG")
        .env_remove("POSTBUD_LOG");
    command
}

/// Runs the binary without blocking the runtime that serves the sandbox.
pub async fn run(config: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = postbud();
    command.arg("--config").arg(config).args(args);
    for (k, v) in envs {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("joined")
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A loopback port nobody listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `postbud serve` with a configuration, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub base: String,
}

impl Serve {
    /// Starts it and waits until `/healthz` answers 200. The configuration must listen on `port`.
    pub async fn start(config: &Path, port: u16) -> Self {
        let child = postbud()
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let serve = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        // Generous: on a loaded 2-core machine `serve` once took longer than 20 s to answer.
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{}/healthz", serve.base))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
            != 200
        {
            assert!(Instant::now() < deadline, "serve never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database on the local PostgreSQL server: (URL, name). `None` (the test skips, saying
/// so) when there is no server, unless `POSTBUD_REQUIRE_SERVICES=1`.
pub async fn postgres_database(test: &str) -> Option<(String, String)> {
    let admin = std::env::var("POSTBUD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pool = match sqlx::PgPool::connect(&admin).await {
        Ok(pool) => pool,
        Err(e) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{test}: PostgreSQL required but unreachable: {e}")
        }
        Err(e) => {
            postbud_sandbox::skipped(&format!("{test}: no PostgreSQL at {admin}: {e}"));
            return None;
        }
    };
    let name = format!("postbud_cli_{}_{}", std::process::id(), free_port());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("database in URL");
    Some((format!("{base}/{name}"), name))
}

/// Drops a database [`postgres_database`] made.
pub async fn drop_postgres_database(name: &str) {
    let admin = std::env::var("POSTBUD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
    }
}
