-- Requeues a transaction's failed, dead-lettered or waiting jobs (of one channel, or all when
-- :channel is NULL) to run now, except deliveries of a voided invoice. A delivery sent again
-- starts without evidence: what was reported of the earlier one stays in `evidence`. One that
-- failed for good with a definite answer (not one whose sink may have it: `outcome_unknown`) is
-- a new send: `resends` counts it, so that a sink's idempotency key the failed send used is not
-- used again, and it starts without that send's receipt and reference.
UPDATE jobs SET state = 'queued', next_at = :now, attempts = 0, evidence = NULL,
       resends = resends + CASE WHEN state IN ('failed', 'dead') AND outcome_unknown = 0 THEN 1 ELSE 0 END,
       receipt = CASE WHEN state IN ('failed', 'dead') AND outcome_unknown = 0 THEN NULL ELSE receipt END,
       reference = CASE WHEN state IN ('failed', 'dead') AND outcome_unknown = 0 THEN NULL ELSE reference END,
       updated_at = :now
WHERE transaction_id = :transaction_id AND state IN ('failed', 'dead', 'queued')
  AND (CAST(:channel AS TEXT) IS NULL OR channel = :channel)
  AND (kind = 'cancel' OR NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.transaction_id = jobs.transaction_id AND d.stage = 'voided'))
