-- Complete a dispatch, 3 of 4 (after the deliveries are inserted): the dispatch job is done.
UPDATE jobs SET state = 'done', receipt = :receipt, lease_owner = NULL, lease_until = NULL, updated_at = :now
WHERE id = :job_id AND fence = :fence AND state = 'running'
