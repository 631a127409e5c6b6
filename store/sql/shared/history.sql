-- A transaction's history, oldest first.
SELECT at, job_id, event, detail FROM history WHERE transaction_id = :transaction_id ORDER BY id
