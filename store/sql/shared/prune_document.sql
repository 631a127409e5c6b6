-- Prune, 2 of 5: the PDF.
DELETE FROM documents WHERE transaction_id = :transaction_id
