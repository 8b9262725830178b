-- Sales channels and key life cycle. A hold and an order record the API key that made them;
-- rows from before this migration get '' (no channel), which only the admin sees: nobody can say
-- which channel made them, and showing them to every channel would leak one channel's buyers to
-- the others.
ALTER TABLE holds ADD COLUMN api_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN api_key_id TEXT NOT NULL DEFAULT '';

-- A channel's list of orders, all of them or of one show, by id without a sort.
CREATE INDEX orders_api_key_id ON orders (api_key_id, id);
CREATE INDEX orders_api_key_show_id ON orders (api_key_id, show_id, id);

-- Keys get a label, a lazily written last use, and a revocation time (0 = live): a revoked key's
-- row stays, so its holds and orders keep a known owner.
ALTER TABLE api_keys ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;

-- A rotated webhook secret keeps signing beside the new one until it expires (0 = none).
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at INTEGER NOT NULL DEFAULT 0;
