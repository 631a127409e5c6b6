-- Adopts a capture made elsewhere: only a dispatch the engine stopped for that reason (its
-- reason begins with `COLLECTION_STARTED_ELSEWHERE`, checked by a test) is adopted.
UPDATE dispatches SET captured_at = :now, stage = 'captured', reason = NULL, updated_at = :now
WHERE transaction_id = :transaction_id AND stage = 'failed' AND captured_at IS NULL
  AND reason LIKE 'collection was started elsewhere%'
