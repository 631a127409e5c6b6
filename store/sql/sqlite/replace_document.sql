-- Complete a dispatch, 2 of 4: the PDF after the capture replaces the one kept before.
INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
VALUES (:transaction_id, :file_name, :sha256, :bytes, :now)
ON CONFLICT (transaction_id) DO UPDATE SET file_name = excluded.file_name, sha256 = excluded.sha256,
    bytes = excluded.bytes, fetched_at = excluded.fetched_at
