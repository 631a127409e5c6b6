-- The dispatches `prune` anonymises: no change to them or their jobs since :before and no job
-- queued or running. Data written again after a prune (a retried dispatch stores its snapshot
-- anew, a bounce reported late keeps what its reporter said) is pruned again.
SELECT transaction_id FROM dispatches d
WHERE d.updated_at < :before
  AND (d.pruned_at IS NULL OR d.invoice IS NOT NULL
       OR EXISTS (SELECT 1 FROM documents doc WHERE doc.transaction_id = d.transaction_id)
       OR EXISTS (SELECT 1 FROM evidence e WHERE e.transaction_id = d.transaction_id
                  AND (e.payload IS NOT NULL OR e.reason <> '')))
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id
                  AND (j.state IN ('queued', 'running') OR j.updated_at >= :before))
