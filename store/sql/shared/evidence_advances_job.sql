-- The furthest state reported of a delivery: a late `delayed` never takes back a `delivered`,
-- and nothing takes back a bounce or a rejection (rank 5).
UPDATE jobs SET evidence = :state, updated_at = :now
WHERE id = :job_id AND (evidence IS NULL OR :rank > CASE evidence
    WHEN 'accepted' THEN 1 WHEN 'delayed' THEN 2 WHEN 'delivered' THEN 3 WHEN 'opened' THEN 4
    ELSE 5 END)
