-- The dispatches `status` lists, newest first, a page at a time: of a channel, created in a
-- window, after the page's last `(created_at, transaction_id)`; each filter NULL when not
-- asked for. `{source}` is where they are read from: every dispatch (`dispatches d WHERE`) or,
-- for a troubled listing, those with a failed or dead job, read from that index first
-- (`sql::troubled`; the `CROSS JOIN` keeps SQLite's planner there) rather than walking every
-- dispatch for the few that have one.
SELECT d.* FROM {source}
    (CAST(:channel AS TEXT) IS NULL
     OR EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.channel = :channel))
AND (CAST(:created_from AS BIGINT) IS NULL OR d.created_at >= :created_from)
AND (CAST(:created_before AS BIGINT) IS NULL OR d.created_at < :created_before)
AND (CAST(:after_at AS BIGINT) IS NULL OR (d.created_at, d.transaction_id) < (:after_at, :after_id))
ORDER BY d.created_at DESC, d.transaction_id DESC LIMIT :limit
