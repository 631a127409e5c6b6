-- Evidence about a delivery, unless the same event of it is recorded already (a provider's
-- retry, a replayed webhook, a mailbox read twice).
INSERT INTO evidence (job_id, event_id, transaction_id, state, reporter, reason, payload, reported_at, recorded_at)
VALUES (:job_id, :event_id, :transaction_id, :state, :reporter, :reason, :payload, :reported_at, :now)
ON CONFLICT (job_id, event_id) DO NOTHING
