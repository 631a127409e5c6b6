-- One job, unless it exists (its history line follows when it was inserted; PostgreSQL writes
-- both and the wake-up in one statement).
INSERT INTO jobs (id, transaction_id, kind, channel, role, state, next_at, created_at, updated_at)
VALUES (:id, :transaction_id, :kind, :channel, :role, 'queued', :next_at, :now, :now)
ON CONFLICT (id) DO NOTHING
