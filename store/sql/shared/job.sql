-- One job.
SELECT * FROM jobs WHERE id = :id
