-- Records a void Dintero accepted with 202 and its `event-request-id`.
INSERT INTO dispatches (transaction_id, stage, void_request_id, created_at, updated_at)
VALUES (:transaction_id, 'voiding', :request_id, :now, :now)
ON CONFLICT (transaction_id) DO UPDATE SET void_request_id = excluded.void_request_id, updated_at = excluded.updated_at
