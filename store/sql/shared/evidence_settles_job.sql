-- A report that the sink has a delivery whose last attempt may have reached it unknown to
-- Postbud (`outcome_unknown`: stopped for a person by `Finish::Unknown`, or waiting to retry after
-- an answer that was lost): it has it, so the delivery is done, the report its receipt, and a
-- retry it waited for is not made. Only for reports short of a failure (the caller's choice).
UPDATE jobs SET state = 'done', receipt = :receipt, last_error = NULL, outcome_unknown = 0,
       updated_at = :now
WHERE id = :job_id AND kind = 'deliver' AND state IN ('queued', 'dead') AND outcome_unknown = 1
