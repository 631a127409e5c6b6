//! The schema, written once: the migrations both stores apply in order, with the dialects'
//! own type names filled in. Each store records how many it applied (SQLite's `user_version`,
//! PostgreSQL's `postbud_schema`), so existing databases open unchanged.

/// Where SQLite and PostgreSQL differ in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

const TABLES: &str = r#"
CREATE TABLE dispatches (
    transaction_id     TEXT PRIMARY KEY,
    stage              TEXT NOT NULL,
    reason             TEXT,
    capture_reference  TEXT,
    capture_request_id TEXT,
    captured_at        {int},
    invoice_number     TEXT,
    route              {int},
    invoice            TEXT,
    created_at         {int} NOT NULL,
    updated_at         {int} NOT NULL
);
CREATE TABLE documents (
    transaction_id TEXT PRIMARY KEY,
    file_name      TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    bytes          {blob} NOT NULL,
    fetched_at     {int} NOT NULL
);
CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    kind           TEXT NOT NULL,
    channel        TEXT,
    role           TEXT,
    state          TEXT NOT NULL,
    attempts       {int} NOT NULL DEFAULT 0,
    next_at        {int} NOT NULL,
    lease_owner    TEXT,
    lease_until    {int},
    fence          {int} NOT NULL DEFAULT 0,
    last_error     TEXT,
    receipt        TEXT,
    created_at     {int} NOT NULL,
    updated_at     {int} NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, next_at);
CREATE INDEX jobs_transaction ON jobs (transaction_id);
CREATE TABLE history (
    id             {serial},
    transaction_id TEXT NOT NULL,
    job_id         TEXT,
    at             {int} NOT NULL,
    event          TEXT NOT NULL,
    detail         TEXT NOT NULL
);
CREATE INDEX history_transaction ON history (transaction_id, id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#;

/// The migrations for `dialect`, in order.
pub(super) fn migrations(dialect: Dialect) -> Vec<String> {
    let (int, blob, serial) = match dialect {
        Dialect::Sqlite => ("INTEGER", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        Dialect::Postgres => ("BIGINT", "BYTEA", "BIGSERIAL PRIMARY KEY"),
    };
    let typed = |sql: &str| {
        sql.replace("{serial}", serial)
            .replace("{int}", int)
            .replace("{blob}", blob)
    };
    let lease_index = match dialect {
        Dialect::Sqlite => "\nCREATE INDEX jobs_lease ON jobs (state, lease_until);\n",
        // Every state change leaves a dead index entry behind until vacuum; a bitmap scan of
        // the whole-table indexes visited all of them on every claim (3 ms with 15,000 jobs
        // done). Partial indexes walked in order stop after the first live rows and mark the
        // dead ones they pass, so a claim stays cheap however much history the table holds.
        Dialect::Postgres => {
            "\nCREATE INDEX jobs_queued ON jobs (next_at) WHERE state = 'queued';\nCREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';\nDROP INDEX jobs_due;\nDROP INDEX jobs_lease;\n"
        }
    };
    let first = match dialect {
        Dialect::Sqlite => typed(TABLES),
        // PostgreSQL's first schema had the lease index from the start.
        Dialect::Postgres => typed(TABLES).replace(
            "CREATE INDEX jobs_due ON jobs (state, next_at);\n",
            "CREATE INDEX jobs_due ON jobs (state, next_at);\nCREATE INDEX jobs_lease ON jobs (state, lease_until);\n",
        ),
    };
    vec![
        first,
        lease_index.to_owned(),
        typed(
            "\nALTER TABLE dispatches ADD COLUMN origin TEXT;\nALTER TABLE dispatches ADD COLUMN void_request_id TEXT;\nCREATE TABLE turns (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until {int} NOT NULL);\n",
        ),
        typed(
            "\nALTER TABLE dispatches ADD COLUMN pruned_at {int};\nALTER TABLE dispatches ADD COLUMN pdf_sha256 TEXT;\n",
        ),
        "\nALTER TABLE dispatches ADD COLUMN route_snapshot TEXT;\n".to_owned(),
        tallies(dialect),
        history_without_autoincrement(dialect),
        typed(EVIDENCE),
        console(dialect),
        typed(OUTCOME_UNKNOWN),
        typed(RESENDS),
    ]
}

/// Schema 10: a delivery an attempt of which may have reached its sink without Postbud knowing
/// (`Finish::Unknown`, a retry the channel marked so, a lease that lapsed): the sink's report of
/// its reference settles it, where evidence about any other waiting or dead delivery changes
/// nothing.
const OUTCOME_UNKNOWN: &str = "
ALTER TABLE jobs ADD COLUMN outcome_unknown {int} NOT NULL DEFAULT 0;
";

/// Schema 11: how often an operator sent a delivery again after it failed for good, so that a
/// sink's idempotency key the failed send used is not used again.
const RESENDS: &str = "
ALTER TABLE jobs ADD COLUMN resends {int} NOT NULL DEFAULT 0;
";

/// The operator console (schema 9): what its search looks invoices up by, kept as columns with
/// indexes of their own (the merchant's reference and the customer's email, lowercased, copied
/// from the invoice snapshot when it is routed, and from the snapshots already kept here);
/// indexes for listing by job state and for the invoices retried; and the audit log of what
/// operators did.
///
/// The columns, not expression indexes on the JSON: the statements stay shared by both
/// dialects, and a prune can clear the email (personal data) while keeping the reference.
fn console(dialect: Dialect) -> String {
    // ASCII lowercase on both (SQLite's `lower` is ASCII only; PostgreSQL's follows the
    // locale): the engine writes `str::to_ascii_lowercase`, the search looks up the same.
    let (reference, email, serial) = match dialect {
        Dialect::Sqlite => (
            "json_extract(invoice, '$.merchant_reference')",
            "lower(trim(json_extract(invoice, '$.customer.email')))",
            "INTEGER PRIMARY KEY",
        ),
        Dialect::Postgres => (
            // jsonb refuses `\u0000`, which serde_json writes for a NUL: one such snapshot
            // would stop the migration (and `serve`), so the escape is dropped before the cast.
            "CAST(replace(invoice, '\\u0000', '') AS jsonb) ->> 'merchant_reference'",
            "translate(trim(CAST(replace(invoice, '\\u0000', '') AS jsonb) -> 'customer' ->> 'email'), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')",
            "BIGSERIAL PRIMARY KEY",
        ),
    };
    // SQLite reads a state's jobs through `jobs_due (state, next_at)`; PostgreSQL dropped that
    // for partial indexes of the queued, running, failed and dead ones, and gets one for the
    // cancelled here (done and skipped are most of the table: those are walked newest first).
    let cancelled = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => {
            "CREATE INDEX jobs_cancelled ON jobs (transaction_id) WHERE state = 'cancelled';\n"
        }
    };
    format!(
        "
ALTER TABLE dispatches ADD COLUMN merchant_reference TEXT;
ALTER TABLE dispatches ADD COLUMN customer_email TEXT;
UPDATE dispatches SET merchant_reference = {reference}, customer_email = {email} WHERE invoice IS NOT NULL;
CREATE INDEX dispatches_invoice_number ON dispatches (invoice_number) WHERE invoice_number IS NOT NULL;
CREATE INDEX dispatches_merchant_reference ON dispatches (merchant_reference) WHERE merchant_reference IS NOT NULL;
CREATE INDEX dispatches_customer_email ON dispatches (customer_email) WHERE customer_email IS NOT NULL;
CREATE INDEX jobs_retried ON jobs (transaction_id) WHERE attempts > 1;
{cancelled}CREATE TABLE audit (
    id        {serial},
    at        {int} NOT NULL,
    user_name TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    result    TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
",
        int = match dialect {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        }
    )
}

/// Delivery evidence: what reporters said after an attempt, once per event, and on each
/// delivery the sink's own id for it (what evidence may name) and the furthest state reported.
const EVIDENCE: &str = "
ALTER TABLE jobs ADD COLUMN reference TEXT;
ALTER TABLE jobs ADD COLUMN evidence TEXT;
CREATE INDEX jobs_reference ON jobs (reference) WHERE reference IS NOT NULL;
CREATE TABLE evidence (
    job_id         TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    state          TEXT NOT NULL,
    reporter       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    payload        {blob},
    reported_at    {int},
    recorded_at    {int} NOT NULL,
    PRIMARY KEY (job_id, event_id)
);
CREATE INDEX evidence_transaction ON evidence (transaction_id);
";

/// SQLite's `AUTOINCREMENT` wrote `sqlite_sequence` with every history line. History lines are
/// never deleted (a prune empties their detail), so the largest id plus one, SQLite's default,
/// keeps their order. The table is rebuilt with the same ids. PostgreSQL's sequence stays.
fn history_without_autoincrement(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => "
CREATE TABLE history_rebuilt (
    id             INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    job_id         TEXT,
    at             INTEGER NOT NULL,
    event          TEXT NOT NULL,
    detail         TEXT NOT NULL
);
INSERT INTO history_rebuilt (id, transaction_id, job_id, at, event, detail)
    SELECT id, transaction_id, job_id, at, event, detail FROM history;
DROP TABLE history;
ALTER TABLE history_rebuilt RENAME TO history;
CREATE INDEX history_transaction ON history (transaction_id, id);
DELETE FROM sqlite_sequence WHERE name = 'history';
"
        .to_owned(),
        Dialect::Postgres => "\n-- history keeps its BIGSERIAL id\n".to_owned(),
    }
}

/// The stages a dispatch can rest at for good; the others ([`UNSETTLED`]) pass, so the
/// dispatches at them are few and indexed, and these are counted in `tallies` instead.
pub(super) const SETTLED: &str = "('skipped', 'failed', 'routed', 'voided')";
/// The stages a dispatch passes through.
pub(super) const UNSETTLED: &str = "('new', 'capturing', 'captured', 'voiding')";
/// The job states that grow with the history, counted in `tallies`; the others are few and
/// indexed.
pub(super) const FINISHED_JOB: &str = "('done', 'skipped')";

/// Counts kept as rows change, so `/metrics`, `/healthz` and `status` never scan the history:
/// `stage:<stage>` for each settled stage, `job:<kind>:<state>` for each finished job state,
/// moved by triggers whatever writes the row. The dispatches and jobs that are not counted
/// there get indexes of their own, and the newest-first listing an index on its order.
///
/// SQLite has one writer, so each count is one row updated in place. PostgreSQL writes in
/// parallel: one row per count would queue every commit behind the one before, so each server
/// process keeps its own row per count (`stripe` is its pid; no two live processes share one,
/// so no writer ever waits on another's, and none can deadlock), `SUM` reads them, and a read
/// folds the rows of processes gone into stripe 0 (at most once a minute per store). Rows updated in place stay few: a log of
/// appended rows instead grew with every change until vacuum, and its scan with it.
fn tallies(dialect: Dialect) -> String {
    let indexes = format!(
        "CREATE INDEX dispatches_unsettled ON dispatches (stage) WHERE stage IN {UNSETTLED};
CREATE INDEX dispatches_created ON dispatches (created_at, transaction_id);
CREATE INDEX jobs_troubled ON jobs (transaction_id) WHERE state IN ('failed', 'dead');
"
    );
    let backfill = format!(
        "INSERT INTO tallies (name, count) SELECT 'stage:' || stage, COUNT(*) FROM dispatches WHERE stage IN {SETTLED} GROUP BY stage;
INSERT INTO tallies (name, count) SELECT 'job:' || kind || ':' || state, COUNT(*) FROM jobs WHERE state IN {FINISHED_JOB} GROUP BY kind, state;
"
    );
    match dialect {
        Dialect::Sqlite => {
            let add = |name: &str| {
                format!(
                    "INSERT INTO tallies (name, count) VALUES ({name}, 1) ON CONFLICT (name) DO UPDATE SET count = count + 1;"
                )
            };
            let remove = |name: &str| format!("UPDATE tallies SET count = count - 1 WHERE name = {name};");
            let (stage_old, stage_new) = ("'stage:' || old.stage", "'stage:' || new.stage");
            let (job_old, job_new) = (
                "'job:' || old.kind || ':' || old.state",
                "'job:' || new.kind || ':' || new.state",
            );
            format!(
                "
CREATE TABLE tallies (name TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;
{backfill}{indexes}CREATE TRIGGER tally_dispatch_insert AFTER INSERT ON dispatches WHEN new.stage IN {SETTLED}
BEGIN {add_stage} END;
CREATE TRIGGER tally_dispatch_delete AFTER DELETE ON dispatches WHEN old.stage IN {SETTLED}
BEGIN {remove_stage} END;
CREATE TRIGGER tally_dispatch_leave AFTER UPDATE OF stage ON dispatches WHEN old.stage IN {SETTLED} AND new.stage IS NOT old.stage
BEGIN {remove_stage} END;
CREATE TRIGGER tally_dispatch_reach AFTER UPDATE OF stage ON dispatches WHEN new.stage IN {SETTLED} AND new.stage IS NOT old.stage
BEGIN {add_stage} END;
CREATE TRIGGER tally_job_insert AFTER INSERT ON jobs WHEN new.state IN {FINISHED_JOB}
BEGIN {add_job} END;
CREATE TRIGGER tally_job_delete AFTER DELETE ON jobs WHEN old.state IN {FINISHED_JOB}
BEGIN {remove_job} END;
CREATE TRIGGER tally_job_leave AFTER UPDATE OF state ON jobs WHEN old.state IN {FINISHED_JOB} AND new.state IS NOT old.state
BEGIN {remove_job} END;
CREATE TRIGGER tally_job_reach AFTER UPDATE OF state ON jobs WHEN new.state IN {FINISHED_JOB} AND new.state IS NOT old.state
BEGIN {add_job} END;
",
                add_stage = add(stage_new),
                remove_stage = remove(stage_old),
                add_job = add(job_new),
                remove_job = remove(job_old),
            )
        }
        Dialect::Postgres => format!(
            "
CREATE TABLE tallies (name TEXT NOT NULL, stripe INTEGER NOT NULL DEFAULT 0, count BIGINT NOT NULL, PRIMARY KEY (name, stripe));
{backfill}{indexes}CREATE FUNCTION postbud_tally(counted TEXT, delta BIGINT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tallies (name, stripe, count) VALUES (counted, pg_backend_pid(), delta)
    ON CONFLICT (name, stripe) DO UPDATE SET count = tallies.count + excluded.count
$$;
CREATE FUNCTION postbud_tally_stage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.stage IN {SETTLED} THEN
        PERFORM postbud_tally('stage:' || OLD.stage, -1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.stage IN {SETTLED} THEN
        PERFORM postbud_tally('stage:' || NEW.stage, 1);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION postbud_tally_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.state IN {FINISHED_JOB} THEN
        PERFORM postbud_tally('job:' || OLD.kind || ':' || OLD.state, -1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state IN {FINISHED_JOB} THEN
        PERFORM postbud_tally('job:' || NEW.kind || ':' || NEW.state, 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tally_dispatch AFTER INSERT OR DELETE ON dispatches
    FOR EACH ROW EXECUTE FUNCTION postbud_tally_stage();
CREATE TRIGGER tally_dispatch_stage AFTER UPDATE OF stage ON dispatches
    FOR EACH ROW WHEN (OLD.stage IS DISTINCT FROM NEW.stage) EXECUTE FUNCTION postbud_tally_stage();
CREATE TRIGGER tally_job AFTER INSERT OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION postbud_tally_job();
CREATE TRIGGER tally_job_state AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION postbud_tally_job();
"
        ),
    }
}

/// Rows a store of schema 8 may hold: a routed invoice with a snapshot (a reference, an email
/// in capitals with blanks around it, a NUL in the name, which serde_json writes `\u0000` and
/// PostgreSQL's jsonb refuses), one without a reference, a pruned one.
#[cfg(test)]
pub(crate) const SCHEMA_8_ROWS: &str = r#"
INSERT INTO dispatches (transaction_id, stage, invoice_number, invoice, created_at, updated_at) VALUES
    ('T1.old', 'routed', '501', '{"transaction_id":"T1.old","merchant_reference":"order-501","customer":{"name":"Ka\u0000ri","email":" Kari@Example.NO "}}', 1, 1),
    ('T2.old', 'routed', '502', '{"transaction_id":"T2.old","merchant_reference":null,"customer":{"name":"Ola","email":null}}', 2, 2),
    ('T3.old', 'routed', '503', NULL, 3, 3);
"#;

/// What a store migrated from [`SCHEMA_8_ROWS`] finds.
#[cfg(test)]
pub(crate) async fn assert_schema_8_migrated(store: &dyn crate::Store) {
    let found = |search: &str| {
        let query = crate::DispatchQuery {
            search: Some(search.into()),
            ..crate::DispatchQuery::latest(10)
        };
        async move {
            let found = store.dispatches(&query).await.expect("listed");
            found
                .into_iter()
                .map(|d| d.dispatch.transaction_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("kari@example.no").await, ["T1.old"]);
    assert_eq!(found("order-501").await, ["T1.old"]);
    assert_eq!(found("502").await, ["T2.old"]);
    assert_eq!(found("503").await, ["T3.old"]);
    assert!(found("null").await.is_empty());
    let entry = crate::AuditEntry::new(5, "kari", "retry", "T1.old", "ok");
    store.record_audit(&entry).await.expect("an audit log");
    assert_eq!(store.audit_log(None, 5).await.expect("read"), [entry]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(migrations: &[String]) -> String {
        postbud_channel::sha256_hex(migrations.join("\0").as_bytes())
    }

    /// The digests of the text each store applied before the schema was written once: a fresh
    /// database gets exactly the tables one created by an older version has. Migrations after
    /// the first five are new, and pinned once they ship.
    #[test]
    fn each_dialect_gets_the_schema_it_always_had() {
        assert_eq!(
            digest(&migrations(Dialect::Sqlite)[..5]),
            "c50609033feec245046c9c82c90dfcfc26a350cf86bc96a998649d436dbe7123"
        );
        assert_eq!(
            digest(&migrations(Dialect::Postgres)[..5]),
            "a4b5b834fc95db60dde3e3a95d7047d4ae544221a444fe9eaf455c959a5bbd71"
        );
    }
}
