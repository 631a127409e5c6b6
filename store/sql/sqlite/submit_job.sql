-- Submit, 2 of 3: the dispatch job, once.
INSERT INTO jobs (id, transaction_id, kind, state, next_at, created_at, updated_at)
VALUES (:job_id, :transaction_id, 'dispatch', 'queued', :now, :now, :now) ON CONFLICT (id) DO NOTHING
