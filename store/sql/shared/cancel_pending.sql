-- Stops a voided transaction's pending jobs; bumping the fence refuses the late writes of a
-- worker that is mid-attempt.
UPDATE jobs SET state = 'cancelled', fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = :now
WHERE transaction_id = :transaction_id AND kind IN ('dispatch', 'deliver') AND state IN ('queued', 'running')
RETURNING id
