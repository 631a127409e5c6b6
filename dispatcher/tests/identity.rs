//! Every key is the id Dintero returns: a spelling Dintero resolves to another transaction does
//! not become a second dispatch, and ids that are not Dintero's are refused before any write.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::Harness;
use postbud::{
    App, AppError, Verdict,
    dintero::{
        CaptureOutcome, CaptureRequest, DinteroApi, DinteroClient, DinteroError, VoidOutcome,
        model::Transaction,
    },
};
use postbud_sandbox::Seed;
use serde_json::Value;

/// Dintero as a server that is lenient about spelling: `alias` reads transaction `real`.
#[derive(Debug)]
struct Lenient {
    inner: DinteroClient,
    alias: String,
    real: String,
}

impl Lenient {
    fn resolve<'a>(&'a self, id: &'a str) -> &'a str {
        if id == self.alias { &self.real } else { id }
    }
}

#[async_trait::async_trait]
impl DinteroApi for Lenient {
    async fn transaction(&self, id: &str) -> Result<Transaction, DinteroError> {
        self.inner.transaction(self.resolve(id)).await
    }
    async fn capture(&self, id: &str, r: &CaptureRequest) -> Result<CaptureOutcome, DinteroError> {
        self.inner.capture(self.resolve(id), r).await
    }
    async fn void(&self, id: &str) -> Result<VoidOutcome, DinteroError> {
        self.inner.void(self.resolve(id)).await
    }
    async fn fetch_document(&self, url: &str) -> Result<Bytes, DinteroError> {
        self.inner.fetch_document(url).await
    }
    async fn create_invoice(&self, request: &Value) -> Result<Transaction, DinteroError> {
        self.inner.create_invoice(request).await
    }
}

#[tokio::test]
async fn a_spelling_dintero_resolves_to_another_id_is_dispatched_under_dintero_s_id() {
    let h = Harness::start().await;
    let settings = h.settings("");
    let real = h.sandbox.seed(Seed::default());
    let alias = format!("{}X", real);
    let gateway = Lenient {
        inner: DinteroClient::new(settings.require_dintero().expect("dintero").clone())
            .expect("gateway"),
        alias: alias.clone(),
        real: real.clone(),
    };
    let app = App::builder(&settings)
        .dintero(Arc::new(gateway))
        .open()
        .await
        .expect("app");
    let outcome = app.deliver_now(&alias).await.expect("deliver alias");
    assert_eq!(outcome.verdict(), Verdict::Skipped, "{outcome}");
    let reason = outcome.dispatch.and_then(|d| d.reason).unwrap_or_default();
    assert!(reason.contains(&real), "{reason}");
    let outcome = app.deliver_now(&real).await.expect("deliver real");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let again = app.deliver_now(&alias).await.expect("alias again");
    assert_eq!(again.verdict(), Verdict::Skipped, "{again}");
    assert_eq!(h.sandbox.captures(&real), 1);
    let jobs = app.jobs(&real).await.expect("jobs");
    assert_eq!(jobs.iter().filter(|j| j.channel.is_some()).count(), 1);
    assert!(
        app.jobs(&alias)
            .await
            .expect("jobs")
            .iter()
            .all(|j| j.channel.is_none())
    );
}

#[tokio::test]
async fn ids_that_are_not_dintero_s_are_refused_before_any_write() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    for raw in [
        format!("x/../{id}"),
        format!("{id}/"),
        "P12345678.abc".into(),
        String::new(),
    ] {
        let err = app.submit(&raw).await.expect_err(&raw);
        assert!(matches!(err, AppError::InvalidId(_)), "{err}");
        let err = app.deliver_now(&raw).await.expect_err(&raw);
        assert!(matches!(err, AppError::InvalidId(_)), "{err}");
        let err = app
            .void(&raw, std::time::Duration::from_secs(10))
            .await
            .expect_err(&raw);
        assert!(matches!(err, AppError::InvalidId(_)), "{err}");
    }
    assert!(
        app.store()
            .dispatches(&postbud::store::DispatchQuery::latest(10))
            .await
            .expect("dispatches")
            .is_empty()
    );
    assert_eq!(h.sandbox.captures(&id), 0);
}
