package sale

import (
	"context"
	"sync"
	"time"

	"boxoffice"
)

// showCacheTTL bounds how long a purchase may use a show read before: its name, tiers and
// prices. Changes made through this process reach the cache at once (PutShow forgets the show);
// changes made by another server on the same store, within this long.
const showCacheTTL = time.Second

// showCache keeps recently read shows for the purchase path, which would otherwise read the
// show in a transaction of its own on every request. Counts in a cached show are stale and
// never used: the inventory strategy decides what is left.
type showCache struct {
	mu    sync.Mutex
	shows map[string]cachedShow
	gen   uint64 // moves on with every forget, so that a read that raced with one is not kept
	// soldOut marks tiers whose reservation was refused sold_out here within showCacheTTL: their
	// purchases take the reading path, which refuses from a committed snapshot without taking
	// the writer, so a stampede after the sell-out spares it.
	soldOut map[string]time.Time // show id + "/" + tier id → when
}

// markSoldOut notes that a reservation of the tier was refused sold_out.
func (c *showCache) markSoldOut(showID, tierID string) {
	c.mu.Lock()
	if c.soldOut == nil || len(c.soldOut) >= maxCachedShows {
		c.soldOut = make(map[string]time.Time)
	}
	c.soldOut[showID+"/"+tierID] = time.Now()
	c.mu.Unlock()
}

// isSoldOut reports whether the tier was refused sold_out here within showCacheTTL.
func (c *showCache) isSoldOut(showID, tierID string) bool {
	c.mu.Lock()
	at, ok := c.soldOut[showID+"/"+tierID]
	c.mu.Unlock()
	return ok && time.Since(at) < showCacheTTL
}

type cachedShow struct {
	show *boxoffice.Show
	at   time.Time
}

// get returns the show from the cache or, when it is missing or older than showCacheTTL, from
// the store.
func (c *showCache) get(ctx context.Context, store boxoffice.Store, id string) (*boxoffice.Show, error) {
	c.mu.Lock()
	e, ok := c.shows[id]
	gen := c.gen
	c.mu.Unlock()
	if ok && time.Since(e.at) < showCacheTTL {
		return e.show, nil
	}
	var show *boxoffice.Show
	err := store.View(ctx, func(tx boxoffice.Tx) (err error) {
		show, err = tx.GetShow(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.gen == gen {
		if c.shows == nil {
			c.shows = make(map[string]cachedShow)
		}
		if len(c.shows) >= maxCachedShows {
			clear(c.shows) // simplest bound; a busy sale refills it from one read a show
		}
		c.shows[id] = cachedShow{show: show, at: time.Now()}
	}
	c.mu.Unlock()
	return show, nil
}

// maxCachedShows bounds the show cache.
const maxCachedShows = 10_000

// forget drops a show that was changed through this process.
func (c *showCache) forget(id string) {
	c.mu.Lock()
	delete(c.shows, id)
	c.gen++
	c.mu.Unlock()
}

// claims are the idempotency keys of purchases in flight in this process. A purchase whose key is
// not in flight here skips the read of its record and goes straight to its reservation, whose
// insert of the record is the check (a key already used elsewhere clashes there, and the purchase
// then takes the reading path). A second request with a key in flight waits until the first has
// reserved, so that its read finds the first's record, as if it had come a moment later, instead
// of clashing with it in the writer's batch.
//
// A key this process finished lately (recent) takes the reading path too: a request can arrive
// after its own retry has finished — a client that gave up on it and retried at once — and would
// otherwise clash in the writer's batch, which on PostgreSQL voids and reruns the whole batch.
//
// When the request that ended lately (or the one a second request waited for) ended with an
// answer stored on its record, claims keep that answer, and a retry is answered from memory
// without reading the store: a stored answer never changes until its record expires, which is
// far beyond recentFor (MinIdempotencyTTL), so it is what the read would have found. In a
// stampede, retries of timed-out requests had each cost a read transaction.
type claims struct {
	mu     sync.Mutex
	m      map[string]*claim
	recent map[string]recentKey // key → how its last request ended here
	ring   []ended              // the same, in the order they came, to bound recent
	next   int
}

// recentKey is how a key's last request ended here: when, and its stored answer if it had one.
type recentKey struct {
	at time.Time
	known
}

// known is a stored final answer of a key, kept in memory for its retries: the fingerprint of the
// request it answered and the response. at is the service clock's time when it was kept, so
// that a test moving that clock past the idempotency TTL sees the key forgotten, as the store
// would once its record is swept.
type known struct {
	fingerprint string
	res         *boxoffice.Response
	at          time.Time
}

// ended is a key and when its request ended here.
type ended struct {
	key string
	at  time.Time
}

// recentKeys bounds how many finished keys claims remembers, recentFor how long.
const (
	recentKeys = 4096
	recentFor  = 10 * time.Second
)

type claim struct {
	reserved chan struct{} // closed once the first request's reservation has committed or failed
	once     sync.Once
	// answer, when set before reserved closes, is the first request's stored final answer
	// (a refusal): a request that waited for it replays it without reading.
	answer known
}

func (c *claim) done() { c.once.Do(func() { close(c.reserved) }) }

// answered sets the claim's stored final answer and marks the reservation done. Called at most
// once, by the request that owns the claim, before anything else closes reserved.
func (c *claim) answered(k known) {
	c.once.Do(func() {
		c.answer = k
		close(c.reserved)
	})
}

// take claims idem's key. first says the key was neither in flight in this process nor finished
// here lately; release ends the claim, keeping the request's stored answer (nil: none) for its
// retries, and must be called; cl marks the reservation done (release does too). When the key's
// answer is known in memory, replay is set and nothing is claimed: the caller answers with it.
func (c *claims) take(ctx context.Context, idem Idem) (first bool, replay *known, cl *claim, release func(k known)) {
	k := idem.Scope + "\x00" + idem.Key
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]*claim)
	}
	if other, ok := c.m[k]; ok {
		c.mu.Unlock()
		select {
		case <-other.reserved:
			if other.answer.res != nil {
				a := other.answer
				return false, &a, nil, nil
			}
		case <-ctx.Done():
		}
		return false, nil, &claim{reserved: make(chan struct{})}, func(known) {}
	}
	r, seen := c.recent[k]
	if seen && r.res != nil && time.Since(r.at) <= recentFor {
		c.mu.Unlock()
		a := r.known
		return false, &a, nil, nil
	}
	cl = &claim{reserved: make(chan struct{})}
	c.m[k] = cl
	c.mu.Unlock()
	first = !seen || time.Since(r.at) > recentFor
	return first, nil, cl, func(a known) {
		cl.done()
		c.mu.Lock()
		delete(c.m, k)
		c.remember(k, a)
		c.mu.Unlock()
	}
}

// remember notes that k's request ended now with answer a (a.res nil: none stored), forgetting
// the oldest key past recentKeys.
func (c *claims) remember(k string, a known) {
	if c.recent == nil {
		c.recent = make(map[string]recentKey, recentKeys)
		c.ring = make([]ended, recentKeys)
	}
	// The oldest goes, unless its key ended again since (a later slot holds that).
	if old := c.ring[c.next]; old.key != "" && c.recent[old.key].at.Equal(old.at) {
		delete(c.recent, old.key)
	}
	now := time.Now()
	c.ring[c.next] = ended{key: k, at: now}
	c.next = (c.next + 1) % recentKeys
	c.recent[k] = recentKey{at: now, known: a}
}

// replayKnown answers a request from its key's answer kept in memory, as judge answers from the
// record: another fingerprint is EIDEMREUSED, the same one the stored response, replayed. ok is
// false when the answer is too old by the service clock to be trusted (its record may be swept):
// the caller then reads the store.
func (s *Service) replayKnown(idem Idem, k *known) (res *boxoffice.Response, err error, ok bool) {
	if s.now().Sub(k.at) > recentFor {
		return nil, nil, false
	}
	if k.fingerprint != idem.Fingerprint {
		err = boxoffice.Errorf(boxoffice.EIDEMREUSED, "this Idempotency-Key was used with a different request")
	} else {
		res = k.res
	}
	s.countIdem(res, err)
	return res, err, true
}

// purchaseNew is the purchase of a key not in flight in this process: no read of the record, the
// show from the cache. done false means the key turned out to be known (its record exists), the
// show or tier to be missing or the tier sold out lately, and the purchase must take the reading
// path, which answers those.
func (s *Service) purchaseNew(ctx context.Context, p *boxoffice.Principal, idem Idem, in PurchaseInput, cl *claim) (res *boxoffice.Response, replayed, done bool, err error) {
	defer cl.done()
	show, err := s.showCache.get(ctx, s.store, in.ShowID)
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
		return nil, false, false, nil
	} else if err != nil {
		return nil, false, true, err
	}
	tier := show.Tier(in.TierID)
	if tier == nil {
		return nil, false, false, nil
	}
	if refused := s.soldOutInMemory(in.ShowID, in.TierID, in.Quantity); refused != nil {
		res, replayed, done, err = s.refuse(idem, refused)
		if res != nil && err == nil {
			// A retry waiting for this key replays the stored refusal without reading it.
			cl.answered(known{fingerprint: idem.Fingerprint, res: res, at: s.now()})
		}
		return res, replayed, done, err
	}
	if s.showCache.isSoldOut(in.ShowID, in.TierID) {
		return nil, false, false, nil
	}
	h := s.newHold(p, show, in.TierID, in.Quantity, in.Buyer.Email)
	h.Seats = in.Seats
	order := s.newOrder(h, tier, in.Payment.Token, true)
	err = s.reserve(ctx, show, h, func(tx boxoffice.Tx) error {
		if err := tx.InsertOrder(ctx, order); err != nil {
			return err
		}
		return insertRecord(ctx, tx, s.leasedRecord(idem, h.ID, order.ID))
	})
	cl.done()
	switch {
	case err == errKeyTaken:
		return nil, false, false, nil
	case boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND:
		return nil, false, false, nil // the tier went away since the show was cached
	case err != nil:
		if boxoffice.ErrorCode(err) == boxoffice.ESOLDOUT {
			s.showCache.markSoldOut(in.ShowID, in.TierID)
		}
		res, replayed, err = s.finish(ctx, idem, nil, err)
		return res, replayed, true, err
	}
	res, replayed, err = s.await(ctx, idem, order)
	return res, replayed, true, err
}

// soldOutInMemory is the sold_out refusal of quantity tickets of the tier, rendered, when the
// strategy holds the tier's committed counts and they leave fewer, else nil. Only where this
// process is the store's one writer (ExclusiveStore) are those counts the store's: the refusal
// is then as true as one read from the store at this instant, without the read.
func (s *Service) soldOutInMemory(showID, tierID string, quantity int) *boxoffice.Response {
	if !s.cfg.ExclusiveStore {
		return nil
	}
	k, ok := s.inv.(boxoffice.CountsKeeper)
	if !ok {
		return nil
	}
	c, ok := k.Committed(showID, tierID)
	if !ok || c.Available() >= quantity {
		return nil
	}
	return s.refusals.get(s.render, tierID, c.Available(), quantity)
}

// renderedRefusals keeps the sold_out problems soldOutInMemory answered lately. A stampede after
// the sell-out asks for the same few (tier, tickets left, tickets asked) over and over, and the
// problem is a function of those alone, so it is formatted and encoded once instead of for every
// refusal (4% of a stampede's CPU profile). A stored response is never changed, so one may be
// shared by many records.
type renderedRefusals struct {
	mu sync.Mutex
	m  map[refusalKey]*boxoffice.Response
}

type refusalKey struct {
	tier                string
	available, quantity int
}

// maxRenderedRefusals bounds renderedRefusals; past it the map starts again.
const maxRenderedRefusals = 1024

// get returns the rendered refusal of quantity tickets of the tier with available left.
func (r *renderedRefusals) get(render Renderer, tierID string, available, quantity int) *boxoffice.Response {
	k := refusalKey{tierID, available, quantity}
	r.mu.Lock()
	res, ok := r.m[k]
	r.mu.Unlock()
	if ok {
		return res
	}
	res = render.Problem(boxoffice.SoldOut(tierID, available, quantity))
	r.mu.Lock()
	if r.m == nil || len(r.m) >= maxRenderedRefusals {
		r.m = make(map[refusalKey]*boxoffice.Response)
	}
	r.m[k] = res
	r.mu.Unlock()
	return res
}

// refuse stores the final refusal res under idem's key, in a transaction shared with other
// records (storeRecord), and answers it. A key that turns out to be known is done false: the
// reading path answers it.
func (s *Service) refuse(idem Idem, res *boxoffice.Response) (_ *boxoffice.Response, replayed, done bool, err error) {
	err = s.storeRecord(s.newRecord(idem, res))
	switch {
	case err == errKeyTaken:
		return nil, false, false, nil
	case err != nil:
		return nil, false, true, err
	}
	return res, false, true, nil
}
