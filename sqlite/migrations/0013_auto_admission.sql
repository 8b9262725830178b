-- Automatic admission (issue 15). A room admits at its rate ('rate'), or ('auto') at its rate
-- but never so that more buyers are shopping at once than the show's tiers have tickets left,
-- plus margin_percent of them: a buyer is shopping from their admission until they make a hold
-- or the admission runs out.
ALTER TABLE waitrooms ADD COLUMN admission TEXT NOT NULL DEFAULT 'rate' CHECK (admission IN ('rate', 'auto'));
ALTER TABLE waitrooms ADD COLUMN margin_percent INTEGER NOT NULL DEFAULT 0 CHECK (margin_percent >= 0);

-- The admitter counts the shoppers each tick: the entries admitted within the admission's
-- lifetime, newest first, each checked against holds_show_buyer.
CREATE INDEX queue_entries_admitted ON queue_entries (show_id, admitted_at) WHERE admitted_at > 0;
