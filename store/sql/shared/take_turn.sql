-- Takes the turn :name for :owner until :until, unless another holds it past :now.
INSERT INTO turns (name, owner, until) VALUES (:name, :owner, :until)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
WHERE turns.until <= :now
