-- Submit, 3 of 3: a dispatch skipped before is looked at again.
UPDATE jobs SET state = 'queued', next_at = :now, attempts = 0, updated_at = :now
WHERE id = :job_id AND state = 'skipped'
