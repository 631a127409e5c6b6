-- The sink's id an attempt is about to send under, kept before the request goes out, if the
-- lease is still held: a report that outruns the attempt's end, or follows its worker's death,
-- finds the delivery by it (`job_by_reference`).
UPDATE jobs SET reference = :reference WHERE id = :job_id AND fence = :fence AND state = 'running'
