-- The PDF kept for a transaction.
SELECT file_name, sha256, bytes FROM documents WHERE transaction_id = :transaction_id
