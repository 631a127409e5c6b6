-- Prune, 1 of 6: the dispatch keeps its PDF's SHA-256 (the one kept by an earlier prune when the
-- PDF is gone already) and drops the snapshot and the reason.
UPDATE dispatches SET pdf_sha256 = COALESCE((SELECT sha256 FROM documents WHERE transaction_id = :transaction_id), pdf_sha256),
       invoice = NULL, reason = NULL, pruned_at = :now
WHERE transaction_id = :transaction_id
