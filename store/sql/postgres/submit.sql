-- Submit in one statement, so one round trip and one commit (SQLite runs `sqlite/submit_*.sql`
-- in one write transaction): the dispatch record and its job once; a dispatch skipped before
-- is looked at again; the history line and the wake-up only with a job queued.
WITH dispatch AS (
    INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES (:transaction_id, 'new', :now, :now)
    ON CONFLICT (transaction_id) DO NOTHING),
inserted AS (
    INSERT INTO jobs (id, transaction_id, kind, state, next_at, created_at, updated_at)
    VALUES (:job_id, :transaction_id, 'dispatch', 'queued', :now, :now, :now) ON CONFLICT (id) DO NOTHING
    RETURNING 'queued for dispatch' AS detail),
requeued AS (
    UPDATE jobs SET state = 'queued', next_at = :now, attempts = 0, updated_at = :now
    WHERE id = :job_id AND state = 'skipped' RETURNING 'skipped before; looking again' AS detail),
queued AS (SELECT detail FROM inserted UNION ALL SELECT detail FROM requeued),
noted AS (
    INSERT INTO history (transaction_id, job_id, at, event, detail)
    SELECT :transaction_id, :job_id, :now, 'submitted', detail FROM queued)
SELECT pg_notify('postbud_jobs', '') FROM queued
