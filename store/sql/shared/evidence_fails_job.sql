-- A bounce or rejection reported after the delivery ended well: the delivery failed after all.
-- Only a delivered job changes, so the route's fallback that follows is queued once.
UPDATE jobs SET state = 'failed', last_error = :error, evidence = :state, updated_at = :now
WHERE id = :job_id AND state = 'done'
  -- A voided invoice is nobody's to receive: its bounce is recorded, nothing follows.
  AND NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.transaction_id = jobs.transaction_id
                  AND d.stage IN ('voiding', 'voided'))
