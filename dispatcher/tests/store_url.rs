//! The store URL's secrets stay out of the logs: the PostgreSQL driver logs a parameter it does
//! not know with its value, and libpq's `sslpassword` is one.

use std::sync::{Arc, Mutex};

/// Everything logged (at any level) while the guard lives, as text.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("sink").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("sink")).into_owned()
    }
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_secret_parameter_of_the_store_url_never_reaches_the_logs_or_the_error() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This (current-thread) runtime's thread: the driver parses the URL on it.
    let _guard = tracing::subscriber::set_default(subscriber);
    let url = format!(
        "postgres://postbud@127.0.0.1:{}/postbud?sslmode=disable&sslpassword=K3Y-PASS-9QZ&application_name=postbud",
        closed_port()
    );
    let error = postbud::probe_store(&url)
        .await
        .expect_err("nobody listens there")
        .to_string();
    let logged = sink.text();
    assert!(!logged.contains("K3Y-PASS-9QZ"), "{logged}");
    assert!(!error.contains("K3Y-PASS-9QZ"), "{error}");
    // What was left out is said, by name.
    assert!(logged.contains("sslpassword"), "{logged}");
}

#[tokio::test]
async fn the_store_url_without_the_left_out_parameter_still_connects() {
    let admin = std::env::var("POSTBUD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    if let Err(e) = postbud::probe_store(&admin).await {
        if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("PostgreSQL required (POSTBUD_REQUIRE_SERVICES=1) but unreachable: {e}");
        }
        postbud_sandbox::skipped(&format!(
            "the_store_url_without_the_left_out_parameter_still_connects: no PostgreSQL at {admin}: {e}"
        ));
        return;
    }
    let separator = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{separator}sslpassword=K3Y-PASS-9QZ&application_name=postbud-test");
    let answer = postbud::probe_store(&url).await.expect("connects");
    assert!(answer.contains("reachable"), "{answer}");
}
