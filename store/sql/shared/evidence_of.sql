-- The evidence recorded about a transaction's deliveries, in the order it arrived.
SELECT job_id, event_id, state, reporter, reason, payload, reported_at, recorded_at
FROM evidence WHERE transaction_id = :transaction_id ORDER BY recorded_at, job_id, event_id
