-- The jobs of a page of dispatches in one query, not one per dispatch: `/metrics` reads every
-- page (SQLite's reads are local calls, one per dispatch: `shared/jobs.sql`).
SELECT * FROM jobs WHERE transaction_id = ANY(:transaction_ids)
ORDER BY CASE kind WHEN 'dispatch' THEN 0 WHEN 'deliver' THEN 1 ELSE 2 END, created_at, channel
