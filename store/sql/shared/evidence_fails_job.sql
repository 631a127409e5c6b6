-- A bounce or rejection reported after the delivery ended well: the delivery failed after all.
-- Only a delivered job changes, so the route's fallback that follows is queued once.
UPDATE jobs SET state = 'failed', last_error = :error, evidence = :state, updated_at = :now
WHERE id = :job_id AND state = 'done'
