-- Complete a dispatch, 4 of 4: the first delivery, when it is due now, leased to the worker
-- that completed the dispatch, as a claim would lease it.
UPDATE jobs SET state = 'running', fence = fence + 1, attempts = attempts + 1,
       lease_owner = :owner, lease_until = :until, updated_at = :now
WHERE id = :job_id AND state = 'queued' AND next_at <= :now
RETURNING *
