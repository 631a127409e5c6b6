-- The dispatches `status` and the console list, newest first, a page at a time: of a channel,
-- created in a window, with a delivery or notice in a job state, with a job tried more than
-- once, with a job failed for good, matching a search (the transaction id, invoice number or
-- merchant reference exactly, the customer's email lowercased), after the page's last
-- `(created_at, transaction_id)`; each filter NULL (or 0) when not asked for, but the window
-- and the cursor, always bound (the whole range when not asked for: `kernel::Window`), with
-- one upper bound (`:until`, the lower of the window's end and the cursor's), so that they bound
-- the walk of `dispatches_created`: a condition `:x IS NULL OR …` keeps SQLite from seeking
-- the index, and of two upper bounds it seeks by one, so a page deep in walked every row before
-- it (33 ms at 500,000 in). `{source}` is
-- where they are read from (`sql::shared::dispatches`): every dispatch newest first through
-- `dispatches_created` (`dispatches d WHERE`), or the few a narrow filter names, read from that
-- filter's index first (the `CROSS JOIN` keeps SQLite's planner there) rather than walking
-- every dispatch for them. A dispatch's jobs are looked up by its transaction id
-- (`jobs_transaction`); `j.state || ''` keeps SQLite, which cannot tell a state of a million
-- jobs from one of ten without statistics, from walking `jobs_due` by state instead; the
-- `OFFSET 0` keeps PostgreSQL from turning the test into a join with every job of that state
-- (488 ms for `done` at 1,000,000), so it looks up each dispatch's jobs as SQLite does.
SELECT d.* FROM {source}
    (CAST(:channel AS TEXT) IS NULL
     OR EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.channel = :channel))
AND (CAST(:state AS TEXT) IS NULL
     OR EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id
                AND j.kind IN ('deliver', 'cancel') AND j.state || '' = :state LIMIT 1 OFFSET 0))
AND (CAST(:retried AS BIGINT) = 0
     OR EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.attempts > 1 LIMIT 1 OFFSET 0))
AND (CAST(:troubled AS BIGINT) = 0
     OR EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.state IN ('failed', 'dead')))
AND (CAST(:search AS TEXT) IS NULL
     OR d.transaction_id = :search OR d.invoice_number = :search OR d.merchant_reference = :search
     OR d.customer_email = :email)
AND d.created_at >= :created_from AND d.created_at <= :until
AND (d.created_at, d.transaction_id) < (:after_at, :after_id)
ORDER BY d.created_at DESC, d.transaction_id DESC LIMIT :limit
