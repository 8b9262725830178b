-- Sales channels and key life cycle, the twin of sqlite/migrations/0005_channels.sql. A hold and
-- an order record the API key that made them; rows from before this migration get '' (no
-- channel), which only the admin sees: nobody can say which channel made them, and showing them
-- to every channel would leak one channel's buyers to the others.
ALTER TABLE holds ADD COLUMN api_key_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN api_key_id text COLLATE "C" NOT NULL DEFAULT '';

-- A channel's list of orders, all of them or of one show, by id without a sort.
CREATE INDEX orders_api_key_id ON orders (api_key_id, id);
CREATE INDEX orders_api_key_show_id ON orders (api_key_id, show_id, id);

-- Keys get a label, a lazily written last use and a revocation time (NULL: never used, live):
-- a revoked key's row stays, so its holds and orders keep a known owner.
ALTER TABLE api_keys ADD COLUMN label text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
ALTER TABLE api_keys ADD COLUMN revoked_at timestamptz;

-- A rotated webhook secret keeps signing beside the new one until it expires (NULL: none).
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret text NOT NULL DEFAULT '';
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at timestamptz;
