-- The clauses of a claim, ending in `claimed` (the jobs leased, every column): at most :limit
-- jobs due at :now, leased to :owner until :until. `{only}` is `AND transaction_id = :only`
-- for a claim of one transaction, else `AND CAST(:only AS TEXT) IS NULL`; `{also}` narrows
-- which jobs it may take. Each branch walks its own index in due order and stops after :limit
-- rows, so a claim costs the same with ten or ten thousand jobs waiting; `SKIP LOCKED` lets
-- several instances claim at once (SQLite's one writer needs neither: `sqlite/claim.sql`).
due AS (SELECT id, next_at AS at FROM jobs
        WHERE state = 'queued' AND next_at <= :now {only} {also}
        ORDER BY next_at LIMIT :limit FOR UPDATE SKIP LOCKED),
lapsed AS (SELECT id, lease_until AS at FROM jobs
           WHERE state = 'running' AND lease_until < :now {only} {also}
           ORDER BY lease_until LIMIT :limit FOR UPDATE SKIP LOCKED),
picked AS (SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM lapsed) both_kinds
           ORDER BY at LIMIT :limit),
claimed AS (
    UPDATE jobs SET state = 'running', fence = fence + 1, attempts = attempts + 1,
           -- A delivery whose lease lapsed may have reached its sink before the attempt died.
           outcome_unknown = CASE WHEN state = 'running' AND kind = 'deliver' THEN 1 ELSE outcome_unknown END,
           lease_owner = :owner, lease_until = :until, updated_at = :now
    WHERE id IN (SELECT id FROM picked)
    RETURNING *)
