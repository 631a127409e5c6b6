-- The server's clock, in milliseconds since the epoch: leases are judged by it, so each
-- instance corrects its own to it (SQLite has one host, and one clock).
SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)
