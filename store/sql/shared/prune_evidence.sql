-- Prune, 5 of 6: what reporters said of the deliveries (addresses, numbers, raw events).
UPDATE evidence SET payload = NULL, reason = '' WHERE transaction_id = :transaction_id
