-- Everything the store's counts are made of, in one statement and so one snapshot. Rows
-- `(part, name, active, troubled, n)`:
-- - `tally`: the kept counts (see `schema.rs`), one row per name;
-- - `unsettled`: the census of the dispatches the tallies leave out, those at an unsettled
--   stage or with a job queued, running, failed or dead, by stage and whether a job is active
--   or troubled (1 or 0);
-- - `open`: the jobs in the states the tallies leave out, by state.
-- Each part is read through its own index; how many rows it reads grows with the queue and the
-- failures, never with the history. The list of unsettled stages is the one the partial index
-- `dispatches_unsettled` is written with (`schema::UNSETTLED`, checked by a test), so the
-- planner can use it.
WITH counted AS (
    SELECT transaction_id FROM dispatches WHERE stage IN ('new', 'capturing', 'captured', 'voiding')
    UNION SELECT transaction_id FROM jobs WHERE state = 'queued'
    UNION SELECT transaction_id FROM jobs WHERE state = 'running'
    UNION SELECT transaction_id FROM jobs WHERE state IN ('failed', 'dead'))
SELECT 'tally' AS part, name, CAST(NULL AS BIGINT) AS active, CAST(NULL AS BIGINT) AS troubled,
  CAST(SUM(count) AS BIGINT) AS n
FROM tallies GROUP BY name
UNION ALL
SELECT 'unsettled', d.stage,
  CAST(CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.state IN ('queued', 'running')) THEN 1 ELSE 0 END AS BIGINT),
  CAST(CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.state IN ('failed', 'dead')) THEN 1 ELSE 0 END AS BIGINT),
  CAST(COUNT(*) AS BIGINT)
FROM counted JOIN dispatches d ON d.transaction_id = counted.transaction_id
GROUP BY 2, 3, 4
UNION ALL SELECT 'open', 'queued', NULL, NULL, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state = 'queued'
UNION ALL SELECT 'open', 'running', NULL, NULL, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state = 'running'
UNION ALL SELECT 'open', state, NULL, NULL, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state IN ('failed', 'dead') GROUP BY state
