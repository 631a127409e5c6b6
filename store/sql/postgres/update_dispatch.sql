-- The change of a dispatch record (`{updated}`: `shared/patch_dispatch.sql`), the PDF it keeps
-- and their history lines in one statement: one round trip, one commit (SQLite runs the three
-- in one write transaction).
WITH updated AS ({updated}),
kept AS (
    INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
    SELECT transaction_id, :file_name, :sha256, :bytes, :now FROM updated WHERE CAST(:bytes AS BYTEA) IS NOT NULL
    ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id),
noted AS (
    INSERT INTO history (transaction_id, job_id, at, event, detail)
    SELECT transaction_id, :job_id, :now, event, detail FROM (
        SELECT 0 AS part, transaction_id, 'pdf fetched' AS event, CAST(:pdf_note AS TEXT) AS detail FROM kept
        UNION ALL SELECT 1, transaction_id, CAST(:event AS TEXT), CAST(:detail AS TEXT)
                  FROM updated WHERE CAST(:event AS TEXT) IS NOT NULL) lines
    ORDER BY part)
SELECT COUNT(*) FROM updated
