-- Every job of a transaction, dispatch first.
SELECT * FROM jobs WHERE transaction_id = :transaction_id
ORDER BY CASE kind WHEN 'dispatch' THEN 0 WHEN 'deliver' THEN 1 ELSE 2 END, created_at, channel
