-- The version of the schema: how many migrations were applied.
SELECT version FROM postbud_schema
