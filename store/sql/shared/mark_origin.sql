-- Records how Postbud learnt of a transaction, unless its dispatch has gone past the decision.
INSERT INTO dispatches (transaction_id, stage, origin, created_at, updated_at)
VALUES (:transaction_id, 'new', :origin, :now, :now)
ON CONFLICT (transaction_id) DO UPDATE SET origin = excluded.origin
WHERE dispatches.stage IN ('new', 'skipped')
