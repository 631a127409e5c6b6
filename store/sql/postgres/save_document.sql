-- The PDF fetched before the capture, kept (unless one is kept already or the lease is gone)
-- and noted in one statement: one round trip, one commit.
WITH saved AS (
    INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
    SELECT :transaction_id, :file_name, :sha256, :bytes, :now
    WHERE EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND fence = :fence AND state = 'running')
    ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id)
INSERT INTO history (transaction_id, job_id, at, event, detail)
SELECT transaction_id, :job_id, :now, 'pdf fetched', :detail FROM saved
