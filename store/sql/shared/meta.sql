-- A persistent value.
SELECT value FROM meta WHERE key = :key
