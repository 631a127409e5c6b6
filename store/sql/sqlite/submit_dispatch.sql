-- Submit, 1 of 3 (SQLite runs them in one write transaction; PostgreSQL folds the three and
-- the history line into one statement): the dispatch record, once.
INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES (:transaction_id, 'new', :now, :now)
ON CONFLICT (transaction_id) DO NOTHING
