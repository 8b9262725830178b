package console

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"boxoffice"
)

// window is how far back the chart looks.
const window = 60

// Bounds of one refresh, so that a console watching a sale can never load the store much: a
// busier second than this shows in the chart as a lower rate, and the counts of the tiers (read
// from the store, exact) still tell the truth.
const (
	eventPage          = 1000
	maxPagesPerRefresh = 20
	maxShows           = 200
	maxDeadLetterRows  = 50
	// samplesPerSecond bounds the latencies kept for one second; past it each further order
	// overwrites the oldest sample, which keeps the memory flat and the percentiles close enough
	// for a chart.
	samplesPerSecond = 2000
	// backfill is how many events before the head a cold start reads, so that the chart after a
	// restart or an idle spell shows the last minute rather than nothing.
	backfill = 5000
)

// bucket is one second of confirmed orders.
type bucket struct {
	sec     int64
	orders  int
	tickets int
	lat     []float64 // milliseconds from the order's creation to its confirmation
	next    int       // the slot to overwrite once lat is full
}

// Second is one second of the chart.
type Second struct {
	// T is the second, Unix time.
	T int64 `json:"t"`
	// Orders and Tickets confirmed in that second.
	Orders  int `json:"orders"`
	Tickets int `json:"tickets"`
	// P50 and P99 are the confirmation latencies of that second's orders, milliseconds; 0 when
	// there were none.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

// Rate is the last minute of purchases, derived from the sale's event feed: every
// order.confirmed event is one purchase, counted in the second of its created_at, and its latency
// is the order's updated_at (confirmed) minus its created_at (the reserve phase), i.e. the time
// the charge and the settle took. That is the server's side of a purchase; what a client waited
// is in the HTTP metrics.
type Rate struct {
	Seconds []Second `json:"seconds"`
	// PerSecond is the minute's orders divided by 60.
	PerSecond float64 `json:"per_second"`
	Orders    int     `json:"orders"`
	Tickets   int     `json:"tickets"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

// Relay is how far the outbox relay trails the outbox.
type Relay struct {
	// Head is the position of the newest event read; Relayed the relay's checkpoint.
	Head    int64 `json:"head"`
	Relayed int64 `json:"relayed"`
	// LagEvents is Head - Relayed (on PostgreSQL positions may have gaps, so it is an upper
	// bound); LagSeconds is the age of the oldest event not relayed, 0 when none.
	LagEvents  int64   `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
}

// DeadLetters is the head of the dead-letter queue.
type DeadLetters struct {
	Items []boxoffice.DeadLetter `json:"items"`
	// More says there are more than Items, oldest first.
	More bool `json:"more"`
}

// State is what the live view shows; the console builds one a second and sends it to every
// open page.
type State struct {
	At    time.Time         `json:"at"`
	Shows []*boxoffice.Show `json:"shows"`
	// ShowsTruncated says there are more shows than maxShows.
	ShowsTruncated bool `json:"shows_truncated"`
	// ExpiringHolds are the active holds that expire within expiringWithin, soonest first, at
	// most maxExpiringRows of them.
	ExpiringHolds []*boxoffice.Hold `json:"expiring_holds"`
	// Orders counts the orders by status; null until first read.
	Orders      *OrderCounts `json:"orders,omitempty"`
	Rate        Rate         `json:"rate"`
	Relay       *Relay       `json:"relay,omitempty"`
	DeadLetters *DeadLetters `json:"dead_letters,omitempty"`
	// Consumers are the event stream's consumers with their state; null when not shown (no
	// async side, or it could not be read: see Errors).
	Consumers []Consumer `json:"consumers"`
	// WaitRooms are the shows' waiting rooms with their counts (maxWaitRooms at most); null when
	// not shown.
	WaitRooms []*boxoffice.WaitRoom `json:"wait_rooms"`
	// Cluster is GET /v1/cluster's answer, when several servers share the store.
	Cluster json.RawMessage `json:"cluster,omitempty"`
	// Errors says which parts could not be read this time, so a page never shows stale numbers
	// as if they were fresh.
	Errors []string `json:"errors,omitempty"`
}

// OrderCounts is how many orders have each status, as of At. A count equal to Cap means at
// least that many: each status is counted no further, so the count costs a bounded index read
// however big the sale.
type OrderCounts struct {
	At       time.Time                     `json:"at"`
	ByStatus map[boxoffice.OrderStatus]int `json:"by_status"`
	Cap      int                           `json:"cap"`
}

// The order counts: read every orderCountsEvery refreshes (every 5 s by default) rather than with
// each, since at their cap they read a million index entries per status; and each status counted
// up to orderCountCap.
const (
	orderCountsEvery = 5
	orderCountCap    = 1_000_000
)

// maxWaitRooms bounds the waiting rooms the console reads each refresh: each one's count of
// those waiting reads its queue's index.
const maxWaitRooms = 20

// The expiring holds the console shows: those of the next minute, a screenful at most.
const (
	expiringWithin  = time.Minute
	maxExpiringRows = 20
)

// sampler builds the State. It tails the event feed from where it last read, which costs one
// query a second when nothing happens; it runs only while a page watches (see want), so a
// console nobody opened costs nothing.
type sampler struct {
	c *Console

	mu        sync.Mutex
	cursor    int64 // the position of the last event read; 0 with !warm: find the head first
	warm      bool
	orders    *OrderCounts // the last order counts, read again every orderCountsEvery refreshes
	ordersAge int          // refreshes since orders was read
	// ordersStale asks the next refresh to read the order counts again (after a cancel).
	ordersStale atomic.Bool
	buckets     [window]bucket
	body        []byte // the State as JSON, marshalled once for every page
	version     uint64
	changed     chan struct{} // closed and replaced when state changes
	wantedAt    time.Time
	kick        chan struct{}
}

func newSampler(c *Console) *sampler {
	return &sampler{c: c, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// want records that a page watches, and returns the current State as JSON (nil before the first
// refresh), its version, and a channel closed at the next one.
func (s *sampler) want() ([]byte, uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idle := s.c.now().Sub(s.wantedAt) > idleAfter
	s.wantedAt = s.c.now()
	if idle {
		s.poke()
	}
	return s.body, s.version, s.changed
}

// idleAfter is how long the sampler keeps refreshing after the last page asked.
const idleAfter = 30 * time.Second

// poke asks for a refresh now (after an action, or when a page arrives).
func (s *sampler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run refreshes once a second, or at once when poked, until ctx ends.
func (s *sampler) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		s.mu.Lock()
		active := s.c.now().Sub(s.wantedAt) <= idleAfter
		if !active {
			// Nobody watches: the next page starts from the head again (with the backfill).
			s.warm = false
		}
		s.mu.Unlock()
		if active {
			s.refresh(ctx)
		}
	}
}

// refresh reads everything once and publishes the new State.
func (s *sampler) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := s.c.now()
	st := &State{At: now.UTC()}
	fail := func(what string, err error) {
		st.Errors = append(st.Errors, what+": "+err.Error())
	}
	if err := s.tail(ctx); err != nil {
		fail("events", err)
	}
	shows, more, err := s.shows(ctx)
	if err != nil {
		fail("shows", err)
	}
	st.Shows, st.ShowsTruncated = shows, more
	if st.ExpiringHolds, err = s.c.svc.ExpiringHolds(ctx, expiringWithin, maxExpiringRows); err != nil {
		fail("expiring holds", err)
	}
	if st.Orders, err = s.orderCounts(ctx, now); err != nil {
		fail("order counts", err)
	}
	if dlq := s.c.opts.DeadLetters; dlq != nil {
		list, err := dlq.ListDeadLetters(ctx, maxDeadLetterRows+1)
		if err != nil {
			fail("dead letters", err)
		} else {
			st.DeadLetters = &DeadLetters{Items: list, More: len(list) > maxDeadLetterRows}
			if st.DeadLetters.More {
				st.DeadLetters.Items = list[:maxDeadLetterRows]
			}
		}
	}
	if rp := s.c.opts.RelayPosition; rp != nil {
		r, err := s.relay(ctx, rp, now)
		if err != nil {
			fail("relay", err)
		}
		st.Relay = r
	}
	if list := s.c.opts.Consumers; list != nil {
		var err error
		if st.Consumers, err = s.consumers(ctx, list); err != nil {
			fail("consumers", err)
		}
	}
	if rooms := s.c.opts.WaitRooms; rooms != nil {
		if st.WaitRooms, err = rooms(ctx, maxWaitRooms); err != nil {
			fail("waiting rooms", err)
		}
	}
	if cl := s.c.opts.Cluster; cl != nil {
		if v, err := cl(ctx); err != nil {
			fail("cluster", err)
		} else if b, err := json.Marshal(v); err == nil {
			st.Cluster = b
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Rate = s.rateLocked(now)
	body, err := json.Marshal(st)
	if err != nil {
		s.c.log.Error("console: encode state", "err", err)
		return
	}
	s.body = body
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
}

// orderCounts returns the order counts, read again every orderCountsEvery refreshes or when an
// action asked for it (a cancel moves them). Only the sampler's goroutine calls it, so s.orders
// needs no lock.
func (s *sampler) orderCounts(ctx context.Context, now time.Time) (*OrderCounts, error) {
	s.ordersAge++
	if s.orders != nil && s.ordersAge < orderCountsEvery && !s.ordersStale.Swap(false) {
		return s.orders, nil
	}
	s.ordersAge = 0
	counts, err := s.c.svc.OrderCounts(ctx, orderCountCap)
	if err != nil {
		return nil, err
	}
	s.orders = &OrderCounts{At: now.UTC(), ByStatus: counts, Cap: orderCountCap}
	return s.orders, nil
}

// shows reads up to maxShows shows with their tiers' counts.
func (s *sampler) shows(ctx context.Context) ([]*boxoffice.Show, bool, error) {
	out := []*boxoffice.Show{}
	after := ""
	for len(out) < maxShows {
		page, next, err := s.c.svc.ListShows(ctx, after, min(100, maxShows-len(out)))
		if err != nil {
			return out, false, err
		}
		out = append(out, page...)
		if next == "" {
			return out, false, nil
		}
		after = next
	}
	return out, true, nil
}

// tail reads the events after the cursor and counts the confirmed orders into their seconds.
func (s *sampler) tail(ctx context.Context) error {
	s.mu.Lock()
	cursor, warm := s.cursor, s.warm
	s.mu.Unlock()
	if !warm {
		head, err := s.head(ctx)
		if err != nil {
			return err
		}
		cursor = max(0, head-backfill)
		s.mu.Lock()
		s.buckets = [window]bucket{}
		s.mu.Unlock()
	}
	for range maxPagesPerRefresh {
		evs, _, err := s.c.svc.ListEvents(ctx, strconv.FormatInt(cursor, 10), eventPage)
		if err != nil {
			return err
		}
		s.mu.Lock()
		for _, ev := range evs {
			s.countLocked(ev)
			cursor = max(cursor, ev.Position)
		}
		s.cursor, s.warm = cursor, true
		s.mu.Unlock()
		if len(evs) < eventPage {
			return nil
		}
	}
	return nil
}

// head finds the newest event's position in a few dozen one-row reads (a doubling then a
// bisection over positions), instead of reading the whole feed.
func (s *sampler) head(ctx context.Context) (int64, error) {
	after := func(p int64) (*boxoffice.Event, error) {
		evs, _, err := s.c.svc.ListEvents(ctx, strconv.FormatInt(p, 10), 1)
		if err != nil || len(evs) == 0 {
			return nil, err
		}
		return evs[0], nil
	}
	var lo, hi int64 = 0, 1 // events exist after lo (or lo is 0); none after hi once found
	for {
		ev, err := after(hi)
		if err != nil {
			return 0, err
		}
		if ev == nil {
			break
		}
		lo, hi = ev.Position, max(hi*2, ev.Position)
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ev, err := after(mid)
		if err != nil {
			return 0, err
		}
		if ev == nil {
			hi = mid
		} else {
			lo = ev.Position
		}
	}
	// None is after hi, but hi itself may be one.
	ev, err := after(lo)
	if err != nil || ev == nil {
		return lo, err
	}
	return ev.Position, nil
}

// countLocked adds a confirmed order to its second.
func (s *sampler) countLocked(ev *boxoffice.Event) {
	if ev.Type != boxoffice.EventOrderConfirmed {
		return
	}
	var o boxoffice.Order
	if err := json.Unmarshal(ev.Data, &o); err != nil {
		return
	}
	sec := ev.CreatedAt.Unix()
	if s.c.now().Unix()-sec >= window {
		return
	}
	b := &s.buckets[sec%window]
	if b.sec != sec {
		*b = bucket{sec: sec}
	}
	b.orders++
	b.tickets += o.Quantity
	lat := float64(o.UpdatedAt.Sub(o.CreatedAt).Microseconds()) / 1000
	if len(b.lat) < samplesPerSecond {
		b.lat = append(b.lat, lat)
	} else {
		b.lat[b.next] = lat
		b.next = (b.next + 1) % samplesPerSecond
	}
}

// rateLocked turns the buckets into the chart's series, oldest second first.
func (s *sampler) rateLocked(now time.Time) Rate {
	r := Rate{Seconds: make([]Second, 0, window)}
	var all []float64
	end := now.Unix()
	for sec := end - window + 1; sec <= end; sec++ {
		out := Second{T: sec}
		if b := &s.buckets[sec%window]; b.sec == sec {
			lat := slices.Clone(b.lat)
			slices.Sort(lat)
			out.Orders, out.Tickets = b.orders, b.tickets
			out.P50, out.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
			all = append(all, lat...)
		}
		r.Orders += out.Orders
		r.Tickets += out.Tickets
		r.Seconds = append(r.Seconds, out)
	}
	slices.Sort(all)
	r.PerSecond = float64(r.Orders) / window
	r.P50, r.P99 = quantile(all, 0.50), quantile(all, 0.99)
	return r
}

// quantile is the nearest-rank q-quantile of sorted values; 0 when there are none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// relay reads the relay's checkpoint and the age of the first event it has not published.
func (s *sampler) relay(ctx context.Context, position func(context.Context) (int64, error), now time.Time) (*Relay, error) {
	pos, err := position(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	head := s.cursor
	s.mu.Unlock()
	r := &Relay{Head: max(head, pos), Relayed: pos}
	r.LagEvents = r.Head - pos
	if r.LagEvents > 0 {
		evs, _, err := s.c.svc.ListEvents(ctx, strconv.FormatInt(pos, 10), 1)
		if err != nil {
			return r, err
		}
		if len(evs) > 0 {
			r.LagSeconds = max(0, now.Sub(evs[0].CreatedAt).Seconds())
		}
	}
	return r, nil
}

// RelayCheckpoint returns a RelayPosition for Options: the checkpoint of the outbox relay called
// name (nats.DefaultRelayName for the server's relay) in store.
func RelayCheckpoint(store boxoffice.Store, name string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (pos int64, err error) {
		err = store.View(ctx, func(tx boxoffice.Tx) error {
			pos, err = tx.RelayCheckpoint(ctx, name)
			return err
		})
		return pos, err
	}
}
