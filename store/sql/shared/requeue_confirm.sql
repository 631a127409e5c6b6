-- Queues again the job that waits for a void's confirmation, left from an earlier void that
-- ended.
UPDATE jobs SET state = 'queued', next_at = :now, attempts = 0, last_error = NULL, fence = fence + 1, updated_at = :now
WHERE id = :job_id AND state IN ('done', 'failed', 'dead', 'cancelled')
