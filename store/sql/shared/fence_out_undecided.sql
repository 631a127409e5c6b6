-- A callback may have started the dispatch before its origin was recorded: an attempt that
-- has not captured yet is fenced out and queued again, so it cannot skip the invoice on what
-- it read before.
UPDATE jobs SET state = 'queued', next_at = :now, fence = fence + 1, lease_owner = NULL, lease_until = NULL,
       updated_at = :now
WHERE id = :job_id AND state IN ('running', 'skipped')
  AND EXISTS (SELECT 1 FROM dispatches WHERE transaction_id = :transaction_id AND stage IN ('new', 'skipped'))
