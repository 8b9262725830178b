package sale_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/sale"
)

// orderEvents returns the payloads of the order events of type typ, in commit order.
func orderEvents(t *testing.T, e *env, typ string) []boxoffice.OrderEvent {
	t.Helper()
	evs, _, err := e.svc.ListEvents(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []boxoffice.OrderEvent
	for _, ev := range evs {
		if ev.Type != typ {
			continue
		}
		var o boxoffice.OrderEvent
		if err := json.Unmarshal(ev.Data, &o); err != nil {
			t.Fatalf("%s %s: %v\n%s", ev.Type, ev.ID, err, ev.Data)
		}
		out = append(out, o)
	}
	return out
}

// TestOrderEventsNameTheShow: order.confirmed (by a purchase and by a confirmed hold) and
// order.cancelled carry the order and the show's name and start and the tier's name as they were
// when the event was committed, which is all the receipt is rendered from: a show renamed later
// changes the next event, never one committed before.
func TestOrderEventsNameTheShow(t *testing.T) {
	e := newEnv(t, nil)
	starts := time.Date(2027, 5, 1, 19, 30, 0, 0, time.UTC)
	e.show("s", 10, func(in *sale.ShowInput) {
		in.Name, in.StartsAt = "Hamlet", &starts
		in.Tiers[0].Name = "Stalls"
	})
	res, _, err := e.purchase("p1", "s", 2, "tok_ok")
	want(t, res, err, 201, "")
	bought := decode[boxoffice.Order](t, res)
	hres, _, err := e.hold("h1", "s", 1, "holder@example.com")
	want(t, hres, err, 201, "")
	cres, _, err := e.confirm("c1", decode[boxoffice.Hold](t, hres).ID, "tok_ok")
	want(t, cres, err, 201, "")
	confirmed := decode[boxoffice.Order](t, cres)

	got := orderEvents(t, e, boxoffice.EventOrderConfirmed)
	if len(got) != 2 {
		t.Fatalf("%d order.confirmed events, want 2", len(got))
	}
	for i, o := range []boxoffice.Order{bought, confirmed} {
		ev := got[i]
		if ev.ID != o.ID || ev.Status != boxoffice.OrderConfirmed || len(o.Tickets) == 0 ||
			!slices.Equal(ev.Tickets, o.Tickets) || ev.Buyer != o.Buyer || ev.Amount != o.Amount {
			t.Errorf("event %d is not the order it tells of: %+v, order %+v", i, ev.Order, o)
		}
		if ev.ShowName != "Hamlet" || !ev.ShowStartsAt.Equal(starts) || ev.TierName != "Stalls" {
			t.Errorf("event of %s names show %q at %v, tier %q; want Hamlet at %v, Stalls",
				o.ID, ev.ShowName, ev.ShowStartsAt, ev.TierName, starts)
		}
	}

	// The show moves and is renamed; the cancellation tells of the show as it is now.
	later := starts.Add(24 * time.Hour)
	e.show("s", 10, func(in *sale.ShowInput) {
		in.Name, in.StartsAt = "Hamlet (moved)", &later
		in.Tiers[0].Name = "Stalls"
	})
	res, _, err = e.svc.CancelOrder(context.Background(), boxoffice.AdminPrincipal, idem("cancel", "x1", nil), bought.ID)
	want(t, res, err, 200, "")
	cancelled := orderEvents(t, e, boxoffice.EventOrderCancelled)
	if len(cancelled) != 1 || cancelled[0].ID != bought.ID || cancelled[0].Status != boxoffice.OrderCancelled ||
		!slices.Equal(cancelled[0].Tickets, bought.Tickets) {
		t.Fatalf("order.cancelled events %+v; want one of %s with its tickets", cancelled, bought.ID)
	}
	if c := cancelled[0]; c.ShowName != "Hamlet (moved)" || !c.ShowStartsAt.Equal(later) || c.TierName != "Stalls" {
		t.Errorf("cancellation names show %q at %v, tier %q; want the show as it is now", c.ShowName, c.ShowStartsAt, c.TierName)
	}
	if again := orderEvents(t, e, boxoffice.EventOrderConfirmed); again[0].ShowName != "Hamlet" {
		t.Errorf("a committed event changed with the show: %+v", again[0])
	}
}
