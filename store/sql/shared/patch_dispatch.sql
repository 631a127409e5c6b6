-- Changes the dispatch record under the dispatch job's lease; a field's value NULL leaves it
-- as it is, except the three that say with a flag whether to set them (to NULL, too).
UPDATE dispatches SET
    stage = COALESCE(:stage, stage),
    reason = CASE WHEN CAST(:set_reason AS BOOLEAN) THEN :reason ELSE reason END,
    capture_reference = CASE WHEN CAST(:set_capture_reference AS BOOLEAN) THEN :capture_reference ELSE capture_reference END,
    capture_request_id = CASE WHEN CAST(:set_capture_request_id AS BOOLEAN) THEN :capture_request_id ELSE capture_request_id END,
    captured_at = COALESCE(:captured_at, captured_at),
    invoice_number = COALESCE(:invoice_number, invoice_number),
    route = COALESCE(:route, route),
    updated_at = :now
WHERE transaction_id = :transaction_id
  AND EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND fence = :fence AND state = 'running')
RETURNING transaction_id
