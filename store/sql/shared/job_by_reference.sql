-- The deliveries of a channel instance whose sink gave them `reference` (a provider's message
-- id, a Message-ID): what evidence that names only the sink's id is about. Two at most: a
-- reference two deliveries share names neither.
SELECT * FROM jobs WHERE reference = :reference AND channel = :channel AND kind = 'deliver'
LIMIT 2
