-- Evidence the sink gave about a delivery stopped because its answer left unknown whether it had
-- the invoice (`Finish::Unknown`: dead, the sink's reference kept): it had it, so the delivery is
-- done after all, the report its receipt. A dead delivery that keeps a reference is either such
-- a one, or one delivered and then sent again and stopped: in both, the sink's report of that
-- reference says the invoice reached it.
UPDATE jobs SET state = 'done', receipt = :receipt, updated_at = :now
WHERE id = :job_id AND state = 'dead' AND reference IS NOT NULL
