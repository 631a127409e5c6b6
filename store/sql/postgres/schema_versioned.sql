-- Migrations, 2 of 4: the table of the schema's version.
CREATE TABLE IF NOT EXISTS postbud_schema (version BIGINT NOT NULL)
