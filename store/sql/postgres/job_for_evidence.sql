-- The delivery evidence is about, locked until the evidence is recorded: its state decides
-- whether a bounce fails it, and a worker finishing it meanwhile waits.
SELECT state FROM jobs WHERE id = :job_id FOR UPDATE
