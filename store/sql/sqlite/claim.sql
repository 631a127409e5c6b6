-- Leases up to :limit due jobs (queued and due, or running with a lapsed lease) to :owner
-- until :until. Each branch walks its own index in due order and stops after :limit rows, so
-- a claim costs the same with ten or ten thousand jobs waiting. (PostgreSQL's takes the rows
-- with `FOR UPDATE SKIP LOCKED`, as several instances claim at once there.)
UPDATE jobs SET state = 'running', fence = fence + 1, attempts = attempts + 1,
       -- A delivery whose lease lapsed may have reached its sink before the attempt died.
       outcome_unknown = CASE WHEN state = 'running' AND kind = 'deliver' THEN 1 ELSE outcome_unknown END,
       lease_owner = :owner, lease_until = :until, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT id, due FROM (SELECT id, next_at AS due FROM jobs
                             WHERE state = 'queued' AND next_at <= :now ORDER BY next_at LIMIT :limit)
        UNION ALL
        SELECT id, due FROM (SELECT id, lease_until AS due FROM jobs
                             WHERE state = 'running' AND lease_until < :now ORDER BY lease_until LIMIT :limit))
    ORDER BY due LIMIT :limit)
RETURNING *
