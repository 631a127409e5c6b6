-- Keeps the PDF fetched before the capture, unless one is kept already or the lease is gone
-- (PostgreSQL writes it and its history line in one statement: `postgres/save_document.sql`).
INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
SELECT :transaction_id, :file_name, :sha256, :bytes, :now
WHERE EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND fence = :fence AND state = 'running')
ON CONFLICT (transaction_id) DO NOTHING
