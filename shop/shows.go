package shop

import (
	"context"
	"sync"
	"time"

	"boxoffice"
)

// showCacheTTL is how long a show read for the pages is answered again: every open page polls its
// show's counts every few seconds, and a crowd's polls then cost the store about one read a second
// per show rather than one per poll. Counts a second old are fine to look at; a hold decides on
// the store, never on these.
const showCacheTTL = time.Second

// maxCachedShows bounds the cache: show ids come from URLs, and only shows that exist are kept.
const maxCachedShows = 10000

// cachedShow is a show as read at at.
type cachedShow struct {
	show *boxoffice.Show
	at   time.Time
}

// showCache keeps each show's last read.
type showCache struct {
	mu    sync.Mutex
	shows map[string]cachedShow
}

// show returns the show id, read from the store at most showCacheTTL ago. The show is shared
// between requests: callers only read it.
func (s *Shop) show(ctx context.Context, id string) (*boxoffice.Show, error) {
	now := s.opts.Now()
	c := &s.shows
	c.mu.Lock()
	e, ok := c.shows[id]
	c.mu.Unlock()
	if ok && now.Sub(e.at) >= 0 && now.Sub(e.at) < showCacheTTL {
		return e.show, nil
	}
	show, err := s.svc.GetShow(ctx, id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.shows == nil || len(c.shows) >= maxCachedShows {
		c.shows = make(map[string]cachedShow)
	}
	c.shows[id] = cachedShow{show: show, at: now}
	c.mu.Unlock()
	return show, nil
}
