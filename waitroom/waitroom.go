// Package waitroom is a show's waiting room (issue 15): buyers join a queue before they may hold
// tickets, and the queue lets them through at a rate the admin sets.
//
// Arrivals before the on-sale are ranked by a random draw made when they join, so arriving a
// millisecond earlier gives no edge; later arrivals queue first come, first served behind them.
// The queue lives in the store (boxoffice.WaitRoomStore), so it survives restarts and several
// servers share it; joining appends to it and never touches the show's tiers or its writer.
// Every server runs the admitter: the store's conditional writes keep the rate across all of
// them. A buyer holds a queue ticket, a signed, short-lived token (token.go); once admitted, the
// token itself opens holds for its show and buyer until the admission runs out, so the purchase
// path checks it without reading the store.
package waitroom

import (
	"context"
	crand "crypto/rand"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"boxoffice"
)

// Defaults of Config.
const (
	DefaultTicketTTL   = 10 * time.Minute
	DefaultAdmitEvery  = 100 * time.Millisecond
	DefaultRoomCache   = time.Second
	DefaultBatchMax    = 512
	DefaultQueueLength = 8192
	// DefaultAdmissionTTL is a room's admission_ttl_seconds when its PUT leaves it out.
	DefaultAdmissionTTL = 300
	// DefaultAutoMargin is auto_margin_percent when an automatic room's PUT leaves it out: a
	// tenth more buyers than tickets, since some of those admitted never buy and are replaced
	// only when their admission runs out.
	DefaultAutoMargin = 10
)

// Limits of a room's settings.
const (
	MaxAdmitPerSecond = 100000
	MaxAdmissionTTL   = 86400
	MaxAutoMargin     = 1000
)

const (
	// secretName names the tickets' signing key in the store's secrets.
	secretName = "queue-ticket"
	// ticketIDPrefix marks a ticket's id, as hld_ marks a hold's.
	ticketIDPrefix = "qtk_"
	// maxRank bounds the draw: lane 0's ranks are in [0, maxRank).
	maxRank = 1 << 62
	// joinWorkers write joins at once: one gathers the next batch while the other's commits.
	joinWorkers = 2
)

// A ticket's statuses.
const (
	statusWaiting  = "waiting"
	statusAdmitted = "admitted"
	statusLapsed   = "expired" // admitted, and the admission ran out
)

// Config wires a Service.
type Config struct {
	Store boxoffice.WaitRoomStore
	// Now is the clock; tests move it.
	Now func() time.Time
	// Rank draws a pre-on-sale arrival's rank in [0, 2^62); nil draws from a random source
	// seeded from crypto/rand. Tests pass a seeded one.
	Rank func() int64
	// TicketTTL is how long a token reads its ticket; reading the ticket or joining again
	// answers a fresh one. Zero is DefaultTicketTTL.
	TicketTTL time.Duration
	// AdmitEvery is the admitter's tick. Zero is DefaultAdmitEvery.
	AdmitEvery time.Duration
	// RoomCache is how long a room's settings are trusted from memory (on other servers, a PUT
	// shows within that). Zero is DefaultRoomCache.
	RoomCache time.Duration
	// BatchMax bounds the joins written in one store call; QueueLength the joins waiting for one
	// (more are refused with 503 overloaded). Zero is the default.
	BatchMax, QueueLength int
	// Available answers how many tickets a show's tiers can still sell (neither held nor sold),
	// for rooms with automatic admission. Nil admits those rooms at their rate alone.
	Available func(ctx context.Context, showID string) (int, error)
	Logger    *slog.Logger
}

// Service is the waiting rooms of every show.
type Service struct {
	cfg    Config
	store  boxoffice.WaitRoomStore
	secret []byte
	log    *slog.Logger
	rankMu sync.Mutex

	joins chan *pendingJoin

	// rooms caches each show's room (nil: none); lefts its tickets left (Config.Available).
	rooms readCache[*boxoffice.WaitRoom]
	lefts readCache[int]

	places places

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns the service, with the store's signing secret (made on first use, then shared by
// every server on the store). Start runs its background work.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TicketTTL <= 0 {
		cfg.TicketTTL = DefaultTicketTTL
	}
	if cfg.AdmitEvery <= 0 {
		cfg.AdmitEvery = DefaultAdmitEvery
	}
	if cfg.RoomCache <= 0 {
		cfg.RoomCache = DefaultRoomCache
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = DefaultBatchMax
	}
	if cfg.QueueLength <= 0 {
		cfg.QueueLength = DefaultQueueLength
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Rank == nil {
		var seed [32]byte
		_, _ = crand.Read(seed[:])
		r := rand.New(rand.NewChaCha8(seed))
		cfg.Rank = func() int64 { return r.Int64N(maxRank) }
	}
	var candidate [32]byte
	if _, err := crand.Read(candidate[:]); err != nil {
		return nil, err
	}
	secret, err := cfg.Store.Secret(ctx, secretName, candidate[:])
	if err != nil {
		return nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, store: cfg.Store, secret: secret, log: cfg.Logger,
		joins: make(chan *pendingJoin, cfg.QueueLength), places: newPlaces(),
		base: base, cancel: cancel}, nil
}

// Start runs the join writers (Join waits for them) and, unless admit is false, the admitter,
// until Close.
func (s *Service) Start(admit bool) {
	for range joinWorkers {
		s.wg.Go(s.writeJoins)
	}
	if admit {
		s.wg.Go(s.admitLoop)
	}
}

// Done is closed when Close begins: long waits on a ticket end then.
func (s *Service) Done() <-chan struct{} { return s.base.Done() }

// Close stops the background work and waits for it.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// RoomInput is the body of PUT /v1/shows/{show_id}/waiting-room.
type RoomInput struct {
	OpensAt             *time.Time `json:"opens_at"`
	AdmitPerSecond      int        `json:"admit_per_second"`
	AdmissionTTLSeconds *int       `json:"admission_ttl_seconds"`
	// Admission is "rate" (the default) or "auto" (boxoffice.AdmissionAuto): admit_per_second
	// is then the most it lets through a second.
	Admission         string `json:"admission"`
	AutoMarginPercent *int   `json:"auto_margin_percent"`
	// Paused stops admissions until it is cleared (boxoffice.WaitRoom.Paused): by Pause, or by
	// a PUT without it, since PUT sets the whole room.
	Paused bool `json:"paused"`
}

// Put creates or replaces a show's waiting room; created tells which.
func (s *Service) Put(ctx context.Context, showID string, in RoomInput) (*boxoffice.WaitRoom, bool, error) {
	var fields []boxoffice.FieldError
	if in.OpensAt == nil {
		fields = append(fields, boxoffice.FieldError{Field: "opens_at", Message: "is required (RFC 3339)"})
	}
	if in.AdmitPerSecond < 1 || in.AdmitPerSecond > MaxAdmitPerSecond {
		fields = append(fields, boxoffice.FieldError{Field: "admit_per_second",
			Message: "must be an integer from 1 to " + strconv.Itoa(MaxAdmitPerSecond)})
	}
	ttl := DefaultAdmissionTTL
	if in.AdmissionTTLSeconds != nil {
		ttl = *in.AdmissionTTLSeconds
		if ttl < 1 || ttl > MaxAdmissionTTL {
			fields = append(fields, boxoffice.FieldError{Field: "admission_ttl_seconds",
				Message: "must be an integer from 1 to " + strconv.Itoa(MaxAdmissionTTL)})
		}
	}
	mode, margin := boxoffice.AdmissionRate, 0
	switch in.Admission {
	case "", boxoffice.AdmissionRate:
		if in.AutoMarginPercent != nil {
			fields = append(fields, boxoffice.FieldError{Field: "auto_margin_percent", Message: `is for "admission": "auto" only`})
		}
	case boxoffice.AdmissionAuto:
		mode, margin = boxoffice.AdmissionAuto, DefaultAutoMargin
		if in.AutoMarginPercent != nil {
			margin = *in.AutoMarginPercent
			if margin < 0 || margin > MaxAutoMargin {
				fields = append(fields, boxoffice.FieldError{Field: "auto_margin_percent",
					Message: "must be an integer from 0 to " + strconv.Itoa(MaxAutoMargin)})
			}
		}
	default:
		fields = append(fields, boxoffice.FieldError{Field: "admission", Message: `must be "rate" or "auto"`})
	}
	if len(fields) > 0 {
		return nil, false, boxoffice.Validation(fields...)
	}
	room, created, err := s.store.PutWaitRoom(ctx, &boxoffice.WaitRoom{ShowID: showID,
		OpensAt: in.OpensAt.UTC().Truncate(time.Microsecond), AdmitPerSecond: in.AdmitPerSecond,
		AdmissionTTLSeconds: ttl, Admission: mode, AutoMarginPercent: margin, Paused: in.Paused, UpdatedAt: s.now()})
	s.forget(showID)
	return room, created, err
}

// Pause pauses (or resumes) a show's waiting room and leaves its other settings as they are:
// the operator's switch, where PUT sets the whole room.
func (s *Service) Pause(ctx context.Context, showID string, paused bool) (*boxoffice.WaitRoom, error) {
	room, err := s.store.PauseWaitRoom(ctx, showID, paused, s.now())
	s.forget(showID)
	return room, err
}

// Get returns a show's waiting room with its counts.
func (s *Service) Get(ctx context.Context, showID string) (*boxoffice.WaitRoom, error) {
	return s.store.GetWaitRoom(ctx, showID, true)
}

// Rooms returns up to limit waiting rooms with their counts, for an operator's view. Each count
// of those waiting reads the queue's index of waiting entries.
func (s *Service) Rooms(ctx context.Context, limit int) ([]*boxoffice.WaitRoom, error) {
	shows, err := s.store.WaitRoomShows(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*boxoffice.WaitRoom, 0, min(len(shows), limit))
	for _, id := range shows {
		if len(out) == limit {
			break
		}
		room, err := s.store.GetWaitRoom(ctx, id, true)
		if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
			continue // deleted since the list was read
		}
		if err != nil {
			return nil, err
		}
		out = append(out, room)
	}
	return out, nil
}

// Delete removes a show's waiting room and its queue: the show sells to anyone again.
func (s *Service) Delete(ctx context.Context, showID string) error {
	found, err := s.store.DeleteWaitRoom(ctx, showID)
	s.forget(showID)
	s.places.forgetShow(showID)
	if err == nil && !found {
		return noRoom(showID)
	}
	return err
}

func noRoom(showID string) error {
	return boxoffice.Errorf(boxoffice.ENOTFOUND, "show %s has no waiting room", showID)
}

// now is the clock to the microsecond, what the stores keep.
func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// admissionsFresh is how old a show's admission count may be for the positions of settled
// places: about the admitter's tick.
const admissionsFresh = 100 * time.Millisecond

// room returns showID's room from a cache of RoomCache, nil when it has none.
func (s *Service) room(ctx context.Context, showID string) (*boxoffice.WaitRoom, error) {
	return s.roomWithin(ctx, showID, s.cfg.RoomCache)
}

// roomWithin returns showID's room as read at most maxAge ago, nil when it has none.
func (s *Service) roomWithin(ctx context.Context, showID string, maxAge time.Duration) (*boxoffice.WaitRoom, error) {
	return s.rooms.get(ctx, showID, s.cfg.Now(), maxAge, func(ctx context.Context) (*boxoffice.WaitRoom, error) {
		room, err := s.store.GetWaitRoom(ctx, showID, false)
		if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
			return nil, nil
		}
		return room, err
	})
}

func (s *Service) forget(showID string) {
	s.rooms.forget(showID)
}

// soldOut reports whether showID has no ticket left to hold (every one sold or held), as read
// at most RoomCache ago for all of the show's waiting tickets; false when that is not known
// (no Config.Available, or the read failed: a ticket then says nothing of it).
func (s *Service) soldOut(ctx context.Context, showID string) bool {
	if s.cfg.Available == nil {
		return false
	}
	left, err := s.lefts.get(ctx, showID, s.cfg.Now(), s.cfg.RoomCache, func(ctx context.Context) (int, error) {
		return s.cfg.Available(ctx, showID)
	})
	if err != nil {
		s.log.Debug("waiting room: tickets left", "show", showID, "err", err)
		return false
	}
	return left == 0
}

// Ticket is a buyer's place in a show's queue, as the API answers it.
type Ticket struct {
	ID     string `json:"id"`
	ShowID string `json:"show_id"`
	// Status is waiting, admitted (Token opens holds until AdmissionExpiresAt) or expired (the
	// admission ran out).
	Status string `json:"status"`
	// Position is 1 for the next buyer to be let through; null before the on-sale, when the
	// draw has not been made public, and once admitted.
	Position *int `json:"position"`
	// EstimatedWaitSeconds is the time to the on-sale plus the position at the room's rate.
	EstimatedWaitSeconds *int       `json:"estimated_wait_seconds"`
	OpensAt              time.Time  `json:"opens_at"`
	JoinedAt             time.Time  `json:"joined_at"`
	AdmittedAt           *time.Time `json:"admitted_at"`
	AdmissionExpiresAt   *time.Time `json:"admission_expires_at"`
	// Token reads the ticket until TokenExpiresAt and, admitted, opens holds (the Queue-Ticket
	// header) until AdmissionExpiresAt.
	Token          string    `json:"token"`
	TokenExpiresAt time.Time `json:"token_expires_at"`
	// PollAfterSeconds is how long the holder of a waiting ticket should wait before reading it
	// again (pollAfter); absent once the ticket is done.
	PollAfterSeconds int `json:"poll_after_seconds,omitempty"`
	// Paused is set while the ticket waits in a paused room: nobody is let through until the
	// venue resumes it, and the estimated wait counts from then. The place is kept.
	Paused bool `json:"paused,omitempty"`
	// SoldOut is set while the ticket waits and the show has no ticket left to hold: every one
	// is sold or held. Held tickets that are not bought come back, so the place is kept, but a
	// buyer far back can stop waiting for nothing.
	SoldOut bool `json:"sold_out,omitempty"`
}

// pollMax is the longest a waiting buyer is asked to wait between two reads of their ticket.
const pollMax = 5

// pollAfter is how long a waiting ticket's holder should wait before reading it again, in
// seconds: a quarter of the estimated wait, between 1 and pollMax, so that a buyer learns of
// their turn within a quarter of the wait (and within a second near the front), while the crowd
// far back asks less often. A stadium's million waiting, admitted at 5,000 a second, then read
// their tickets some 230,000 times a second in all rather than a million times; the buyer's page
// and the server-sent events keep to it. Before the on-sale it is pollMax: the buyers joined at
// random moments, so their reads stay spread over the on-sale rather than all falling on it.
// An unknown position (the first numbering after the on-sale) is asked again in a second.
func pollAfter(beforeOnSale bool, wait int, known bool) int {
	switch {
	case beforeOnSale:
		return pollMax
	case !known:
		return 1
	}
	return min(max((wait+3)/4, 1), pollMax)
}

// ReadAgainIn is how long a holder of t waits before reading it again, polling or on a stream:
// its PollAfterSeconds, and at least a second.
func (t *Ticket) ReadAgainIn() time.Duration {
	return max(time.Second, time.Duration(t.PollAfterSeconds)*time.Second)
}

// Done says the ticket will not change any more: admitted or expired.
func (t *Ticket) Done() bool { return t.Status != statusWaiting }

// JoinInput is the body of POST /v1/shows/{show_id}/waiting-room/tickets.
type JoinInput struct {
	Buyer struct {
		Email string `json:"email"`
	} `json:"buyer"`
}

// Join gives the buyer a place in the show's queue, or the place they already have (created
// false); the answer carries a fresh token either way. It costs one append, written with other
// joins in one store call; the position is for GET to tell.
func (s *Service) Join(ctx context.Context, showID string, in JoinInput) (*Ticket, bool, error) {
	if !boxoffice.ValidEmail(in.Buyer.Email) {
		return nil, false, boxoffice.Validation(boxoffice.FieldError{Field: "buyer.email", Message: "must be a valid email address"})
	}
	room, err := s.room(ctx, showID)
	if err != nil {
		return nil, false, err
	}
	if room == nil {
		return nil, false, noRoom(showID)
	}
	s.rankMu.Lock()
	rank := s.cfg.Rank()
	s.rankMu.Unlock()
	p := &pendingJoin{join: boxoffice.QueueJoin{ShowID: showID, Identity: boxoffice.BuyerKey(in.Buyer.Email),
		Rank: rank, At: s.now()}, done: make(chan struct{})}
	select {
	case s.joins <- p:
	default:
		return nil, false, boxoffice.Overloaded(time.Second, "the waiting room is taking more arrivals than it can write; retry")
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	if p.err != nil {
		return nil, false, p.err
	}
	if p.entry == nil {
		// The room went between the cache's answer and the write.
		s.forget(showID)
		return nil, false, noRoom(showID)
	}
	return s.ticket(ctx, room, p.entry, buyerHash(p.entry.Identity), -1), p.entry.Created, nil
}

// Status reads the ticket a token names: its status, position and estimated wait, with a fresh
// token (an admitted one once the queue has let the buyer through).
func (s *Service) Status(ctx context.Context, token string) (*Ticket, error) {
	c, err := parse(s.secret, token)
	if err != nil {
		return nil, err
	}
	if !s.cfg.Now().Before(c.Expires) {
		return nil, boxoffice.Errorf(boxoffice.ETICKETEXPIRED,
			"the queue ticket's token expired: join again with the same buyer for a fresh one (the place is kept)")
	}
	room, err := s.room(ctx, c.ShowID)
	if err != nil {
		return nil, err
	}
	if room == nil {
		return nil, errBadToken()
	}
	p, known := s.places.get(room, c.Seq)
	if known && !s.cfg.Now().Before(room.OpensAt) {
		// A settled place needs no read of its entry while it waits: the token binds the
		// number to the buyer and the show, and the position is the place less the show's
		// admissions, read at most every admissionsFresh for all of the show's tickets. A
		// crowd polling (or waiting on events, a read a second each) then costs the store
		// nothing per buyer. Once the admissions reach the place, the entry is read for its
		// admission.
		fresh, err := s.roomWithin(ctx, c.ShowID, min(admissionsFresh, s.cfg.RoomCache))
		if err != nil {
			return nil, err
		}
		if fresh == nil {
			return nil, errBadToken()
		}
		if ahead := p.before - int64(fresh.Admitted); ahead >= 0 && fresh.CreatedAt.Equal(room.CreatedAt) {
			e := &boxoffice.QueueEntry{Seq: c.Seq, ShowID: c.ShowID, JoinedAt: time.UnixMicro(p.joined).UTC()}
			return s.ticket(ctx, fresh, e, c.Buyer, int(ahead+1)), nil
		}
	}
	e, admitted, err := s.store.QueueEntry(ctx, c.Seq)
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND || err == nil && (e.ShowID != c.ShowID || buyerHash(e.Identity) != c.Buyer) {
		// The room was deleted (and its queue with it), or, past a store reset, the number is
		// someone else's place.
		return nil, errBadToken()
	}
	if err != nil {
		return nil, err
	}
	pos := -1
	switch {
	case !e.AdmittedAt.IsZero():
		s.places.forget(room, c.Seq)
	case !s.cfg.Now().Before(room.OpensAt):
		// Positions are told from the on-sale on. A known place gets here only when it is
		// stale: the admissions passed it though the entry waits (entries before it went some
		// other way: a store restored), or the room was made again. It is placed afresh.
		if known {
			// Only then: a numbering that settled the place since it was looked up has it right.
			s.places.forget(room, c.Seq)
		}
		if pos, err = s.position(ctx, room, e, admitted); err != nil {
			return nil, err
		}
	}
	return s.ticket(ctx, room, e, c.Buyer, pos), nil
}

// ticket renders e, for the buyer whose hash the token carries; pos < 0 is unknown.
func (s *Service) ticket(ctx context.Context, room *boxoffice.WaitRoom, e *boxoffice.QueueEntry, buyer string, pos int) *Ticket {
	now := s.now()
	t := &Ticket{ID: ticketIDPrefix + strconv.FormatInt(e.Seq, 10), ShowID: e.ShowID, Status: statusWaiting,
		OpensAt: room.OpensAt, JoinedAt: e.JoinedAt, TokenExpiresAt: now.Add(s.cfg.TicketTTL).Truncate(time.Second)}
	c := claims{ShowID: e.ShowID, Seq: e.Seq, Buyer: buyer, Expires: t.TokenExpiresAt}
	switch {
	case !e.AdmittedAt.IsZero():
		until := e.AdmittedAt.Add(time.Duration(room.AdmissionTTLSeconds) * time.Second).Truncate(time.Second)
		admitted := e.AdmittedAt
		t.AdmittedAt, t.AdmissionExpiresAt = &admitted, &until
		if now.Before(until) {
			t.Status, c.AdmittedUntil = statusAdmitted, until
		} else {
			t.Status = statusLapsed
		}
	case now.Before(room.OpensAt):
		// The draw stays secret until the on-sale; the wait is at least the time to it.
		wait := int(room.OpensAt.Sub(now).Seconds() + 0.999)
		t.EstimatedWaitSeconds, t.PollAfterSeconds = &wait, pollAfter(true, wait, true)
	case pos > 0:
		p := pos
		wait := (pos + room.AdmitPerSecond - 1) / room.AdmitPerSecond
		t.Position, t.EstimatedWaitSeconds, t.PollAfterSeconds = &p, &wait, pollAfter(false, wait, true)
	default:
		t.PollAfterSeconds = pollAfter(false, 0, false)
	}
	if t.Status == statusWaiting {
		t.Paused, t.SoldOut = room.Paused, s.soldOut(ctx, e.ShowID)
		if t.Paused || t.SoldOut {
			// The queue does not move until the resume, or tickets come back: a read every
			// pollMax notices either soon enough.
			t.PollAfterSeconds = pollMax
		}
	}
	t.Token = sign(s.secret, c)
	return t
}

// errClosed answers joins caught by Close: the server is stopping, and another (or this one,
// restarted) takes the retry.
var errClosed = boxoffice.Overloaded(time.Second, "the server is stopping; retry")
