-- Prune, 1 of 6: the dispatch keeps its PDF's SHA-256 (the one kept by an earlier prune when the
-- PDF is gone already) and drops the snapshot, the reason and the customer's email (the
-- merchant's reference stays, an id like the invoice number, for the console's search).
UPDATE dispatches SET pdf_sha256 = COALESCE((SELECT sha256 FROM documents WHERE transaction_id = :transaction_id), pdf_sha256),
       invoice = NULL, reason = NULL, customer_email = NULL, pruned_at = :now
WHERE transaction_id = :transaction_id
