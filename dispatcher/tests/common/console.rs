//! A console to test: a sandbox-backed app with two console users (an operator and a viewer),
//! two invoices that need attention because their channel's directory is missing (the cause an
//! operator can fix; the tests run as root, for whom a read-only directory is writable), and the
//! router served on loopback.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use postbud::{App, Verdict};
use postbud_sandbox::Seed;

use super::Harness;

/// The operator's name and password.
pub const OPERATOR: (&str, &str) = ("kari", "kari's long passphrase");
/// The viewer's name and password.
pub const VIEWER: (&str, &str) = ("vera", "vera's other passphrase");

/// The app behind a console, before it is served.
pub struct Seeded {
    pub h: Harness,
    pub app: Arc<App>,
    pub listener: tokio::net::TcpListener,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The channel's directory, missing until a test creates it.
    pub outbox: PathBuf,
    /// Two invoices that need attention.
    pub ids: Vec<String>,
    /// The operator's password hash as configured.
    pub operator_hash: String,
}

/// The app with `[console]` (`extra_console` added to its table), `server.public_url` ending
/// in `path` (`/postbud`, or empty), and two invoices that need attention.
pub async fn seeded(extra_console: &str, path: &str) -> Seeded {
    let h = Harness::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let outbox = h.dir.path().join("outbox");
    let hash = |p: &str| postbud::password::hash(p).expect("hash");
    let operator_hash = hash(OPERATOR.1);
    let extra = format!(
        r#"
[server]
public_url = "http://{addr}{path}"

[console]
enabled = true
{extra_console}

[[console.users]]
name = "{}"
password_hash = "{}"
role = "operator"

[[console.users]]
name = "{}"
password_hash = "{}"
role = "viewer"

[channels.outbox]
kind = "folder"
path = "{}"
create = false

[[routes]]
deliver = ["outbox"]
"#,
        OPERATOR.0,
        operator_hash,
        VIEWER.0,
        hash(VIEWER.1),
        outbox.display()
    );
    let app = Arc::new(h.app(&extra).await);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = h.sandbox.seed(Seed::default());
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
        ids.push(id);
    }
    Seeded {
        h,
        app,
        listener,
        base: format!("http://{addr}"),
        outbox,
        ids,
        operator_hash,
    }
}

/// Serves the app's router (the console with it) on the listener.
pub fn serve(app: &Arc<App>, listener: tokio::net::TcpListener) {
    let router = postbud::server::router(Arc::clone(app));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
}
