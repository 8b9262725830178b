// Package sale runs the box office: every operation of the API as atomic phases over a
// boxoffice.Store, with the race-condition strategy (boxoffice.Inventory) guarding tier counts and a
// payment provider called outside any transaction. It is the one service layer that every transport
// (REST today) calls, so all of them give the same answers.
package sale

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"boxoffice"
)

// Config wires a Service.
type Config struct {
	Store     boxoffice.Store
	Inventory boxoffice.Inventory
	Payments  boxoffice.Payments
	Renderer  Renderer
	// Now is the clock; expiry logic never reads time.Now directly, so tests control time. The
	// service keeps milliseconds, so that what a response says is what the store gives back.
	Now func() time.Time
	// SyncBudget is how long confirm and purchase wait for a payment before answering 202.
	SyncBudget time.Duration
	// IdempotencyTTL is how long idempotency records are kept.
	IdempotencyTTL time.Duration
	// MaxQuantity bounds the quantity of one hold.
	MaxQuantity int
	// AdminKey is the plain admin key; it authenticates as the admin role with key id "admin".
	AdminKey string
	// PreviousAdminKeys are admin keys still accepted during a rotation, so that clients can move
	// to AdminKey without a moment in which neither works. They are the same caller as AdminKey.
	PreviousAdminKeys []string
	// ExclusiveStore says no other server uses the store, so leases left by a killed process can be
	// ended at start instead of waiting for them to run out.
	ExclusiveStore bool
	// AllowPrivateWebhooks lets webhook endpoints point at private and loopback addresses, for
	// a partner on the same network or a test receiver; off, such URLs are refused.
	AllowPrivateWebhooks bool
	// InboxTTL is how long a consumer's record of an applied event is kept; it must exceed any
	// redelivery of an event. Zero means DefaultInboxTTL.
	InboxTTL time.Duration
	// Router, when several servers share the store, places each show's writes on the server that
	// owns the show and its background work there too; nil: this server owns every show.
	Router Router
	// Background, when set, says whether this server does the work one server does for all
	// (the idempotency and inbox sweeps) right now; nil: always.
	Background func() bool
	// Admission, when set, is asked before a hold is made (alone or in a purchase) whether the
	// request may hold tickets of the show for the buyer: a show's waiting room lets only the
	// buyers it admitted through (waitroom.Service.Admitted). nil: every request may.
	Admission func(ctx context.Context, showID, buyerEmail string) error
	Logger    *slog.Logger
}

// Defaults of Config.
const (
	DefaultSyncBudget     = 2 * time.Second
	DefaultIdempotencyTTL = 24 * time.Hour
	DefaultMaxQuantity    = 10
	DefaultHoldTTL        = 600
	// DefaultInboxTTL is a week: webhook retries end after about a day, and a relay republishes
	// an event within minutes of its first publish.
	DefaultInboxTTL = 7 * 24 * time.Hour
)

// Service is the box office: every operation of the API, the same for every transport.
type Service struct {
	cfg    Config
	store  boxoffice.Store
	inv    boxoffice.Inventory
	pay    boxoffice.Payments
	render Renderer
	now    func() time.Time
	log    *slog.Logger

	// base is cancelled by Close; order drivers run under it, not under a request's context, so a
	// payment outlives the request that answered 202.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	driving map[string]*driver // by order id, while the driver runs
	driven  recentDrivers      // drivers that ended lately with the order's answer stored
	keys    sync.Map           // key hash → *cachedKey
	wake    chan struct{}

	showCache showCache        // the purchase path's shows (fastpath.go)
	seatMaps  seatMapCache     // seat maps as lately answered (seats.go)
	claims    claims           // idempotency keys of purchases in flight here (fastpath.go)
	records   records          // final answers waiting to be stored together (records.go)
	refusals  renderedRefusals // sold_out problems answered from memory lately (fastpath.go)

	// probeMu guards the last write probe of Ready, which is taken at most once a second.
	probeMu  sync.Mutex
	probedAt time.Time
	probeErr error

	touchMu sync.Mutex
	touched map[string]time.Time // key id → when this process last wrote its last_used_at

	// idemReplays and idemInProgress count, on the server that answered (a forwarded call is
	// counted by the show's owner only), the answers replayed from an idempotency record and
	// the 409s to a key whose first request is still working: see IdempotencyStats.
	idemReplays, idemInProgress atomic.Int64
}

// IdempotencyStats returns how many requests this server answered with a stored answer for their
// Idempotency-Key (a client's retry, replayed) and how many with 409 because the key's first
// request was still in progress (a retry sooner than the first request's answer).
func (s *Service) IdempotencyStats() (replays, inProgress int64) {
	return s.idemReplays.Load(), s.idemInProgress.Load()
}

// countIdem counts a lookup's verdict for IdempotencyStats; it is called once per verdict given
// to a client, never inside a transaction's fn, which may run more than once.
func (s *Service) countIdem(res *boxoffice.Response, err error) {
	switch {
	case res != nil:
		s.idemReplays.Add(1)
	case boxoffice.ErrorCode(err) == boxoffice.EIDEMINPROGRESS:
		s.idemInProgress.Add(1)
	}
}

// New returns a Service; Start runs its background work.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SyncBudget <= 0 {
		cfg.SyncBudget = DefaultSyncBudget
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if cfg.MaxQuantity <= 0 {
		cfg.MaxQuantity = DefaultMaxQuantity
	}
	if cfg.InboxTTL <= 0 {
		cfg.InboxTTL = DefaultInboxTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Service{
		cfg: cfg, store: cfg.Store, inv: cfg.Inventory, pay: cfg.Payments, render: cfg.Renderer,
		now: func() time.Time { return cfg.Now().UTC().Truncate(time.Millisecond) }, log: cfg.Logger,
		base: base, cancel: cancel,
		driving: make(map[string]*driver),
		touched: make(map[string]time.Time),
		wake:    make(chan struct{}, 1),
	}
}

// Start recovers from a previous run (leases, pending orders, overdue holds) and runs the background
// loops (hold expiry, pending-order completion, idempotency sweeping) until Close.
func (s *Service) Start(ctx context.Context) error {
	if s.cfg.ExclusiveStore {
		if err := s.store.Update(ctx, func(tx boxoffice.Tx) error { return tx.ClearIdemLeases(ctx) }); err != nil {
			return err
		}
	}
	if _, err := s.ExpireDue(ctx); err != nil {
		return err
	}
	if _, err := s.CompletePending(ctx); err != nil {
		return err
	}
	s.loop(s.expiryLoop)
	s.loop(func() time.Duration {
		if _, err := s.CompletePending(s.base); err != nil && s.base.Err() == nil {
			s.log.Error("complete pending orders", "err", err)
		}
		return time.Second
	})
	s.loop(func() time.Duration {
		if s.cfg.Background != nil && !s.cfg.Background() {
			return time.Minute
		}
		if _, err := s.SweepIdempotency(s.base); err != nil && s.base.Err() == nil {
			s.log.Error("sweep idempotency records", "err", err)
		}
		if _, err := s.SweepInbox(s.base); err != nil && s.base.Err() == nil {
			s.log.Error("sweep inbox", "err", err)
		}
		return time.Minute
	})
	return nil
}

// loop runs step until Close, sleeping for what step returns or until woken.
func (s *Service) loop(step func() time.Duration) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			d := step()
			t := time.NewTimer(d)
			select {
			case <-s.base.Done():
				t.Stop()
				return
			case <-s.wake:
			case <-t.C:
			}
			t.Stop()
		}
	}()
}

func (s *Service) expiryLoop() time.Duration {
	if _, err := s.ExpireDue(s.base); err != nil && s.base.Err() == nil {
		s.log.Error("expire holds", "err", err)
	}
	var next time.Time
	var ok bool
	err := s.store.View(s.base, func(tx boxoffice.Tx) (err error) {
		next, ok, err = tx.NextHoldExpiry(s.base)
		return err
	})
	if err != nil || !ok {
		return time.Second
	}
	// Sleep until the next expiry, but poll at least every second (a hold made by another server
	// sharing the store) and not in a tight loop (a due hold whose payment is still pending).
	return min(max(next.Sub(s.now()), 50*time.Millisecond), time.Second)
}

// poke wakes the background loops early, e.g. when a request noticed a hold past its expiry.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops the background loops and order drivers and waits for them. Orders still pending are
// finished by the next Start.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Ready reports whether the store answers reads and commits writes (a store that can prove it,
// boxoffice.WriteProber). The write is probed at most once a second, so a load balancer polling
// /readyz often costs one small commit a second; a failure is a *boxoffice.NotReadyError.
func (s *Service) Ready(ctx context.Context) error {
	err := s.store.View(ctx, func(tx boxoffice.Tx) error {
		_, err := tx.ListShows(ctx, "", 1)
		return err
	})
	if err != nil {
		return &boxoffice.NotReadyError{Reason: "the store does not answer reads", Err: err}
	}
	prober, ok := s.store.(boxoffice.WriteProber)
	if !ok {
		return nil
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if time.Since(s.probedAt) >= time.Second {
		s.probeErr = prober.ProbeWrite(ctx)
		s.probedAt = time.Now()
	}
	if s.probeErr != nil {
		return &boxoffice.NotReadyError{Reason: "the store does not commit writes", Err: s.probeErr}
	}
	return nil
}

// ListEvents returns a page of the event feed after a position cursor.
func (s *Service) ListEvents(ctx context.Context, after string, limit int) ([]*boxoffice.Event, string, error) {
	var pos int64
	if after != "" {
		var err error
		if pos, err = strconv.ParseInt(after, 10, 64); err != nil || pos < 0 {
			return nil, "", boxoffice.Validation(boxoffice.FieldError{Field: "after", Message: "is not a cursor of this feed"})
		}
	}
	var evs []*boxoffice.Event
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		evs, err = tx.ListEvents(ctx, pos, limit+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(evs) > limit {
		evs = evs[:limit]
		next = strconv.FormatInt(evs[len(evs)-1].Position, 10)
	}
	return evs, next, nil
}

// appendEvent writes a domain event about subject (a hold or an order) in tx.
func (s *Service) appendEvent(ctx context.Context, tx boxoffice.Tx, typ, subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	now := s.now()
	return tx.AppendEvent(ctx, &boxoffice.Event{ID: boxoffice.NewID(boxoffice.PrefixEvent, now), Type: typ, CreatedAt: now, Data: data, Subject: subject})
}

// page cuts a result fetched with limit+1 rows to limit and returns the next cursor.
func page[T any](items []T, limit int, id func(T) string) ([]T, string) {
	if len(items) > limit {
		items = items[:limit]
		return items, id(items[len(items)-1])
	}
	return items, ""
}

var errSkip = errors.New("nothing to do")
