-- A bounce or rejection reported after the delivery ended well: the delivery failed after all.
-- Only a delivered job changes, so the route's fallback that follows is queued once; or one
-- whose last attempt may have reached the sink unknown to Postbud (`outcome_unknown`, see
-- `evidence_settles_job.sql`): the sink had it and could not deliver it, so the fallback may run.
UPDATE jobs SET state = 'failed', last_error = :error, evidence = :state, outcome_unknown = 0,
       updated_at = :now
WHERE id = :job_id
  AND (state = 'done' OR (kind = 'deliver' AND state IN ('queued', 'dead') AND outcome_unknown = 1))
  -- A voided invoice is nobody's to receive: its bounce is recorded, nothing follows.
  AND NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.transaction_id = jobs.transaction_id
                  AND d.stage IN ('voiding', 'voided'))
