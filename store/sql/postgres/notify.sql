-- Wakes every instance's idle workers (their `LISTEN postbud_jobs`).
SELECT pg_notify('postbud_jobs', '')
