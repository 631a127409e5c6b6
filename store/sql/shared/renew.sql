-- Extends a lease, if it is still held.
UPDATE jobs SET lease_until = :until WHERE id = :job_id AND fence = :fence AND state = 'running'
