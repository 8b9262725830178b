package sale

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"boxoffice"
)

// LedgerCharge is one charge as the payment provider's ledger has it, for Verify to hold the orders
// against: the provider is the other witness of "never charge twice".
type LedgerCharge struct {
	Key       string // the idempotency key the charge was made with
	ChargeID  string
	Succeeded bool
	Refunded  bool
}

type tierKey struct{ show, tier string }

// Verify audits a store against the guarantees: for every tier held and sold equal what the holds
// and orders say and held+sold <= capacity; every hold has at most one live order and a confirmed
// hold exactly one paid order; no idempotency key produced two effects; and, given the provider's
// ledger, every paid order was charged exactly once and every charge belongs to a paid order. It
// returns one line per violation, none when all hold.
func Verify(ctx context.Context, store boxoffice.Store, ledger []LedgerCharge) ([]string, error) {
	var bad []string
	report := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	counts := map[tierKey]boxoffice.TierCounts{}
	held := map[tierKey]int{}
	sold := map[tierKey]int{}
	holds := map[string]*boxoffice.Hold{}
	liveOrders := map[string][]string{} // hold id → pending/confirmed orders
	paidOrders := map[string][]string{} // hold id → confirmed/cancelled orders
	orders := map[string]*boxoffice.Order{}
	seatsOf := map[tierKey][]boxoffice.Seat{} // the seats of seated tiers
	err := store.View(ctx, func(tx boxoffice.Tx) error {
		if err := tx.ForEachTier(ctx, func(c boxoffice.TierCounts) error {
			counts[tierKey{c.ShowID, c.TierID}] = c
			return nil
		}); err != nil {
			return err
		}
		if err := tx.ForEachHold(ctx, func(h *boxoffice.Hold) error {
			holds[h.ID] = h
			if h.Status == boxoffice.HoldActive {
				held[tierKey{h.ShowID, h.TierID}] += h.Quantity
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.ForEachOrder(ctx, func(o *boxoffice.Order) error {
			orders[o.ID] = &boxoffice.Order{ID: o.ID, Status: o.Status, HoldID: o.HoldID, ChargeID: o.ChargeID, RefundID: o.RefundID}
			switch o.Status {
			case boxoffice.OrderConfirmed:
				sold[tierKey{o.ShowID, o.TierID}] += o.Quantity
				liveOrders[o.HoldID] = append(liveOrders[o.HoldID], o.ID)
				paidOrders[o.HoldID] = append(paidOrders[o.HoldID], o.ID)
			case boxoffice.OrderPendingPayment:
				liveOrders[o.HoldID] = append(liveOrders[o.HoldID], o.ID)
			case boxoffice.OrderCancelled:
				paidOrders[o.HoldID] = append(paidOrders[o.HoldID], o.ID)
			}
			if (o.Status == boxoffice.OrderConfirmed || o.Status == boxoffice.OrderCancelled) && o.ChargeID == "" {
				report("order %s is %s but has no charge", o.ID, o.Status)
			}
			if o.Status == boxoffice.OrderCancelled && o.RefundID == "" {
				report("order %s is cancelled but was not refunded", o.ID)
			}
			if _, ok := holds[o.HoldID]; !ok {
				report("order %s refers to hold %s, which does not exist", o.ID, o.HoldID)
			}
			return nil
		}); err != nil {
			return err
		}
		shows := map[string]bool{}
		for k := range counts {
			if !shows[k.show] {
				shows[k.show] = true
				seats, err := tx.Seats(ctx, k.show, "")
				if err != nil {
					return err
				}
				for _, st := range seats {
					seatsOf[tierKey{k.show, st.TierID}] = append(seatsOf[tierKey{k.show, st.TierID}], st)
				}
			}
		}
		effects := map[string]string{} // hold or order id → the record that made it
		return tx.ForEachIdemRecord(ctx, func(r *boxoffice.IdemRecord) error {
			for _, id := range []string{r.HoldID, r.OrderID} {
				if id == "" {
					continue
				}
				if other, ok := effects[id]; ok {
					report("%s was made by two idempotency records, %s and %s", id, other, r.ID)
				}
				effects[id] = r.ID
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	keys := make([]tierKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].show+"/"+keys[i].tier < keys[j].show+"/"+keys[j].tier })
	for _, k := range keys {
		c := counts[k]
		name := k.show + "/" + k.tier
		if c.Held < 0 || c.Sold < 0 {
			report("tier %s has negative counts: held=%d sold=%d", name, c.Held, c.Sold)
		}
		if c.Held+c.Sold > c.Capacity {
			report("tier %s is oversold: held %d + sold %d > capacity %d", name, c.Held, c.Sold, c.Capacity)
		}
		if c.Held != held[k] {
			report("tier %s says held=%d but its active holds hold %d", name, c.Held, held[k])
		}
		if c.Sold != sold[k] {
			report("tier %s says sold=%d but its confirmed orders have %d", name, c.Sold, sold[k])
		}
	}
	for k := range held {
		if _, ok := counts[k]; !ok {
			report("active holds of %s/%s refer to a tier that does not exist", k.show, k.tier)
		}
	}
	for id, h := range holds {
		if n := len(liveOrders[id]); n > 1 {
			report("hold %s has %d live orders: %s", id, n, strings.Join(liveOrders[id], ", "))
		}
		if h.Status == boxoffice.HoldConfirmed && len(paidOrders[id]) != 1 {
			report("hold %s is confirmed but has %d paid orders", id, len(paidOrders[id]))
		}
		if h.Status != boxoffice.HoldConfirmed && len(paidOrders[id]) > 0 {
			report("hold %s is %s but has a paid order", id, h.Status)
		}
	}
	verifySeats(seatsOf, counts, holds, paidOrders, orders, report)
	if ledger != nil {
		verifyLedger(orders, ledger, report)
	}
	return bad, nil
}

// verifySeats checks the seats of seated tiers against their holds: a seat is given only to an
// active hold or to a confirmed one whose order stands (a released, expired or cancelled one
// gave its seats back), every such hold of a seated tier has exactly its quantity of seats, and
// so the tier's held and sold are its held and sold seats. (That no seat is held twice needs no
// check: a seat row names one hold.)
func verifySeats(seatsOf map[tierKey][]boxoffice.Seat, counts map[tierKey]boxoffice.TierCounts, holds map[string]*boxoffice.Hold,
	paidOrders map[string][]string, orders map[string]*boxoffice.Order, report func(string, ...any)) {
	standing := func(h *boxoffice.Hold) bool {
		switch h.Status {
		case boxoffice.HoldActive:
			return true
		case boxoffice.HoldConfirmed:
			paid := paidOrders[h.ID]
			return len(paid) == 1 && orders[paid[0]].Status == boxoffice.OrderConfirmed
		}
		return false
	}
	byTier := map[tierKey][]*boxoffice.Hold{}
	for _, h := range holds {
		if k := (tierKey{h.ShowID, h.TierID}); seatsOf[k] != nil && standing(h) {
			byTier[k] = append(byTier[k], h)
		}
	}
	for k, seats := range seatsOf {
		name := k.show + "/" + k.tier
		perHold := map[string]int{}
		var held, sold int
		for _, st := range seats {
			if st.HoldID == "" {
				continue
			}
			h := holds[st.HoldID]
			switch {
			case h == nil:
				report("seat %s of %s is given to hold %s, which does not exist", st.ID, name, st.HoldID)
			case !standing(h):
				report("seat %s of %s is still given to hold %s, which is %s", st.ID, name, h.ID, h.Status)
			case h.ShowID != k.show || h.TierID != k.tier:
				report("seat %s of %s is given to hold %s of %s/%s", st.ID, name, h.ID, h.ShowID, h.TierID)
			case h.Status == boxoffice.HoldActive:
				held++
			default:
				sold++
			}
			perHold[st.HoldID]++
		}
		if c := counts[k]; c.Held != held || c.Sold != sold {
			report("tier %s says held=%d sold=%d but its seats are %d held and %d sold", name, c.Held, c.Sold, held, sold)
		}
		if c := counts[k]; c.Capacity != len(seats) {
			report("seated tier %s has capacity %d but %d seats", name, c.Capacity, len(seats))
		}
		for _, h := range byTier[k] {
			if perHold[h.ID] != h.Quantity {
				report("hold %s of seated tier %s has %d seats for %d tickets", h.ID, name, perHold[h.ID], h.Quantity)
			}
		}
	}
}

func verifyLedger(orders map[string]*boxoffice.Order, ledger []LedgerCharge, report func(string, ...any)) {
	charged := map[string]int{}
	for _, c := range ledger {
		if !c.Succeeded {
			continue
		}
		orderID, ok := strings.CutSuffix(c.Key, "/charge")
		o := orders[orderID]
		if !ok || o == nil {
			report("charge %s (key %s) belongs to no order", c.ChargeID, c.Key)
			continue
		}
		charged[orderID]++
		switch o.Status {
		case boxoffice.OrderConfirmed, boxoffice.OrderCancelled:
			if o.ChargeID != c.ChargeID {
				report("order %s records charge %s but the provider made %s", o.ID, o.ChargeID, c.ChargeID)
			}
			if o.Status == boxoffice.OrderConfirmed && c.Refunded {
				report("order %s is confirmed but its charge %s was refunded", o.ID, c.ChargeID)
			}
			if o.Status == boxoffice.OrderCancelled && !c.Refunded {
				report("order %s is cancelled but its charge %s was not refunded", o.ID, c.ChargeID)
			}
		case boxoffice.OrderPaymentFailed:
			if !c.Refunded {
				report("order %s failed but its charge %s stands", o.ID, c.ChargeID)
			}
		}
	}
	for id, o := range orders {
		if (o.Status == boxoffice.OrderConfirmed || o.Status == boxoffice.OrderCancelled) && charged[id] != 1 {
			report("order %s is %s but the provider charged it %d times", id, o.Status, charged[id])
		}
	}
}
