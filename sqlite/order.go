package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"boxoffice"
)

func scanOrder(sc scanner) (*boxoffice.Order, error) {
	var (
		o                    boxoffice.Order
		status, tickets      string
		release              bool
		createdAt, updatedAt int64
	)
	if err := sc.Scan(&o.ID, &status, &o.ShowID, &o.TierID, &o.HoldID, &o.Quantity, &o.Amount.Amount,
		&o.Amount.Currency, &o.Buyer.Email, &tickets, &o.PaymentToken, &o.ChargeID, &o.RefundID, &release,
		&createdAt, &updatedAt, &o.APIKeyID); err != nil {
		return nil, err
	}
	o.Status = boxoffice.OrderStatus(status)
	o.ReleaseOnFailure = release
	o.CreatedAt, o.UpdatedAt = fromMicros(createdAt), fromMicros(updatedAt)
	if tickets != "" && tickets != "null" {
		if err := json.Unmarshal([]byte(tickets), &o.Tickets); err != nil {
			return nil, fmt.Errorf("decode tickets of order %q: %w", o.ID, err)
		}
	}
	return &o, nil
}

// encodeTickets stores tickets as a JSON array, nil as "null" so that it reads back as nil.
func encodeTickets(ts []boxoffice.Ticket) (string, error) {
	b, err := json.Marshal(ts)
	if err != nil {
		return "", fmt.Errorf("encode tickets: %w", err)
	}
	return string(b), nil
}

// InsertOrder implements boxoffice.Tx. The partial unique index orders_live_hold refuses a
// second pending_payment or confirmed order of one hold with ECONFLICT.
func (t *tx) InsertOrder(ctx context.Context, o *boxoffice.Order) error {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return err
	}
	if _, err := t.exec(ctx, sInsertOrder, o.ID, string(o.Status), o.ShowID, o.TierID, o.HoldID, o.Quantity,
		o.Amount.Amount, o.Amount.Currency, o.Buyer.Email, tickets, o.PaymentToken, o.ChargeID, o.RefundID,
		o.ReleaseOnFailure, micros(o.CreatedAt), micros(o.UpdatedAt), o.APIKeyID); err != nil {
		return wrapWrite(err, fmt.Sprintf("insert order %q", o.ID))
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

// UpdateOrder implements boxoffice.Tx. It also writes ReleaseOnFailure, which a confirm that
// answered 202 turns on. Moving an order back to a live status while its hold has another live
// order is an ECONFLICT.
func (t *tx) UpdateOrder(ctx context.Context, o *boxoffice.Order, from boxoffice.OrderStatus) (bool, error) {
	tickets, err := encodeTickets(o.Tickets)
	if err != nil {
		return false, err
	}
	res, err := t.exec(ctx, sUpdateOrder, string(o.Status), tickets, o.ChargeID, o.RefundID, o.ReleaseOnFailure,
		micros(o.UpdatedAt), o.ID, string(from))
	if err != nil {
		return false, wrapWrite(err, fmt.Sprintf("update order %q", o.ID))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("update order %q: %w", o.ID, err)
	}
	return n == 1, nil
}

// readOrders collects the orders a query returns.
func (t *tx) readOrders(rows *sql.Rows, err error) ([]*boxoffice.Order, error) {
	var orders []*boxoffice.Order
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		o, err := scanOrder(rows)
		orders = append(orders, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	return orders, nil
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
		orders, err = t.readOrders(t.query(ctx, sListOrders, after, limit))
	case f.APIKeyID == "":
		orders, err = t.readOrders(t.query(ctx, sListShowOrders, f.ShowID, after, limit))
	case f.ShowID == "":
		orders, err = t.readOrders(t.query(ctx, sListKeyOrders, f.APIKeyID, after, limit))
	default:
		orders, err = t.readOrders(t.query(ctx, sListKeyShowOrders, f.APIKeyID, f.ShowID, after, limit))
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
	orders, err := t.readOrders(t.query(ctx, sPendingOrders, limit))
	if err != nil {
		return nil, fmt.Errorf("read pending orders: %w", err)
	}
	return orders, nil
}

// ForEachOrder implements boxoffice.Tx.
func (t *tx) ForEachOrder(ctx context.Context, fn func(*boxoffice.Order) error) error {
	rows, err := t.query(ctx, sForEachOrder)
	var fnErr error
	err = t.eachRow(rows, err, func(rows *sql.Rows) error {
		o, err := scanOrder(rows)
		if err != nil {
			return err
		}
		fnErr = fn(o)
		return fnErr
	})
	return passFnErr(err, fnErr, "read orders")
}
