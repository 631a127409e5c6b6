-- Prune, 2 of 6: the PDF.
DELETE FROM documents WHERE transaction_id = :transaction_id
