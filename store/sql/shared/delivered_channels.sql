-- Channels that delivered, or were delivering when the void came (their send may reach the
-- customer although its end can no longer be recorded): each gets a cancellation notice.
SELECT channel FROM jobs
WHERE transaction_id = :transaction_id AND kind = 'deliver' AND state IN ('done', 'running')
ORDER BY channel
