//! The statements in `store/sql/` (one a file, parameters named `:name`; see its README), and
//! how their names are bound.
//!
//! SQLite binds the names itself; the SQLite store checks that the names given are exactly the
//! statement's. PostgreSQL numbers its parameters: [`numbered`] rewrites a statement's names
//! into `$1`, `$2`, … once, and [`Named`] binds each value by its name in that order, so a
//! name missing or left over is an error, never a value bound to the wrong place.

macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident = $file:literal;)+) => {
        $($(#[$doc])* pub(crate) const $name: &str =
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/", $file));)+
        /// Every statement of this group, with its file.
        #[cfg(test)]
        pub(crate) const ALL: &[(&str, &str)] = &[$(($file, $name)),+];
    };
}

/// `statement` without its comment lines: a statement put together from a template and
/// fragments, where a comment naming a fragment's place must not receive it.
fn without_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What both dialects run as written.
pub(crate) mod shared {
    statements! {
        DISPATCH = "shared/dispatch.sql";
        JOB = "shared/job.sql";
        JOBS = "shared/jobs.sql";
        HISTORY = "shared/history.sql";
        RECORD = "shared/record.sql";
        DOCUMENT = "shared/document.sql";
        INVOICE = "shared/invoice.sql";
        META = "shared/meta.sql";
        SET_META = "shared/set_meta.sql";
        META_INIT = "shared/meta_init.sql";
        RETRY = "shared/retry.sql";
        ADOPT_CAPTURE = "shared/adopt_capture.sql";
        REQUEUE_DISPATCH = "shared/requeue_dispatch.sql";
        TAKE_TURN = "shared/take_turn.sql";
        MARK_ORIGIN = "shared/mark_origin.sql";
        FENCE_OUT_UNDECIDED = "shared/fence_out_undecided.sql";
        VOID_ACCEPTED = "shared/void_accepted.sql";
        REQUEUE_CONFIRM = "shared/requeue_confirm.sql";
        VOID = "shared/void.sql";
        DELIVERED_CHANNELS = "shared/delivered_channels.sql";
        CANCEL_PENDING = "shared/cancel_pending.sql";
        RENEW = "shared/renew.sql";
        KEEP_REFERENCE = "shared/keep_reference.sql";
        HELD = "shared/held.sql";
        FINISH = "shared/finish.sql";
        PATCH_DISPATCH = "shared/patch_dispatch.sql";
        COUNTS = "shared/counts.sql";
        DISPATCHES = "shared/dispatches.sql";
        PRUNABLE = "shared/prunable.sql";
        PRUNE_DISPATCH = "shared/prune_dispatch.sql";
        PRUNE_DOCUMENT = "shared/prune_document.sql";
        PRUNE_JOBS = "shared/prune_jobs.sql";
        PRUNE_HISTORY = "shared/prune_history.sql";
        PRUNE_NOTED = "shared/prune_noted.sql";
        PRUNE_EVIDENCE = "shared/prune_evidence.sql";
        INSERT_EVIDENCE = "shared/insert_evidence.sql";
        EVIDENCE_FAILS_JOB = "shared/evidence_fails_job.sql";
        EVIDENCE_ADVANCES_JOB = "shared/evidence_advances_job.sql";
        EVIDENCE_SETTLES_JOB = "shared/evidence_settles_job.sql";
        JOB_BY_REFERENCE = "shared/job_by_reference.sql";
        EVIDENCE_OF = "shared/evidence_of.sql";
        RECORD_AUDIT = "shared/record_audit.sql";
        AUDIT_LOG = "shared/audit_log.sql";
    }

    /// What a prune does to one dispatch, statement by statement (parameters: the dispatch's
    /// `transaction_id` and, in some, `now`).
    pub(crate) const PRUNE: [&str; 6] = [
        PRUNE_DISPATCH,
        PRUNE_DOCUMENT,
        PRUNE_JOBS,
        PRUNE_HISTORY,
        PRUNE_EVIDENCE,
        PRUNE_NOTED,
    ];

    /// [`DISPATCHES`] read from `source`.
    pub(crate) fn dispatches(source: crate::kernel::Source) -> &'static str {
        use crate::kernel::Source;
        static MADE: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
            Source::ALL
                .iter()
                .map(|source| {
                    super::without_comments(DISPATCHES).replace("{source}", &from(*source))
                })
                .collect()
        });
        /// Where the dispatches are read from, ending where the conditions begin.
        fn from(source: Source) -> String {
            let narrowed = |ids: &str| {
                format!(
                    "({ids}) t CROSS JOIN dispatches d WHERE d.transaction_id = t.transaction_id AND"
                )
            };
            match source {
                Source::All => "dispatches d WHERE".to_owned(),
                Source::Troubled => narrowed(
                    "SELECT DISTINCT transaction_id FROM jobs WHERE state IN ('failed', 'dead')",
                ),
                // A state's literal, not a parameter: the planners match it to the partial
                // indexes only when they can see it.
                Source::State(state) => narrowed(&format!(
                    "SELECT DISTINCT transaction_id FROM jobs WHERE state = '{state}' AND kind IN ('deliver', 'cancel')"
                )),
                // Each key through its own index; UNION, as one invoice may match twice.
                Source::Search => narrowed(
                    "SELECT transaction_id FROM dispatches WHERE transaction_id = :search
                     UNION SELECT transaction_id FROM dispatches WHERE invoice_number = :search
                     UNION SELECT transaction_id FROM dispatches WHERE merchant_reference = :search
                     UNION SELECT transaction_id FROM dispatches WHERE customer_email = :email",
                ),
            }
        }
        let at = Source::ALL
            .iter()
            .position(|s| *s == source)
            .expect("every source is listed");
        &MADE[at]
    }

    /// Every statement the dispatches are listed with, for the tests.
    #[cfg(test)]
    pub(crate) fn every_dispatches() -> Vec<(String, String)> {
        crate::kernel::Source::ALL
            .iter()
            .map(|s| (format!("dispatches ({s:?})"), dispatches(*s).to_owned()))
            .collect()
    }
}

/// SQLite's own.
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements! {
        SUBMIT_DISPATCH = "sqlite/submit_dispatch.sql";
        SUBMIT_JOB = "sqlite/submit_job.sql";
        SUBMIT_AGAIN = "sqlite/submit_again.sql";
        KEEP_DOCUMENT = "sqlite/keep_document.sql";
        CLAIM = "sqlite/claim.sql";
        CLAIM_OF_TRANSACTION = "sqlite/claim_of_transaction.sql";
        INSERT_JOB = "sqlite/insert_job.sql";
        ROUTE = "sqlite/route.sql";
        REPLACE_DOCUMENT = "sqlite/replace_document.sql";
        DISPATCHED = "sqlite/dispatched.sql";
        LEASE_FIRST = "sqlite/lease_first.sql";
    }
}

/// PostgreSQL's own; some are put together from fragments ([`postgres::claim`], …).
#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use std::sync::LazyLock;

    statements! {
        NOTIFY = "postgres/notify.sql";
        FOLD_TALLIES = "postgres/fold_tallies.sql";
        SUBMIT = "postgres/submit.sql";
        CLAIMED = "postgres/claimed.sql";
        CLAIM = "postgres/claim.sql";
        FINISH = "postgres/finish.sql";
        FINISH_THEN_CLAIM = "postgres/finish_then_claim.sql";
        UPDATE_DISPATCH = "postgres/update_dispatch.sql";
        SAVE_DOCUMENT = "postgres/save_document.sql";
        INSERT_JOB = "postgres/insert_job.sql";
        JOBS_OF_PAGE = "postgres/jobs_of_page.sql";
        COMPLETE_DISPATCH = "postgres/complete_dispatch.sql";
        CLOCK = "postgres/clock.sql";
        SCHEMA_TABLE = "postgres/schema_table.sql";
        SCHEMA_VERSION = "postgres/schema_version.sql";
        MIGRATION_LOCK = "postgres/migration_lock.sql";
        SCHEMA_VERSIONED = "postgres/schema_versioned.sql";
        SCHEMA_UNVERSIONED = "postgres/schema_unversioned.sql";
        SCHEMA_MIGRATED = "postgres/schema_migrated.sql";
        JOB_FOR_EVIDENCE = "postgres/job_for_evidence.sql";
    }

    use super::without_comments as clause;

    /// [`CLAIMED`] of one transaction (`by_transaction`) or any, narrowed by `also`.
    fn claimed(by_transaction: bool, also: &str) -> String {
        let only = match by_transaction {
            true => "AND transaction_id = :only",
            false => "AND CAST(:only AS TEXT) IS NULL",
        };
        clause(CLAIMED)
            .replace("{only}", only)
            .replace("{also}", also)
    }

    /// The claim, of one transaction or any.
    pub(crate) fn claim(by_transaction: bool) -> &'static str {
        fn made(by_transaction: bool) -> String {
            clause(CLAIM)
                .replace("{claimed}", &claimed(by_transaction, ""))
                .replace("{dispatch}", &crate::kernel::dispatch_columns("d"))
        }
        static ANY: LazyLock<String> = LazyLock::new(|| made(false));
        static ONE: LazyLock<String> = LazyLock::new(|| made(true));
        if by_transaction { &ONE } else { &ANY }
    }

    /// The end of an attempt with its history line.
    pub(crate) fn finish() -> &'static str {
        static MADE: LazyLock<String> =
            LazyLock::new(|| clause(FINISH).replace("{finished}", &clause(super::shared::FINISH)));
        &MADE
    }

    /// The end of an attempt, its history line and the next claim, of one transaction or any.
    pub(crate) fn finish_then_claim(by_transaction: bool) -> &'static str {
        fn made(by_transaction: bool) -> String {
            let also = "AND id <> :job_id AND EXISTS (SELECT 1 FROM finished)";
            clause(FINISH_THEN_CLAIM)
                .replace("{finished}", &clause(super::shared::FINISH))
                .replace("{claimed}", &claimed(by_transaction, also))
                .replace("{dispatch}", &crate::kernel::dispatch_columns("d"))
        }
        static ANY: LazyLock<String> = LazyLock::new(|| made(false));
        static ONE: LazyLock<String> = LazyLock::new(|| made(true));
        if by_transaction { &ONE } else { &ANY }
    }

    /// The change of a dispatch record with the PDF it keeps and its history lines.
    pub(crate) fn update_dispatch() -> &'static str {
        static MADE: LazyLock<String> = LazyLock::new(|| {
            clause(UPDATE_DISPATCH).replace("{updated}", &clause(super::shared::PATCH_DISPATCH))
        });
        &MADE
    }

    /// Every statement PostgreSQL runs, as it runs it, for the tests.
    #[cfg(test)]
    pub(crate) fn every_statement() -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = super::shared::ALL
            .iter()
            .filter(|(_, sql)| !sql.contains("{source}"))
            .map(|(file, sql)| (file.to_string(), sql.to_string()))
            .collect();
        all.extend(super::shared::every_dispatches());
        for (file, sql) in ALL {
            if !sql.contains('{') {
                all.push((file.to_string(), sql.to_string()));
            }
        }
        for one in [false, true] {
            all.push((format!("claim ({one})"), claim(one).into()));
            all.push((
                format!("finish_then_claim ({one})"),
                finish_then_claim(one).into(),
            ));
        }
        all.push(("finish".into(), finish().into()));
        all.push(("update_dispatch".into(), update_dispatch().into()));
        all
    }
}

/// A statement with its `:name`s numbered for PostgreSQL: the text to send and the names in
/// the order of their numbers (a name used twice has one number).
#[cfg(any(feature = "postgres", test))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Numbered {
    /// The statement with `$n` for each name, its comments left out.
    pub(crate) sql: String,
    /// The names, `$1` first.
    pub(crate) names: Vec<String>,
}

/// Numbers the `:name`s of `sql` (`::` casts, quoted text and `--` comments are left alone;
/// comments are dropped).
#[cfg(any(feature = "postgres", test))]
pub(crate) fn numbered(sql: &str) -> Numbered {
    let (mut out, mut names) = (String::with_capacity(sql.len()), Vec::<String>::new());
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if sql[i..].starts_with("--") => {
                while chars.next_if(|&(_, d)| d != '\n').is_some() {}
            }
            ':' if sql[i..].starts_with("::") => {
                out.push_str("::");
                chars.next();
            }
            ':' if chars
                .peek()
                .is_some_and(|&(_, d)| d.is_ascii_alphabetic() || d == '_') =>
            {
                let mut name = String::new();
                while let Some((_, d)) =
                    chars.next_if(|&(_, d)| d.is_ascii_alphanumeric() || d == '_')
                {
                    name.push(d);
                }
                let number = match names.iter().position(|n| *n == name) {
                    Some(at) => at + 1,
                    None => {
                        names.push(name);
                        names.len()
                    }
                };
                out.push('$');
                out.push_str(&number.to_string());
            }
            _ => out.push(c),
        }
    }
    Numbered {
        sql: out.trim().to_owned(),
        names,
    }
}

#[cfg(feature = "postgres")]
pub(crate) use self::named::Named;

#[cfg(feature = "postgres")]
mod named {
    use std::{
        collections::HashMap,
        sync::{Arc, LazyLock, Mutex},
    };

    use sqlx::{
        Arguments as _, Encode, Postgres, Type,
        postgres::{PgArguments, PgQueryResult, PgRow},
    };

    use super::{Numbered, numbered};
    use crate::{StoreError, StoreErrorKind};

    type Binding<'q> =
        Box<dyn FnOnce(&mut PgArguments) -> Result<(), sqlx::error::BoxDynError> + Send + 'q>;

    /// A statement from `store/sql/` with its values bound by name, for PostgreSQL.
    pub(crate) struct Named<'q> {
        statement: &'static str,
        values: Vec<(&'static str, Binding<'q>)>,
    }

    /// Each statement numbered once.
    fn numbered_once(statement: &'static str) -> Arc<Numbered> {
        static DONE: LazyLock<Mutex<HashMap<usize, Arc<Numbered>>>> =
            LazyLock::new(Default::default);
        let mut done = DONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(
            done.entry(statement.as_ptr() as usize)
                .or_insert_with(|| Arc::new(numbered(statement))),
        )
    }

    impl<'q> Named<'q> {
        /// `statement`, nothing bound yet.
        pub(crate) fn new(statement: &'static str) -> Self {
            Self {
                statement,
                values: Vec::new(),
            }
        }

        /// Binds `value` to `:name`.
        pub(crate) fn bind<T>(mut self, name: &'static str, value: T) -> Self
        where
            T: Encode<'q, Postgres> + Type<Postgres> + Send + 'q,
        {
            self.values.push((
                name,
                Box::new(move |arguments: &mut PgArguments| arguments.add(value)),
            ));
            self
        }

        /// The statement numbered and its values in the order of their numbers; an error
        /// names a parameter without a value, or a value without a parameter.
        fn arguments(self) -> Result<(Arc<Numbered>, PgArguments), StoreError> {
            let numbered = numbered_once(self.statement);
            let mut values: HashMap<&str, Binding<'q>> = HashMap::new();
            for (name, value) in self.values {
                if values.insert(name, value).is_some() {
                    return Err(misbound(&numbered, format!(":{name} bound twice")));
                }
            }
            let mut arguments = PgArguments::default();
            for name in &numbered.names {
                let value = values
                    .remove(name.as_str())
                    .ok_or_else(|| misbound(&numbered, format!(":{name} has no value")))?;
                value(&mut arguments).map_err(|e| {
                    StoreError::new(StoreErrorKind::Invalid, format!("binding :{name}: {e}"))
                })?;
            }
            if let Some(extra) = values.keys().next() {
                return Err(misbound(&numbered, format!(":{extra} is not a parameter")));
            }
            Ok((numbered, arguments))
        }

        /// Runs it; how many rows it changed.
        pub(crate) async fn execute<'e>(
            self,
            on: impl sqlx::PgExecutor<'e>,
        ) -> Result<PgQueryResult, StoreError> {
            let (numbered, arguments) = self.arguments()?;
            Ok(sqlx::query_with(&numbered.sql, arguments)
                .execute(on)
                .await?)
        }

        /// Every row it returns.
        pub(crate) async fn fetch_all<'e>(
            self,
            on: impl sqlx::PgExecutor<'e>,
        ) -> Result<Vec<PgRow>, StoreError> {
            let (numbered, arguments) = self.arguments()?;
            Ok(sqlx::query_with(&numbered.sql, arguments)
                .fetch_all(on)
                .await?)
        }

        /// The one row it returns.
        pub(crate) async fn fetch_one<'e>(
            self,
            on: impl sqlx::PgExecutor<'e>,
        ) -> Result<PgRow, StoreError> {
            let (numbered, arguments) = self.arguments()?;
            Ok(sqlx::query_with(&numbered.sql, arguments)
                .fetch_one(on)
                .await?)
        }

        /// The row it returns, if one.
        pub(crate) async fn fetch_optional<'e>(
            self,
            on: impl sqlx::PgExecutor<'e>,
        ) -> Result<Option<PgRow>, StoreError> {
            let (numbered, arguments) = self.arguments()?;
            Ok(sqlx::query_with(&numbered.sql, arguments)
                .fetch_optional(on)
                .await?)
        }
    }

    fn misbound(numbered: &Numbered, what: String) -> StoreError {
        let first = numbered.sql.lines().next().unwrap_or_default();
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("statement `{first} …`: {what}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_in_order_once_each() {
        let n = numbered(
            "-- :ignored in a comment\nUPDATE t SET a = :a, b = CAST(:b AS TEXT), c = :a::bigint WHERE d = ':not' AND e = :b_2",
        );
        assert_eq!(n.names, ["a", "b", "b_2"]);
        assert_eq!(
            n.sql,
            "UPDATE t SET a = $1, b = CAST($2 AS TEXT), c = $1::bigint WHERE d = ':not' AND e = $3"
        );
    }

    /// Every statement file has a comment saying what it does, and parameters that number.
    #[test]
    fn every_statement_says_what_it_does_and_names_its_parameters() {
        let mut all: Vec<(&str, &str)> = shared::ALL.to_vec();
        #[cfg(feature = "sqlite")]
        all.extend(sqlite::ALL);
        #[cfg(feature = "postgres")]
        all.extend(postgres::ALL);
        for (file, sql) in all {
            assert!(sql.starts_with("-- "), "{file} begins with what it does");
            let numbered = numbered(sql);
            assert!(!numbered.sql.contains('?'), "{file}: parameters are named");
            for name in &numbered.names {
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{file}: :{name}"
                );
            }
        }
    }

    /// The counts read the unsettled stages through the partial index made for them.
    #[test]
    fn the_counts_name_the_unsettled_stages_as_the_index_does() {
        assert!(shared::COUNTS.contains(&format!("stage IN {}", crate::schema::UNSETTLED)));
    }

    /// Adopting a capture looks for the reason the engine writes.
    #[test]
    fn adopting_looks_for_the_reason_the_engine_writes() {
        assert!(
            shared::ADOPT_CAPTURE.contains(&format!("'{}%'", crate::COLLECTION_STARTED_ELSEWHERE))
        );
    }

    /// Each listing reads through the index its source names, never a scan of a table:
    /// every dispatch newest first through `dispatches_created`, the others through the index
    /// of their filter (SQLite's plan, as `EXPLAIN QUERY PLAN` gives it).
    #[cfg(feature = "sqlite")]
    #[test]
    fn every_sqlite_listing_reads_through_an_index() {
        use crate::kernel::Source;
        let conn = rusqlite::Connection::open_in_memory().expect("memory");
        for migration in crate::schema::migrations(crate::schema::Dialect::Sqlite) {
            conn.execute_batch(&migration).expect("migrate");
        }
        for source in Source::ALL {
            let sql = format!("EXPLAIN QUERY PLAN {}", shared::dispatches(source));
            let mut statement = conn.prepare(&sql).expect("explain");
            for at in 1..=statement.parameter_count() {
                statement
                    .raw_bind_parameter(at, rusqlite::types::Null)
                    .expect("bound");
            }
            let mut rows = statement.raw_query();
            let mut plan = Vec::new();
            while let Some(row) = rows.next().expect("plan") {
                plan.push(row.get::<_, String>(3).expect("detail"));
            }
            let plan = plan.join("\n");
            assert!(
                // `t`, the source's ids read from an index first, is the one scanned.
                !plan
                    .lines()
                    .any(|l| l.starts_with("SCAN") && l != "SCAN t" && !l.contains("INDEX")),
                "{source:?} scans a table:\n{plan}"
            );
            // A dispatch's own jobs are found by its id, never by walking a state's jobs.
            assert!(
                plan.lines()
                    .filter(|l| l.starts_with("SEARCH j "))
                    .all(|l| l.contains("(transaction_id=?)")),
                "{source:?} looks a dispatch's jobs up by state:\n{plan}"
            );
            let index = match source {
                Source::All => "dispatches_created",
                Source::Troubled => "jobs_troubled",
                Source::State(_) => "jobs_", // jobs_due or jobs_lease, by state
                Source::Search => "dispatches_customer_email",
            };
            assert!(
                plan.contains(index),
                "{source:?} does not use {index}:\n{plan}"
            );
        }
    }

    /// Every SQLite statement prepares against the schema, and binds exactly the names it
    /// declares.
    #[cfg(feature = "sqlite")]
    #[test]
    fn every_sqlite_statement_prepares_against_the_schema() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory");
        for migration in crate::schema::migrations(crate::schema::Dialect::Sqlite) {
            conn.execute_batch(&migration).expect("migrate");
        }
        let mut all: Vec<(&str, String)> = shared::ALL
            .iter()
            .filter(|(_, sql)| !sql.contains("{source}"))
            .map(|(file, sql)| (*file, sql.to_string()))
            .collect();
        all.extend(
            sqlite::ALL
                .iter()
                .map(|(file, sql)| (*file, sql.to_string())),
        );
        let listings = shared::every_dispatches();
        all.extend(
            listings
                .iter()
                .map(|(name, sql)| (name.as_str(), sql.clone())),
        );
        for (file, sql) in all {
            let statement = conn.prepare(&sql).unwrap_or_else(|e| panic!("{file}: {e}"));
            let names = numbered(&sql).names;
            assert_eq!(statement.parameter_count(), names.len(), "{file}");
            for name in names {
                assert!(
                    statement
                        .parameter_index(&format!(":{name}"))
                        .expect("index")
                        .is_some(),
                    "{file}: :{name}"
                );
            }
        }
    }
}
