-- Prune, 6 of 6: the history says so.
INSERT INTO history (transaction_id, job_id, at, event, detail)
VALUES (:transaction_id, NULL, :now, 'pruned',
        'PDF and personal data deleted (store.retain); ids, states, dates and the PDF''s SHA-256 kept')
