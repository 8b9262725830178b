-- A webhook endpoint subscribed to ["*"] was stored as the list of the event types there were
-- then, so it would never get a type added later. From now on ["*"] is stored as it is; this turns
-- the rows written the old way back into ["*"]: every row that lists exactly the six types of
-- that version. An endpoint that named all six itself cannot be told apart from those; it is
-- taken as subscribed to all, as a partner that asked for everything there is would expect.
-- (Numbered 0009 as on PostgreSQL, whose 0008 this store has no counterpart of.)
UPDATE webhook_endpoints SET event_types = '["*"]'
WHERE json_valid(event_types)
  AND json_array_length(event_types) = 6
  AND (SELECT COUNT(DISTINCT value) FROM json_each(webhook_endpoints.event_types)
       WHERE value IN ('hold.created', 'hold.released', 'hold.expired',
                       'order.confirmed', 'order.payment_failed', 'order.cancelled')) = 6;
