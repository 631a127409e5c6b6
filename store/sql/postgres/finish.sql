-- The end of an attempt and its history line in one statement: one round trip, one commit
-- (`{finished}`: `shared/finish.sql`, which SQLite runs alone).
WITH finished AS ({finished})
INSERT INTO history (transaction_id, job_id, at, event, detail)
SELECT transaction_id, id, :now, :event, :detail FROM finished
