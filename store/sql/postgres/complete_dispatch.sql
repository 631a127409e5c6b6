-- A dispatch completed in one statement, so one round trip and one commit (SQLite runs
-- `sqlite/route.sql` … `sqlite/lease_first.sql` in one write transaction): the capture's record
-- after it, the snapshot and the route, the PDF, the deliveries with their history lines
-- (after the capture's and before the dispatch's own, as SQLite writes them), the dispatch job
-- done, and one wake-up for the new jobs. The deliveries come as parallel arrays; the first,
-- when due now and :lease_until is given, is leased to :owner at once.
WITH routed AS (
    UPDATE dispatches SET invoice = :invoice, invoice_number = :invoice_number, stage = 'routed', route = :route,
           merchant_reference = :merchant_reference, customer_email = :customer_email,
           reason = NULL, updated_at = :now, route_snapshot = :route_snapshot,
           captured_at = COALESCE(:captured_at, captured_at),
           capture_request_id = CASE WHEN CAST(:captured_at AS BIGINT) IS NULL THEN capture_request_id END
    WHERE transaction_id = :transaction_id
      AND EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND fence = :fence AND state = 'running')
    RETURNING transaction_id),
kept AS (
    INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
    SELECT transaction_id, :file_name, :sha256, :bytes, :now FROM routed
    ON CONFLICT (transaction_id) DO UPDATE SET file_name = excluded.file_name, sha256 = excluded.sha256,
        bytes = excluded.bytes, fetched_at = excluded.fetched_at),
done AS (
    UPDATE jobs SET state = 'done', receipt = :receipt, lease_owner = NULL, lease_until = NULL, updated_at = :now
    WHERE id = :job_id AND fence = :fence AND state = 'running' AND EXISTS (SELECT 1 FROM routed)),
planned AS (
    SELECT * FROM unnest(CAST(:job_ids AS TEXT[]), CAST(:kinds AS TEXT[]), CAST(:channels AS TEXT[]),
                         CAST(:roles AS TEXT[]), CAST(:due AS BIGINT[]), CAST(:queued_lines AS TEXT[]))
        WITH ORDINALITY AS j(id, kind, channel, role, next_at, detail, n)),
queued AS (
    INSERT INTO jobs (id, transaction_id, kind, channel, role, state, next_at, created_at, updated_at,
                      fence, attempts, lease_owner, lease_until)
    SELECT p.id, r.transaction_id, p.kind, p.channel, p.role,
           CASE WHEN leased THEN 'running' ELSE 'queued' END, p.next_at, :now, :now,
           CASE WHEN leased THEN 1 ELSE 0 END, CASE WHEN leased THEN 1 ELSE 0 END,
           CASE WHEN leased THEN :owner END, CASE WHEN leased THEN CAST(:lease_until AS BIGINT) END
    FROM routed r, planned p,
         LATERAL (SELECT p.n = 1 AND CAST(:lease_until AS BIGINT) IS NOT NULL AND p.next_at <= :now AS leased) l
    ORDER BY p.n
    ON CONFLICT (id) DO NOTHING RETURNING *),
noted AS (
    INSERT INTO history (transaction_id, job_id, at, event, detail)
    SELECT transaction_id, job_id, :now, event, detail FROM (
        SELECT -1 AS part, CAST(0 AS BIGINT) AS n, transaction_id, :job_id AS job_id, 'captured' AS event,
               CAST(:captured_line AS TEXT) AS detail
            FROM routed WHERE CAST(:captured_line AS TEXT) IS NOT NULL
        UNION ALL SELECT 0, p.n, :transaction_id AS transaction_id, p.id AS job_id, 'queued' AS event, p.detail
            FROM queued q JOIN planned p ON p.id = q.id
        UNION ALL SELECT 1, 0, transaction_id, :job_id, 'done', :done_line FROM routed) lines
    ORDER BY part, n)
SELECT (SELECT COUNT(*) FROM routed) AS routed_count,
       (SELECT COUNT(*) FROM (SELECT pg_notify('postbud_jobs', '') FROM queued WHERE state = 'queued' LIMIT 1) woken) AS woken,
       next.*
FROM (SELECT 1) one LEFT JOIN (SELECT * FROM queued WHERE state = 'running') next ON true
