package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"boxoffice"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func scanOrder(sc scanner) (*boxoffice.Order, error) {
	var (
		o       boxoffice.Order
		status  string
		tickets []byte
	)
	if err := sc.Scan(&o.ID, &status, &o.ShowID, &o.TierID, &o.HoldID, &o.Quantity, &o.Amount.Amount,
		&o.Amount.Currency, &o.Buyer.Email, &tickets, &o.PaymentToken, &o.ChargeID, &o.RefundID,
		&o.ReleaseOnFailure, &o.CreatedAt, &o.UpdatedAt, &o.APIKeyID); err != nil {
		return nil, err
	}
	o.Status = boxoffice.OrderStatus(status)
	o.CreatedAt, o.UpdatedAt = utc(o.CreatedAt), utc(o.UpdatedAt)
	if len(tickets) > 0 && string(tickets) != "null" {
		if err := json.Unmarshal(tickets, &o.Tickets); err != nil {
			return nil, fmt.Errorf("decode tickets of order %q: %w", o.ID, err)
		}
	}
	return &o, nil
}

// encodeTickets stores tickets as a JSON array, nil as JSON null so that it reads back as nil.
// The string goes to the jsonb column as JSON text.
func encodeTickets(ts []boxoffice.Ticket) (string, error) {
	b, err := json.Marshal(ts)
	if err != nil {
		return "", fmt.Errorf("encode tickets: %w", err)
	}
	return string(b), nil
}

// InsertOrder implements boxoffice.Tx. A second pending_payment or confirmed order of one hold
// (the partial unique index orders_live_hold), like a second order with the same id, is not
// inserted: ECONFLICT.
func (t *tx) InsertOrder(ctx context.Context, o *boxoffice.Order) error {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return err
	}
	args := []any{o.ID, string(o.Status), o.ShowID, o.TierID, o.HoldID, o.Quantity,
		o.Amount.Amount, o.Amount.Currency, o.Buyer.Email, tickets, o.PaymentToken, o.ChargeID, o.RefundID,
		o.ReleaseOnFailure, o.CreatedAt, o.UpdatedAt, o.APIKeyID}
	if t.laterAs(deferredWrite{kind: kindOrder, step: stepInsert, sql: dInsertOrder, args: args}) {
		return nil
	}
	tag, err := t.exec(ctx, sInsertOrder, args...)
	if err != nil {
		return fmt.Errorf("insert order %q: %w", o.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return conflict("insert order %q", o.ID)
	}
	return nil
}

// GetOrder implements boxoffice.Tx.
func (t *tx) GetOrder(ctx context.Context, id string) (*boxoffice.Order, error) {
	o, err := scanOrder(t.queryRow(ctx, sGetOrder, id))
	if err != nil {
		return nil, notFound(err, "order %q", id)
	}
	return o, nil
}

// LiveOrderForHold implements boxoffice.Tx.
func (t *tx) LiveOrderForHold(ctx context.Context, holdID string) (*boxoffice.Order, error) {
	o, err := scanOrder(t.queryRow(ctx, sLiveOrderForHold, holdID))
	if err != nil {
		return nil, notFound(err, "live order of hold %q", holdID)
	}
	return o, nil
}

// updateOrderSavepoint guards the one UPDATE that may violate a unique index.
const updateOrderSavepoint = "boxoffice_update_order"

// UpdateOrder implements boxoffice.Tx. It also writes ReleaseOnFailure, which a confirm that
// answered 202 turns on. Moving an order back to a live status while its hold has another live
// order is an ECONFLICT.
//
// Only that move can clash with orders_live_hold (an order that stays live keeps its own index
// entry), and an UPDATE has no ON CONFLICT; so that move alone runs under an internal
// savepoint, sent with the UPDATE in one round trip, and a clash rolls back to it, leaving the
// transaction usable as SQLite would.
func (t *tx) UpdateOrder(ctx context.Context, o *boxoffice.Order, from boxoffice.OrderStatus) (bool, error) {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return false, err
	}
	args := []any{string(o.Status), tickets, o.ChargeID, o.RefundID, o.ReleaseOnFailure, o.UpdatedAt, o.ID, string(from)}
	if !liveStatus(o.Status) || liveStatus(from) {
		if t.later(stepOrder, o.ID, dUpdateOrder, args...) {
			return true, nil
		}
		tag, err := t.exec(ctx, sUpdateOrder, args...)
		if err != nil {
			return false, fmt.Errorf("update order %q: %w", o.ID, err)
		}
		return tag.RowsAffected() == 1, nil
	}
	var tag pgconn.CommandTag
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT " + updateOrderSavepoint)
	b.Queue(sUpdateOrder, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	b.Queue("RELEASE SAVEPOINT " + updateOrderSavepoint)
	err = t.batch(ctx, b)
	if err == nil {
		return tag.RowsAffected() == 1, nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false, fmt.Errorf("update order %q: %w", o.ID, err)
	}
	if _, rerr := t.exec(ctx, "ROLLBACK TO SAVEPOINT "+updateOrderSavepoint+"; RELEASE SAVEPOINT "+updateOrderSavepoint); rerr != nil {
		return false, fmt.Errorf("update order %q: %w (and rolling back: %w)", o.ID, err, rerr)
	}
	if isUnique(err) {
		return false, conflict("update order %q: a live order of hold %q", o.ID, o.HoldID)
	}
	return false, fmt.Errorf("update order %q: %w", o.ID, err)
}

// readOrders collects the orders a query returns.
func (t *tx) readOrders(ctx context.Context, sql string, args ...any) ([]*boxoffice.Order, error) {
	var orders []*boxoffice.Order
	_, err := t.eachRow(ctx, func(rows pgx.Rows) error {
		o, err := scanOrder(rows)
		orders = append(orders, o)
		return err
	}, sql, args...)
	return orders, err
}

// ListOrders implements boxoffice.Tx.
func (t *tx) ListOrders(ctx context.Context, f boxoffice.OrderFilter, after string, limit int) ([]*boxoffice.Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	var orders []*boxoffice.Order
	var err error
	switch {
	case f.APIKeyID == "" && f.ShowID == "":
		orders, err = t.readOrders(ctx, sListOrders, after, limit)
	case f.APIKeyID == "":
		orders, err = t.readOrders(ctx, sListShowOrders, f.ShowID, after, limit)
	case f.ShowID == "":
		orders, err = t.readOrders(ctx, sListKeyOrders, f.APIKeyID, after, limit)
	default:
		orders, err = t.readOrders(ctx, sListKeyShowOrders, f.APIKeyID, f.ShowID, after, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return orders, nil
}

// CountOrders implements boxoffice.Tx.
func (t *tx) CountOrders(ctx context.Context, status boxoffice.OrderStatus, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int
	if err := t.queryRow(ctx, sCountOrders, string(status), limit).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s orders: %w", status, err)
	}
	return n, nil
}

// PendingOrders implements boxoffice.Tx. Ids sort by creation time, so by id is oldest first.
func (t *tx) PendingOrders(ctx context.Context, limit int) ([]*boxoffice.Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	orders, err := t.readOrders(ctx, sPendingOrders, limit)
	if err != nil {
		return nil, fmt.Errorf("read pending orders: %w", err)
	}
	return orders, nil
}

// ForEachOrder implements boxoffice.Tx.
func (t *tx) ForEachOrder(ctx context.Context, fn func(*boxoffice.Order) error) error {
	after := ""
	for {
		page, err := t.readOrders(ctx, sForEachOrder, after, forEachPage)
		if err != nil {
			return fmt.Errorf("read orders: %w", err)
		}
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(page) < forEachPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}
