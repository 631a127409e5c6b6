//! The connections behind [`super::SqliteStore`].
//!
//! SQLite takes one writer at a time, so writes go to one thread that owns the write
//! connection and runs each closure as a whole `BEGIN IMMEDIATE … COMMIT` without leaving the
//! thread. Writes that queue up while one commits are committed together, each after the first
//! inside its own savepoint, so a busy engine pays one commit for many writes and a failing write
//! rolls back alone. A checkpointer thread copies the WAL into the database file beside the
//! writer. Reads run on tokio's blocking pool against their own connections (WAL lets them
//! proceed while the writer works).

use std::{
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use rusqlite::{Connection, config::DbConfig};
use tokio::sync::oneshot;

use crate::{StoreError, StoreErrorKind};

/// Writes committed together at most; bounds the latency a batch adds to its first write.
const MAX_BATCH: usize = 64;
/// How long the checkpointer lets writes gather before it copies them into the database file.
const CHECKPOINT_AFTER: Duration = Duration::from_millis(10);
/// Reader connections kept open between reads.
const IDLE_READERS: usize = 4;

/// Sends a closure's result once its transaction has committed, or the commit's error.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs on the writer thread (given the connection, or the error that kept the
/// transaction from starting), says whether it succeeded, and hands back its reply.
type WriteOp = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> (bool, Reply) + Send>;

/// One SQLite file: a writer thread and a pool of readers.
#[derive(Debug)]
pub(super) struct Db {
    writes: mpsc::Sender<WriteOp>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    /// The file opened: (device, inode) on unix.
    identity: Option<(u64, u64)>,
}

/// (device, inode) of the file at `path`, where the platform has them.
fn identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::new(classify(&e), e.to_string()).with_source(e)
    }
}

/// What a SQLite error says happened: the edge where rusqlite's errors are classified.
fn classify(e: &rusqlite::Error) -> StoreErrorKind {
    use rusqlite::{Error, ErrorCode};
    match e {
        Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreErrorKind::Busy,
            ErrorCode::ConstraintViolation => StoreErrorKind::Conflict,
            ErrorCode::DiskFull => StoreErrorKind::DiskFull,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreErrorKind::Corrupt,
            ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::AuthorizationForStatementDenied => StoreErrorKind::Denied,
            ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::OutOfMemory => {
                StoreErrorKind::Unavailable
            }
            ErrorCode::TooBig | ErrorCode::TypeMismatch | ErrorCode::ParameterOutOfRange => {
                StoreErrorKind::Invalid
            }
            _ => StoreErrorKind::Other,
        },
        Error::FromSqlConversionFailure(..)
        | Error::IntegralValueOutOfRange(..)
        | Error::InvalidColumnType(..)
        | Error::Utf8Error(..) => StoreErrorKind::Corrupt,
        Error::InvalidParameterName(_)
        | Error::InvalidParameterCount(..)
        | Error::InvalidColumnIndex(_)
        | Error::InvalidColumnName(_)
        | Error::SqlInputError { .. }
        | Error::ToSqlConversionFailure(_)
        | Error::ExecuteReturnedResults
        | Error::MultipleStatement => StoreErrorKind::Invalid,
        Error::InvalidPath(_) => StoreErrorKind::Misconfigured,
        _ => StoreErrorKind::Other,
    }
}

/// Opens a connection with the settings every connection needs.
/// The database holds every PDF, the customers' data and the link-signing key: its file is
/// readable by its owner only (`0600`), created so and tightened if it exists. SQLite gives the
/// `-wal` and `-shm` files the database file's permissions.
fn private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let failed = |e: std::io::Error| {
            StoreError::new(
                StoreErrorKind::Denied,
                format!("make `{}` private (0600): {e}", path.display()),
            )
            .with_source(e)
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(failed)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                    Ok(()) => {}
                    // Another account's file (an operator reading a shared store): its owner
                    // decides; this process only reads and writes it.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        tracing::warn!(file = %file.display(), "the store file belongs to another account; its permissions are left as they are");
                    }
                    Err(e) => return Err(failed(e)),
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| {
        StoreError::new(classify(&e), format!("open `{}`: {e}", path.display())).with_source(e)
    })?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // NORMAL is durable across process crashes in WAL mode; a power loss may drop the last
    // commits, which the engine tolerates because it re-reads Dintero's events before any
    // capture.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // What is deleted (pruned PDFs and personal data) is overwritten, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Without the planner stability guarantee SQLite recompiles the claim on every run, because
    // the value bound to its time bound might change the plan (measured: a tenth of the
    // writer's time spent re-preparing it).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Every statement the store runs stays compiled.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Db {
    /// Opens (creating if needed) the file and starts the writer thread.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        private(path)?;
        let conn = connect(path)?;
        let copier = connect(path)?;
        let (writes, queue) = mpsc::channel();
        let (written, gathered) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("postbud-sqlite-checkpointer".into())
            .spawn(move || checkpointer(copier, gathered))
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("start the SQLite checkpointer: {e}"),
                )
                .with_source(e)
            })?;
        std::thread::Builder::new()
            .name("postbud-sqlite-writer".into())
            .spawn(move || writer(conn, queue, written))
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("start the SQLite writer: {e}"),
                )
                .with_source(e)
            })?;
        Ok(Self {
            writes,
            readers: Arc::default(),
            path: path.to_owned(),
            identity: identity(path),
        })
    }

    /// Runs `work` in a write transaction; its result is returned once the transaction has
    /// committed. An `Err` rolls back what `work` did and nothing else.
    /// Refuses to go on when the file opened is no longer the file at its path (deleted, or
    /// replaced by a restore): what the open connections write would be lost with the unlinked
    /// file, and a new connection would silently start an empty outbox.
    fn still_there(&self) -> Result<(), StoreError> {
        let Some(opened) = self.identity else {
            return Ok(());
        };
        match identity(&self.path) {
            Some(now) if now == opened => Ok(()),
            Some(_) => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "the store file `{}` was replaced while open; restart to use the file now there",
                    self.path.display()
                ),
            )),
            None => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "the store file `{}` was removed while open; put it back (or restart to start afresh)",
                    self.path.display()
                ),
            )),
        }
    }

    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.still_there()?;
        let (tx, rx) = oneshot::channel();
        let op: WriteOp = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => work(conn),
                Err(e) => Err(e.clone()),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let _ = tx.send(committed.and(result));
            });
            (ok, reply)
        });
        let abandoned = || {
            StoreError::new(
                StoreErrorKind::Other,
                "the SQLite write was abandoned: it panicked or the writer thread stopped",
            )
        };
        self.writes.send(op).map_err(|_| abandoned())?;
        rx.await.map_err(|_| abandoned())?
    }

    /// Copies the WAL into the database and truncates it to nothing, so no earlier version of
    /// a page stays on disk there; waits for readers (busy timeout) and says so if they held on.
    pub(super) async fn checkpoint(&self) -> Result<(), StoreError> {
        self.still_there()?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = connect(&path)?;
            let (busy, _, _): (i64, i64, i64) =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            if busy != 0 {
                return Err(StoreError::new(
                    StoreErrorKind::Busy,
                    "the WAL could not be truncated: a reader held on past the busy timeout; the next pass tries again",
                ));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("SQLite checkpoint task: {e}")).with_source(e))?
    }

    /// Runs `work` on a reader connection on the blocking pool.
    pub(super) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.still_there()?;
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let idle = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => connect(&path)?,
            };
            let result = work(&conn);
            let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| {
            StoreError::new(StoreErrorKind::Other, format!("SQLite read task: {e}")).with_source(e)
        })?
    }
}

/// The writer thread: takes what is queued, commits it together, replies, and tells the
/// checkpointer; ends when every sender is gone (and with it the checkpointer).
fn writer(conn: Connection, queue: mpsc::Receiver<WriteOp>, written: mpsc::SyncSender<()>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&conn, batch);
        // Full means a checkpoint is already due.
        let _ = written.try_send(());
    }
}

/// The checkpointer thread: some time after each burst of commits, copies what the WAL holds
/// into the database file from a connection of its own, beside the writer and without stopping
/// it (a passive checkpoint). The writer still checkpoints itself when the WAL reaches SQLite's
/// 1,000 pages, which is what lets the WAL start over under steady writes; it then finds almost
/// everything copied, so its pause (the part of the 99th percentile it made) is short. Idle
/// while nothing is written.
fn checkpointer(conn: Connection, written: mpsc::Receiver<()>) {
    while written.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_AFTER);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "a passive checkpoint failed; the writer's own goes on");
        }
    }
}

/// Runs one statement that takes no parameters, compiled once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `batch` in as few transactions as it can: one, unless SQLite itself abandons a
/// transaction part way (then what ran in it is answered with that error and the rest goes on
/// in a new one). Each write after the first of a transaction runs in a savepoint, so a failing
/// one rolls back alone; the first needs none (SQLite copies every page a savepoint changes
/// aside first): when it fails, the transaction, which holds nothing else, is rolled back and the
/// rest goes on in a new one.
fn commit_batch(conn: &Connection, batch: Vec<WriteOp>) {
    let mut pending = batch.into_iter().peekable();
    while pending.peek().is_some() {
        if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
            let e = StoreError::from(e);
            for op in pending.by_ref() {
                op(Err(&e)).1(Err(e.clone()));
            }
            return;
        }
        let mut replies = Vec::new();
        let mut abandoned = None;
        let mut first_failed = false;
        for op in pending.by_ref() {
            let first = replies.is_empty();
            if !first && let Err(e) = run(conn, "SAVEPOINT op") {
                let e = StoreError::from(e);
                replies.push(op(Err(&e)).1);
                abandoned = Some(e);
                break;
            }
            // A panicking write must not take the writer thread, and every later write, with it.
            let (ok, reply) = std::panic::catch_unwind(AssertUnwindSafe(|| op(Ok(conn))))
                .unwrap_or_else(|_| (false, Box::new(|_| {})));
            replies.push(reply);
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (an I/O error, a full disk): what
                // ran in it is gone.
                abandoned = Some(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "SQLite rolled back the transaction after an error",
                ));
                break;
            }
            if first {
                first_failed = !ok;
                if first_failed {
                    break;
                }
                continue;
            }
            let end = match ok {
                true => run(conn, "RELEASE op"),
                false => run(conn, "ROLLBACK TO op").and_then(|()| run(conn, "RELEASE op")),
            };
            if let Err(e) = end {
                abandoned = Some(e.into());
                break;
            }
        }
        let committed = match (abandoned, first_failed) {
            (Some(e), _) => Err(e),
            // The failed write answers with its own error: Ok lets it through.
            (None, true) => Ok(()),
            (None, false) => run(conn, "COMMIT").map_err(StoreError::from),
        };
        if (committed.is_err() || first_failed) && !conn.is_autocommit() {
            let _ = run(conn, "ROLLBACK");
        }
        for reply in replies {
            reply(committed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_errors_say_what_happened_and_whether_to_retry() {
        use rusqlite::ffi;
        let failure = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        for (error, kind) in [
            (failure(ffi::SQLITE_BUSY), StoreErrorKind::Busy),
            (
                failure(ffi::SQLITE_CONSTRAINT_UNIQUE),
                StoreErrorKind::Conflict,
            ),
            (failure(ffi::SQLITE_FULL), StoreErrorKind::DiskFull),
            (failure(ffi::SQLITE_CORRUPT), StoreErrorKind::Corrupt),
            (failure(ffi::SQLITE_NOTADB), StoreErrorKind::Corrupt),
            (failure(ffi::SQLITE_READONLY), StoreErrorKind::Denied),
            (failure(ffi::SQLITE_IOERR), StoreErrorKind::Unavailable),
            (
                rusqlite::Error::InvalidParameterName(":nope".into()),
                StoreErrorKind::Invalid,
            ),
        ] {
            let e = StoreError::from(error);
            assert_eq!(e.kind(), kind, "{e}");
            assert!(
                std::error::Error::source(&e).is_some(),
                "{e}: the cause is kept"
            );
        }
        assert!(StoreError::from(failure(ffi::SQLITE_BUSY)).is_temporary());
        assert!(!StoreError::from(failure(ffi::SQLITE_CONSTRAINT_UNIQUE)).is_temporary());
    }

    /// A constraint the database enforces ends as a conflict, not as "try again".
    #[test]
    fn a_constraint_violation_is_permanent() {
        let conn = Connection::open_in_memory().expect("memory");
        conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY); INSERT INTO t VALUES ('a');")
            .expect("table");
        let e = StoreError::from(
            conn.execute("INSERT INTO t VALUES ('a')", [])
                .expect_err("a duplicate"),
        );
        assert_eq!(e.kind(), StoreErrorKind::Conflict);
        assert!(!e.is_temporary());
    }

    /// Writes queued behind a slow one are committed together; each failing one, first of its
    /// transaction or not, is rolled back alone and answers with its own error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_in_a_batch_rolls_back_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(Db::open(&dir.path().join("batch.db")).expect("open"));
        db.write(|conn| Ok(conn.execute_batch("CREATE TABLE t (n INTEGER)")?))
            .await
            .expect("create");
        // Hold the writer so the next writes queue up and form one batch; this one, first of
        // its own transaction, fails after writing.
        let slow = tokio::spawn({
            let db = Arc::clone(&db);
            async move {
                db.write(|conn| -> Result<(), StoreError> {
                    conn.execute("INSERT INTO t (n) VALUES (100)", [])?;
                    std::thread::sleep(Duration::from_millis(200));
                    Err(StoreError::new(StoreErrorKind::Other, "slow and failing"))
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Queued in order (each sent before the next is spawned), so the batch after the slow
        // write starts with a failing one (0) and has failing ones after the first.
        let mut writes = Vec::new();
        for n in 0..10i64 {
            let db = Arc::clone(&db);
            writes.push(tokio::spawn(async move {
                db.write(move |conn| {
                    conn.execute("INSERT INTO t (n) VALUES (?)", [n])?;
                    if n % 2 == 0 {
                        return Err(StoreError::new(StoreErrorKind::Other, format!("even {n}")));
                    }
                    Ok(n)
                })
                .await
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let failed = slow.await.expect("join");
        assert!(
            matches!(&failed, Err(e) if e.message() == "slow and failing"),
            "{failed:?}"
        );
        for (n, write) in writes.into_iter().enumerate() {
            let result = write.await.expect("join");
            match n % 2 {
                1 => assert_eq!(result.expect("odd write"), n as i64),
                _ => assert!(
                    matches!(&result, Err(e) if e.message() == format!("even {n}")),
                    "{result:?}"
                ),
            }
        }
        let kept: Vec<i64> = db
            .read(|conn| {
                let mut statement = conn.prepare("SELECT n FROM t ORDER BY n")?;
                let rows = statement.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .expect("read");
        assert_eq!(kept, vec![1, 3, 5, 7, 9]);
    }

    /// The checkpointer copies the WAL into the database file soon after a few writes, far
    /// fewer than the writer's own checkpoint waits for (read from the WAL index: frames
    /// written, frames copied).
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_soon_after_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("copied.db");
        let db = Db::open(&path).expect("open");
        db.write(|conn| Ok(conn.execute_batch("CREATE TABLE t (b BLOB)")?))
            .await
            .expect("create");
        for _ in 0..20 {
            db.write(|conn| Ok(conn.execute("INSERT INTO t (b) VALUES (zeroblob(4000))", [])?))
                .await
                .expect("insert");
        }
        let index = dir.path().join("copied.db-shm");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let shm = std::fs::read(&index).expect("the WAL index");
            let word = |at: usize| u32::from_ne_bytes(shm[at..at + 4].try_into().expect("4 bytes"));
            // The index header's mxFrame, then the checkpoint info's nBackfill.
            let (frames, copied) = (word(16), word(96));
            if frames > 20 && copied == frames {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{frames} WAL frames, {copied} copied"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("panic.db")).expect("open");
        let panicked = db
            .write(|conn| -> Result<(), StoreError> {
                conn.execute_batch("CREATE TABLE lost (n INTEGER)")?;
                panic!("a bug in a write")
            })
            .await;
        assert!(
            matches!(&panicked, Err(e) if e.message().contains("abandoned")),
            "{panicked:?}"
        );
        db.write(|conn| Ok(conn.execute_batch("CREATE TABLE kept (n INTEGER)")?))
            .await
            .expect("the writer still works");
        let tables: Vec<String> = db
            .read(|conn| {
                let mut statement = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
                let rows = statement.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .expect("read");
        assert_eq!(
            tables,
            vec!["kept".to_owned()],
            "the panicked write was rolled back"
        );
    }
}
