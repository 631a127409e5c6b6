-- Queues a stopped dispatch job again, as new, fencing out whoever held it.
UPDATE jobs SET state = 'queued', next_at = :now, attempts = 0, last_error = NULL, fence = fence + 1,
       lease_owner = NULL, lease_until = NULL, updated_at = :now
WHERE id = :job_id AND state IN ('failed', 'dead', 'skipped')
