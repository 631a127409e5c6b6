-- Complete a dispatch, 1 of 4 (SQLite runs them in one write transaction; PostgreSQL folds
-- them into one statement, `postgres/complete_dispatch.sql`): the snapshot and the route, under
-- the lease.
UPDATE dispatches SET invoice = :invoice, invoice_number = :invoice_number, stage = 'routed', route = :route,
       merchant_reference = :merchant_reference, customer_email = :customer_email,
       route_snapshot = :route_snapshot, reason = NULL, updated_at = :now
WHERE transaction_id = :transaction_id
  AND EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND fence = :fence AND state = 'running')
