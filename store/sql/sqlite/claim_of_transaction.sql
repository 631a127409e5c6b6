-- Leases up to :limit due jobs of the transaction :only to :owner until :until.
UPDATE jobs SET state = 'running', fence = fence + 1, attempts = attempts + 1,
       -- A delivery whose lease lapsed may have reached its sink before the attempt died.
       outcome_unknown = CASE WHEN state = 'running' AND kind = 'deliver' THEN 1 ELSE outcome_unknown END,
       lease_owner = :owner, lease_until = :until, updated_at = :now
WHERE id IN (
    SELECT id FROM jobs
    WHERE transaction_id = :only
      AND ((state = 'queued' AND next_at <= :now) OR (state = 'running' AND lease_until < :now))
    ORDER BY next_at LIMIT :limit)
RETURNING *
