-- Migrations, 3 of 4: a database without a version starts at 0.
INSERT INTO postbud_schema (version) VALUES (0)
