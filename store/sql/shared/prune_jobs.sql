-- Prune, 3 of 6: the receipts and errors of the jobs.
UPDATE jobs SET receipt = NULL, last_error = NULL WHERE transaction_id = :transaction_id
