package payments

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"boxoffice"
)

// ChargeStatus is where a simulated charge is in its life.
type ChargeStatus string

// Charge states. A pending charge (tok_slow) becomes succeeded by itself; the other two are final.
const (
	ChargePending   ChargeStatus = "pending"
	ChargeSucceeded ChargeStatus = "succeeded"
	ChargeDeclined  ChargeStatus = "declined"
)

// ChargeRecord is one idempotency key's charge as the simulator remembers it, with its refund if
// any. It exists for audits (tests, boxoffice verify) that check money moved once per key.
type ChargeRecord struct {
	Key          string          `json:"key"`
	ID           string          `json:"id"`
	Amount       boxoffice.Money `json:"amount"`
	Token        string          `json:"token"`
	Description  string          `json:"description,omitempty"`
	Status       ChargeStatus    `json:"status"`
	Message      string          `json:"message,omitempty"` // why it was declined
	CreatedAt    time.Time       `json:"created_at"`
	Refunded     bool            `json:"refunded"`
	RefundID     string          `json:"refund_id,omitempty"`
	RefundKey    string          `json:"refund_key,omitempty"`
	RefundAmount boxoffice.Money `json:"refund_amount,omitzero"`
}

// Ledger operations, one JSON line each.
const (
	opCharge = "charge" // a charge was created: succeeded, declined or pending
	opSettle = "settle" // a pending charge succeeded
	opRefund = "refund" // a succeeded charge was refunded
)

// ledgerLine is one state change. The same lines drive the live state and the replay, so a
// restarted simulator cannot disagree with the one that wrote the file.
type ledgerLine struct {
	Op          string          `json:"op"`
	Key         string          `json:"key"`
	ID          string          `json:"id"`
	Token       string          `json:"token,omitempty"`
	Amount      boxoffice.Money `json:"amount,omitzero"`
	Description string          `json:"description,omitempty"`
	Status      ChargeStatus    `json:"status,omitempty"`
	Message     string          `json:"message,omitempty"`
	SettleAt    time.Time       `json:"settle_at,omitzero"`
	ChargeID    string          `json:"charge_id,omitempty"`
	// RequestAmount is the refund amount as asked for (zero = all), kept apart from Amount (what was
	// refunded) so that a retry is compared with what it repeats.
	RequestAmount boxoffice.Money `json:"request_amount,omitzero"`
	At            time.Time       `json:"at"`
}

type charge struct {
	ChargeRecord
	settleAt time.Time
	settled  chan struct{} // closed when a pending charge succeeds
	timer    *time.Timer   // settles a pending charge on schedule, with or without a caller waiting
}

type refund struct {
	key, id, chargeID string
	requested         boxoffice.Money
}

// book is the simulator's state: what the ledger lines add up to.
type book struct {
	charges map[string]*charge // by idempotency key
	byID    map[string]*charge
	refunds map[string]*refund // by idempotency key
	order   []*charge          // in creation order, so audits list charges as they happened
}

func newBook() *book {
	return &book{
		charges: make(map[string]*charge),
		byID:    make(map[string]*charge),
		refunds: make(map[string]*refund),
	}
}

// apply adds one state change. Live calls check everything before they log, so an error here means
// a ledger that was not written by this code (or was damaged somewhere other than its tail).
func (b *book) apply(ln *ledgerLine) error {
	switch ln.Op {
	case opCharge:
		if ln.Key == "" || ln.ID == "" {
			return errors.New("charge without key or id")
		}
		if b.charges[ln.Key] != nil {
			return fmt.Errorf("second charge for key %q", ln.Key)
		}
		if b.byID[ln.ID] != nil {
			return fmt.Errorf("second charge with id %q", ln.ID)
		}
		c := &charge{ChargeRecord: ChargeRecord{
			Key: ln.Key, ID: ln.ID, Amount: ln.Amount, Token: ln.Token, Description: ln.Description,
			Status: ln.Status, Message: ln.Message, CreatedAt: ln.At,
		}}
		switch ln.Status {
		case ChargeSucceeded, ChargeDeclined:
		case ChargePending:
			c.settleAt = ln.SettleAt
			c.settled = make(chan struct{})
		default:
			return fmt.Errorf("charge %q with unknown status %q", ln.ID, ln.Status)
		}
		b.charges[c.Key] = c
		b.byID[c.ID] = c
		b.order = append(b.order, c)
	case opSettle:
		c := b.charges[ln.Key]
		if c == nil || c.ID != ln.ID {
			return fmt.Errorf("settle of unknown charge %q", ln.ID)
		}
		if c.Status != ChargePending {
			return fmt.Errorf("settle of charge %q that is %s", ln.ID, c.Status)
		}
		c.Status = ChargeSucceeded
		close(c.settled)
	case opRefund:
		if ln.Key == "" || ln.ID == "" {
			return errors.New("refund without key or id")
		}
		if b.refunds[ln.Key] != nil {
			return fmt.Errorf("second refund for key %q", ln.Key)
		}
		c := b.byID[ln.ChargeID]
		if c == nil {
			return fmt.Errorf("refund of unknown charge %q", ln.ChargeID)
		}
		if c.Status != ChargeSucceeded || c.Refunded {
			return fmt.Errorf("refund of charge %q that is %s (refunded %t)", c.ID, c.Status, c.Refunded)
		}
		c.Refunded, c.RefundID, c.RefundKey, c.RefundAmount = true, ln.ID, ln.Key, ln.Amount
		b.refunds[ln.Key] = &refund{key: ln.Key, id: ln.ID, chargeID: ln.ChargeID, requested: ln.RequestAmount}
	default:
		return fmt.Errorf("unknown operation %q", ln.Op)
	}
	return nil
}

func (b *book) records() []ChargeRecord {
	out := make([]ChargeRecord, len(b.order))
	for i, c := range b.order {
		out[i] = c.ChargeRecord
	}
	return out
}

// replay rebuilds a book from ledger bytes. It returns how many bytes hold complete lines: a
// line counts only once its newline is there, because a crash mid-append leaves a torn tail that
// no call was ever answered about.
func replay(data []byte) (*book, int, error) {
	b := newBook()
	good := 0
	for n := 1; good < len(data); n++ {
		end := bytes.IndexByte(data[good:], '\n')
		if end < 0 {
			break // the torn tail
		}
		raw := data[good : good+end]
		if len(bytes.TrimSpace(raw)) > 0 {
			var ln ledgerLine
			if err := json.Unmarshal(raw, &ln); err != nil {
				return nil, 0, fmt.Errorf("line %d: %w", n, err)
			}
			if err := b.apply(&ln); err != nil {
				return nil, 0, fmt.Errorf("line %d: %w", n, err)
			}
		}
		good += end + 1
	}
	return b, good, nil
}

// LoadLedger reads the charges a simulator recorded at path without starting one, so that an audit
// can run beside (or after) the server. A torn last line is ignored; pending charges are reported
// as the file has them, even when their settle time has passed.
func LoadLedger(path string) ([]ChargeRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("payments: read ledger: %w", err)
	}
	b, _, err := replay(data)
	if err != nil {
		return nil, fmt.Errorf("payments: ledger %s: %w", path, err)
	}
	return b.records(), nil
}

var errClosed = errors.New("payments: simulator is closed")

// ledger is the append-only file behind a Sim. Appends are group-committed: whoever finds no write
// in progress writes and fsyncs everything queued so far, so a thousand concurrent charges pay for
// a few fsyncs instead of a thousand, and each append still returns only once its line is durable.
type ledger struct {
	mu      sync.Mutex
	cond    sync.Cond
	f       *os.File
	buf     []byte // lines queued for the next write
	queued  uint64 // lines ever queued
	durable uint64 // lines written and fsync'd
	writing bool
	err     error // sticky: after a failed write or fsync nothing is known to be on disk
	closed  bool
}

// openLedger opens (or creates) the ledger at path, replays it and cuts off a torn tail, so that
// the next line starts on a line of its own instead of being glued to the garbage.
func openLedger(path string) (*ledger, *book, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("payments: ledger directory: %w", err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("payments: open ledger: %w", err)
	}
	fail := func(err error) (*ledger, *book, error) {
		f.Close()
		return nil, nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(fmt.Errorf("payments: read ledger: %w", err))
	}
	b, good, err := replay(data)
	if err != nil {
		return fail(fmt.Errorf("payments: ledger %s: %w", path, err))
	}
	if good < len(data) {
		if err := f.Truncate(int64(good)); err != nil {
			return fail(fmt.Errorf("payments: cut torn ledger tail: %w", err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("payments: sync ledger: %w", err))
		}
	}
	if created {
		// The file's name must survive a crash too, not only its contents.
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fail(err)
		}
	}
	l := &ledger{f: f}
	l.cond.L = &l.mu
	return l, b, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("payments: open ledger directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("payments: sync ledger directory: %w", err)
	}
	return nil
}

// append writes ln and returns once it is fsync'd.
func (l *ledger) append(ln *ledgerLine) error {
	data, err := json.Marshal(ln)
	if err != nil {
		return fmt.Errorf("payments: encode ledger line: %w", err)
	}
	data = append(data, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errClosed
	}
	if l.err != nil {
		return l.err
	}
	l.buf = append(l.buf, data...)
	l.queued++
	mine := l.queued
	for l.durable < mine {
		switch {
		case l.err != nil:
			return l.err
		case l.closed:
			return errClosed
		case l.writing:
			l.cond.Wait()
			continue
		}
		l.writing = true
		buf, upto := l.buf, l.queued
		l.buf = nil
		l.mu.Unlock()
		_, err := l.f.Write(buf)
		if err == nil {
			err = l.f.Sync()
		}
		l.mu.Lock()
		l.writing = false
		if err != nil {
			l.err = fmt.Errorf("payments: write ledger: %w", err)
		} else {
			l.durable = upto
		}
		l.cond.Broadcast()
	}
	return nil
}

// close waits for a write in progress and closes the file; appends after it fail.
func (l *ledger) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.writing {
		l.cond.Wait()
	}
	if l.closed {
		return nil
	}
	l.closed = true
	l.cond.Broadcast()
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("payments: close ledger: %w", err)
	}
	return nil
}
