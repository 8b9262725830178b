-- A webhook endpoint subscribed to ["*"] was stored as the list of the event types there were
-- then, so it would never get a type added later. From now on ["*"] is stored as it is; this turns
-- the rows written the old way back into ["*"]: every row that lists exactly the six types of
-- that version (six elements containing all six). An endpoint that named all six itself cannot
-- be told apart from those; it is taken as subscribed to all, as a partner that asked for
-- everything there is would expect.
UPDATE webhook_endpoints SET event_types = ARRAY['*']
WHERE cardinality(event_types) = 6
  AND event_types @> ARRAY['hold.created', 'hold.released', 'hold.expired',
                           'order.confirmed', 'order.payment_failed', 'order.cancelled']::text[];
