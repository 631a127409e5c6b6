-- A claim with each dispatch job's record, read in the same statement (`{claimed}`:
-- `postgres/claimed.sql`; `{dispatch}`: the dispatch's columns, each named `dispatch_<column>`).
WITH {claimed}
SELECT claimed.*, {dispatch}
FROM claimed LEFT JOIN dispatches d ON d.transaction_id = claimed.transaction_id AND claimed.kind = 'dispatch'
