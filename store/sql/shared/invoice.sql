-- The invoice snapshot (JSON) kept for a transaction; its PDF is in `documents`.
SELECT invoice FROM dispatches WHERE transaction_id = :transaction_id
