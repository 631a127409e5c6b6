-- The delivery of a channel instance whose sink gave it `reference` (a provider's message id,
-- a Message-ID): what evidence that names only the sink's id is about.
SELECT * FROM jobs WHERE reference = :reference AND channel = :channel AND kind = 'deliver'
ORDER BY created_at DESC LIMIT 1
