-- The audit log, newest first, a page at a time: the entries before :before (every one when
-- NULL), :skip + 1 of them and the others of the last one's millisecond, so that the next page,
-- read before that millisecond, misses none (`audit_at`; the subquery finds where the page ends).
SELECT at, user_name, action, target, result FROM audit
WHERE (CAST(:before AS BIGINT) IS NULL OR at < :before)
  AND at >= COALESCE((SELECT a.at FROM audit a WHERE (CAST(:before AS BIGINT) IS NULL OR a.at < :before)
                      ORDER BY a.at DESC LIMIT 1 OFFSET :skip), -9223372036854775807)
ORDER BY at DESC, id DESC
