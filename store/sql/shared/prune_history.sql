-- Prune, 4 of 6: the details of the history.
UPDATE history SET detail = '' WHERE transaction_id = :transaction_id
