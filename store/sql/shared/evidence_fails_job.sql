-- A bounce or rejection reported after the delivery ended well: the delivery failed after all.
-- Only a delivered job changes, so the route's fallback that follows is queued once; or one
-- stopped because the sink's answer left its outcome unknown (dead with the sink's reference,
-- `evidence_settles_job.sql`): the sink had it and could not deliver it, so the fallback may run.
UPDATE jobs SET state = 'failed', last_error = :error, evidence = :state, updated_at = :now
WHERE id = :job_id AND (state = 'done' OR (state = 'dead' AND reference IS NOT NULL))
  -- A voided invoice is nobody's to receive: its bounce is recorded, nothing follows.
  AND NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.transaction_id = jobs.transaction_id
                  AND d.stage IN ('voiding', 'voided'))
