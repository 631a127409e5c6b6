-- The delivery evidence is about, locked until the evidence is recorded: its state decides
-- whether a bounce fails it, and a worker finishing it meanwhile waits. Its dispatch is held
-- too, so that a void cannot start between the check of `shared/evidence_fails_job.sql` and the
-- fallback it queues.
SELECT j.state, j.outcome_unknown FROM jobs j JOIN dispatches d ON d.transaction_id = j.transaction_id
WHERE j.id = :job_id
FOR UPDATE OF j FOR SHARE OF d
