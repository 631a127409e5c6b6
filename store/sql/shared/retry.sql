-- Requeues a transaction's failed, dead-lettered or waiting jobs (of one channel, or all when
-- :channel is NULL) to run now, except deliveries of a voided invoice. A delivery sent again
-- starts without evidence: what was reported of the earlier one stays in `evidence`.
UPDATE jobs SET state = 'queued', next_at = :now, attempts = 0, evidence = NULL, updated_at = :now
WHERE transaction_id = :transaction_id AND state IN ('failed', 'dead', 'queued')
  AND (CAST(:channel AS TEXT) IS NULL OR channel = :channel)
  AND (kind = 'cancel' OR NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.transaction_id = jobs.transaction_id AND d.stage = 'voided'))
