-- Prune, 1 of 6: the dispatch keeps its PDF's SHA-256 and drops the snapshot and the reason.
UPDATE dispatches SET pdf_sha256 = (SELECT sha256 FROM documents WHERE transaction_id = :transaction_id),
       invoice = NULL, reason = NULL, pruned_at = :now
WHERE transaction_id = :transaction_id
