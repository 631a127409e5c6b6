-- Appends one history line.
INSERT INTO history (transaction_id, job_id, at, event, detail)
VALUES (:transaction_id, :job_id, :at, :event, :detail)
