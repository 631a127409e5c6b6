-- Marks a dispatch voided (recording it if Postbud never saw it).
INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES (:transaction_id, 'voided', :now, :now)
ON CONFLICT (transaction_id) DO UPDATE SET stage = 'voided', updated_at = excluded.updated_at
