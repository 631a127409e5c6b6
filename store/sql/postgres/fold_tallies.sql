-- Moves the tallies of server processes gone into stripe 0 (PostgreSQL only: SQLite has one
-- writer and one stripe). Folds run concurrently safely: a row another fold took is gone when
-- this one comes to it.
WITH folded AS (
    DELETE FROM tallies WHERE stripe <> 0 AND stripe NOT IN (SELECT pid FROM pg_stat_activity)
    RETURNING name, count)
INSERT INTO tallies (name, stripe, count)
SELECT name, 0, SUM(count) FROM folded GROUP BY name ORDER BY name
ON CONFLICT (name, stripe) DO UPDATE SET count = tallies.count + excluded.count
