-- The table of the schema's version, or NULL when there is none yet (`postbud check` reads it
-- without creating anything; SQLite keeps the version in `PRAGMA user_version`).
SELECT CAST(to_regclass('postbud_schema') AS TEXT)
