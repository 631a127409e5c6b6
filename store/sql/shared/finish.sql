-- The end of the attempt :job_id holds under :fence; nothing when the lease is gone. SQLite
-- runs it alone, PostgreSQL as the `finished` clause of one statement with its history line.
UPDATE jobs SET state = :state, next_at = :next_at, last_error = COALESCE(:error, last_error),
       receipt = COALESCE(:receipt, receipt),
       reference = COALESCE(:reference, reference), outcome_unknown = :outcome_unknown,
       attempts = attempts + :attempt_delta,
       lease_owner = NULL, lease_until = NULL, updated_at = :now
WHERE id = :job_id AND fence = :fence AND state = 'running'
RETURNING transaction_id, id
