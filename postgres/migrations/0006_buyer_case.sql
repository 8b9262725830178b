-- max_per_buyer counts a buyer's tickets by address with ASCII letters in lower case
-- (boxoffice.BuyerKey): buyer@x and BUYER@X are one buyer. Under the "C" collation lower()
-- folds ASCII only, as BuyerKey does.
DROP INDEX holds_show_buyer;
CREATE INDEX holds_show_buyer ON holds (show_id, lower(buyer_email COLLATE "C"));
