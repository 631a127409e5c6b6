-- Channels that delivered, were delivering when the void came, or may have delivered unknown
-- to Postbud (`outcome_unknown`: stopped, or waiting to retry, after an answer that was lost):
-- their send may reach the customer, so each gets a cancellation notice.
SELECT channel FROM jobs
WHERE transaction_id = :transaction_id AND kind = 'deliver'
  AND (state IN ('done', 'running') OR outcome_unknown = 1)
ORDER BY channel
