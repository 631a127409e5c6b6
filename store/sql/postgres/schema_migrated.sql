-- Migrations, 4 of 4: the version after the migrations applied.
UPDATE postbud_schema SET version = :version
