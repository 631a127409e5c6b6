-- The dispatch record of a transaction.
SELECT * FROM dispatches WHERE transaction_id = :transaction_id
