-- The end of an attempt, its history line and the next claim in one statement: one round trip,
-- one commit. The claim (`{claimed}`, narrowed to run only if the end is written) never picks
-- the job just finished: one statement must not change a row twice.
WITH finished AS ({finished}),
noted AS (
    INSERT INTO history (transaction_id, job_id, at, event, detail)
    SELECT transaction_id, id, :now, :event, :detail FROM finished),
{claimed}
SELECT (SELECT COUNT(*) FROM finished) AS finished_count, claimed.*, {dispatch}
FROM (SELECT 1) one LEFT JOIN claimed ON true
     LEFT JOIN dispatches d ON d.transaction_id = claimed.transaction_id AND claimed.kind = 'dispatch'
