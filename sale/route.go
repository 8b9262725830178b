package sale

import (
	"context"
	"fmt"

	"boxoffice"
)

// Router places a show's writes on the one server that owns the show, when several servers
// share a store: the show's writer, with its counts in memory, lives there alone, and every batch
// it commits checks the lease it owns the show by (boxoffice.LeaseTx). Nil (Config.Router) means
// this server owns every show.
type Router interface {
	// Owns reports whether this server owns showID, taking the show over when no live server
	// does. A show that does not exist is this server's to answer (not_found).
	Owns(ctx context.Context, showID string) (bool, error)
	// Forward runs call on showID's owner and returns the owner's answer, as the method call
	// names would have answered there. An owner that cannot be reached is a retryable
	// EOVERLOADED: its lease runs out within seconds and another server takes the show over.
	Forward(ctx context.Context, showID string, call *Call) (*boxoffice.Response, bool, error)
}

// Operations of a Call.
const (
	OpCreateHold  = "create_hold"
	OpPurchase    = "purchase"
	OpConfirmHold = "confirm_hold"
	OpReleaseHold = "release_hold"
	OpCancelOrder = "cancel_order"
)

// Call is a write request forwarded to a show's owner: the operation, the caller as the first
// server authenticated it, the Idempotency-Key context and the decoded input. The owner runs it as
// if its own transport had decoded it, so a key has one effect whichever server it reached.
type Call struct {
	Op        string               `json:"op"`
	Principal *boxoffice.Principal `json:"principal"`
	Idem      Idem                 `json:"idem"`
	ShowID    string               `json:"show_id,omitempty"`
	// ID is the hold's (confirm, release) or order's (cancel).
	ID       string         `json:"id,omitempty"`
	Hold     *HoldInput     `json:"hold,omitempty"`
	Purchase *PurchaseInput `json:"purchase,omitempty"`
	Confirm  *ConfirmInput  `json:"confirm,omitempty"`
}

type forwardedKey struct{}

// Serve runs a call another server forwarded here. It never forwards again: should this server
// no longer own the show, the show's writer refuses the write with a retryable EOVERLOADED (the
// lease check), and the client's retry finds the new owner.
func (s *Service) Serve(ctx context.Context, c *Call) (*boxoffice.Response, bool, error) {
	ctx = context.WithValue(ctx, forwardedKey{}, true)
	if c.Principal == nil {
		return nil, false, fmt.Errorf("forwarded %s call without a caller", c.Op)
	}
	switch c.Op {
	case OpCreateHold:
		if c.Hold != nil {
			in := *c.Hold
			in.ShowID = c.ShowID
			return s.CreateHold(ctx, c.Principal, c.Idem, in)
		}
	case OpPurchase:
		if c.Purchase != nil {
			return s.Purchase(ctx, c.Principal, c.Idem, *c.Purchase)
		}
	case OpConfirmHold:
		if c.Confirm != nil {
			return s.ConfirmHold(ctx, c.Principal, c.Idem, c.ID, *c.Confirm)
		}
	case OpReleaseHold:
		return nil, false, s.ReleaseHold(ctx, c.Principal, c.ID)
	case OpCancelOrder:
		return s.CancelOrder(ctx, c.Principal, c.Idem, c.ID)
	}
	return nil, false, fmt.Errorf("forwarded call %q: unknown operation or no input", c.Op)
}

// forward sends c to showID's owner when another server owns the show; done says it did, and
// res, replayed and err are then the answer. A call that was itself forwarded runs here.
func (s *Service) forward(ctx context.Context, showID string, c *Call) (res *boxoffice.Response, replayed, done bool, err error) {
	if s.cfg.Router == nil || showID == "" || ctx.Value(forwardedKey{}) != nil {
		return nil, false, false, nil
	}
	owns, err := s.cfg.Router.Owns(ctx, showID)
	if err != nil {
		return nil, false, true, err
	}
	if owns {
		return nil, false, false, nil
	}
	res, replayed, err = s.cfg.Router.Forward(ctx, showID, c)
	return res, replayed, true, err
}

// showOfHold is the show of hold id for routing, or "" when it cannot say (no such hold, or the
// store failed): the call then runs here, which answers it as it would anyway.
func (s *Service) showOfHold(ctx context.Context, id string) string {
	return s.showOf(ctx, func(tx boxoffice.Tx) (string, error) {
		h, err := tx.GetHold(ctx, id)
		if err != nil {
			return "", err
		}
		return h.ShowID, nil
	})
}

// showOfOrder is showOfHold for an order.
func (s *Service) showOfOrder(ctx context.Context, id string) string {
	return s.showOf(ctx, func(tx boxoffice.Tx) (string, error) {
		o, err := tx.GetOrder(ctx, id)
		if err != nil {
			return "", err
		}
		return o.ShowID, nil
	})
}

// showOf reads a show id for routing with read, when there is a Router and the call was not
// forwarded here; "" otherwise or when the read fails.
func (s *Service) showOf(ctx context.Context, read func(tx boxoffice.Tx) (string, error)) string {
	if s.cfg.Router == nil || ctx.Value(forwardedKey{}) != nil {
		return ""
	}
	var show string
	_ = s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		show, err = read(tx)
		return err
	})
	return show
}

// mine reports whether this server does the background work of showID (expiring its holds,
// finishing its pending orders): with a Router, only the show's owner, which takes an ownerless
// show over. A failure to tell is "not mine" for this round.
func (s *Service) mine(ctx context.Context, showID string) bool {
	if s.cfg.Router == nil {
		return true
	}
	owns, err := s.cfg.Router.Owns(ctx, showID)
	return err == nil && owns
}
