-- One row while the lease on :job_id under :fence is held.
SELECT CAST(1 AS BIGINT) FROM jobs WHERE id = :job_id AND fence = :fence AND state = 'running'
