//! The contract (`postbud_store::testkit`) on both backends, through the entry point a third
//! backend uses: SQLite on a file, PostgreSQL on a fresh database of the local server.

use std::sync::Arc;

use postbud_store::{Store, testkit};

/// A SQLite store in a temporary directory, opened twice: its migrations must be no-ops the
/// second time.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_contract() {
    testkit::check(|_case| async {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("postbud.db").display());
        drop(postbud_store::open(&url).await.expect("open"));
        let store = postbud_store::open(&url).await.expect("open again");
        (store, dir)
    })
    .await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    /// The server's maintenance database; `POSTBUD_TEST_POSTGRES` names another.
    fn admin() -> String {
        std::env::var("POSTBUD_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// A fresh database on the local server, dropped with the guard.
    struct Database {
        name: String,
    }

    impl Drop for Database {
        fn drop(&mut self) {
            let name = self.name.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&admin()).await {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(&drop).execute(&pool).await;
                    }
                });
            })
            .join();
        }
    }

    async fn open(case: &str) -> (Arc<dyn Store>, Database) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pool = sqlx::PgPool::connect(&admin()).await.expect("the server");
        let name = format!(
            "postbud_contract_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{case}: create database: {e}"));
        let (base, _) = admin()
            .rsplit_once('/')
            .map(|(b, d)| (b.to_owned(), d.to_owned()))
            .expect("a database in the URL");
        let url = format!("{base}/{name}");
        let database = Database { name };
        drop(postbud_store::open(&url).await.expect("open"));
        let store = postbud_store::open(&url).await.expect("open again");
        (store, database)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_keeps_the_contract() {
        if let Err(e) = sqlx::PgPool::connect(&admin()).await {
            if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("PostgreSQL required (POSTBUD_REQUIRE_SERVICES=1) but unreachable: {e}");
            }
            // Straight to stderr in one write, past the harness's capture: the test command counts skips.
            use std::io::Write as _;
            let _ = std::io::stderr().write_all(
                format!("SKIPPED postgres_keeps_the_contract: no PostgreSQL: {e}\n").as_bytes(),
            );
            return;
        }
        testkit::check(open).await;
    }
}
