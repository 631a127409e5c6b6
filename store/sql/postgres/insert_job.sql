-- One job, its history line and the wake-up in one statement; the last two only for a job
-- not there before.
WITH inserted AS (
    INSERT INTO jobs (id, transaction_id, kind, channel, role, state, next_at, created_at, updated_at)
    VALUES (:id, :transaction_id, :kind, :channel, :role, 'queued', :next_at, :now, :now)
    ON CONFLICT (id) DO NOTHING RETURNING id),
noted AS (
    INSERT INTO history (transaction_id, job_id, at, event, detail)
    SELECT :transaction_id, id, :now, 'queued', :detail FROM inserted)
SELECT pg_notify('postbud_jobs', '') FROM inserted
