//! A webhook receiver that verifies Standard Webhooks signatures (HMAC-SHA256 over
//! `id.timestamp.body`, key = base64 of the secret after `whsec_`) and keeps each verified body
//! in `<dir>/<webhook-id>.json`: the demo's local platform.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct HookReceiver {
    addr: SocketAddr,
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Verifier {
    key: Vec<u8>,
    dir: PathBuf,
}

async fn receive(
    State(v): State<Arc<Verifier>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let valid = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| {
            let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else {
                return false;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(&v.key).expect("any key length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(&body);
            mac.verify_slice(&sig).is_ok()
        });
    if !valid || id.is_empty() || id.contains(['/', '.']) {
        return (StatusCode::UNAUTHORIZED, "signature does not verify");
    }
    match tokio::fs::write(v.dir.join(format!("{id}.json")), &body).await {
        Ok(()) => (StatusCode::OK, "verified"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "cannot store"),
    }
}

impl HookReceiver {
    /// Listens on 127.0.0.1 and verifies with `secret` (`whsec_...`).
    pub async fn start(dir: &Path, secret: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let verifier = Arc::new(Verifier {
            key,
            dir: dir.to_path_buf(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/hooks/invoices", post(receive))
            .with_state(verifier);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            dir: dir.to_path_buf(),
            task,
        })
    }

    /// The URL to post to.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/invoices", self.addr)
    }

    /// Where verified bodies land.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
