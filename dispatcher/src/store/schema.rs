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
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(migrations: &[String]) -> String {
        postbud_channel::sha256_hex(migrations.join("\0").as_bytes())
    }

    /// The digests of the text each store applied before the schema was written once: a fresh
    /// database gets exactly the tables one created by an older version has.
    #[test]
    fn each_dialect_gets_the_schema_it_always_had() {
        assert_eq!(
            digest(&migrations(Dialect::Sqlite)),
            "c50609033feec245046c9c82c90dfcfc26a350cf86bc96a998649d436dbe7123"
        );
        assert_eq!(
            digest(&migrations(Dialect::Postgres)),
            "a4b5b834fc95db60dde3e3a95d7047d4ae544221a444fe9eaf455c959a5bbd71"
        );
    }
}
