package sale

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"boxoffice"
)

// Bounds of a seat map: a stadium's tier fits, a mistake does not.
const (
	maxSeatsPerTier = 100_000
	maxSeatsPerRow  = 1_000
)

// seatPartRE is what a section id, a row id and a seat label may be: short, and without "-", so
// that the seat id "<section>-<row>-<label>" names one seat only.
var seatPartRE = regexp.MustCompile(`^[A-Za-z0-9]{1,20}$`)

// validSeatMap checks the seat map of tier f (a field prefix such as "tiers[0].") and returns its
// seats, ranked in the map's order: sections, then rows, then seats along each row.
func validSeatMap(v *validator, f string, m *SeatMapInput) []boxoffice.Seat {
	var seats []boxoffice.Seat
	seen := map[string]bool{}
	v.check(len(m.Sections) >= 1, f+"seat_map.sections", "must have at least one section")
	for i, sec := range m.Sections {
		sf := fmt.Sprintf("%sseat_map.sections[%d].", f, i)
		v.check(seatPartRE.MatchString(sec.ID), sf+"id", "must be 1 to 20 letters or digits")
		v.check(len(sec.Rows) >= 1, sf+"rows", "must have at least one row")
		rowSeen := map[string]bool{}
		for j, row := range sec.Rows {
			rf := fmt.Sprintf("%srows[%d].", sf, j)
			v.check(seatPartRE.MatchString(row.ID), rf+"id", "must be 1 to 20 letters or digits")
			v.check(!rowSeen[row.ID], rf+"id", "is used by another row of the section")
			rowSeen[row.ID] = true
			labels := row.Labels
			switch {
			case row.Seats != 0 && len(row.Labels) != 0:
				v.check(false, rf+"seats", "give seats (a count) or labels, not both")
				continue
			case row.Seats != 0:
				if row.Seats < 0 || row.Seats > maxSeatsPerRow {
					v.check(false, rf+"seats", "must be 1 to "+itoa(maxSeatsPerRow))
					continue
				}
				labels = make([]string, row.Seats)
				for k := range labels {
					labels[k] = strconv.Itoa(k + 1)
				}
			case len(row.Labels) == 0 || len(row.Labels) > maxSeatsPerRow:
				v.check(false, rf+"seats", "give 1 to "+itoa(maxSeatsPerRow)+" seats, as a count or as labels")
				continue
			}
			inRow := map[string]bool{}
			start := len(seats)
			for pos, label := range labels {
				if !seatPartRE.MatchString(label) {
					v.check(false, rf+"labels", "each label must be 1 to 20 letters or digits")
					break
				}
				if inRow[label] {
					v.check(false, rf+"labels", "label "+label+" is given twice")
					break
				}
				inRow[label] = true
				id := boxoffice.SeatID(sec.ID, row.ID, label)
				if seen[id] {
					v.check(false, sf+"id", "is used by another section")
					break
				}
				seen[id] = true
				seats = append(seats, boxoffice.Seat{ID: id, Section: sec.ID, Row: row.ID, Label: label,
					Rank: len(seats), Pos: pos, State: boxoffice.SeatAvailable})
			}
			mark := func(list []string, field string, set func(*boxoffice.Seat)) {
				for _, label := range list {
					if !inRow[label] {
						v.check(false, rf+field, "names "+strconv.Quote(label)+", which is not a seat of the row")
						return
					}
				}
				for k := start; k < len(seats); k++ {
					if slices.Contains(list, seats[k].Label) {
						set(&seats[k])
					}
				}
			}
			mark(row.Accessible, "accessible", func(s *boxoffice.Seat) { s.Accessible = true })
			mark(row.RestrictedView, "restricted_view", func(s *boxoffice.Seat) { s.RestrictedView = true })
		}
	}
	v.check(len(seats) <= maxSeatsPerTier, f+"seat_map", "may have at most "+itoa(maxSeatsPerTier)+" seats")
	return seats
}

// sameSeats reports whether a tier's stored seats are the map's, so that a PUT of an unchanged
// map (a show renamed mid-sale) does not count as changing seats.
func sameSeats(stored, seats []boxoffice.Seat) bool {
	return slices.EqualFunc(stored, seats, func(a, b boxoffice.Seat) bool {
		return a.ID == b.ID && a.Section == b.Section && a.Row == b.Row && a.Label == b.Label && a.Rank == b.Rank &&
			a.Pos == b.Pos && a.Accessible == b.Accessible && a.RestrictedView == b.RestrictedView
	})
}

// putSeats writes the seat maps of show's tiers in tx after the show itself: a tier whose map
// changes (made seated, unseated, or given other seats) must have nothing held or sold, since
// its holds name seats of the old map. maps has the seats of each seated tier of show; old is
// the show as stored before, nil for a new one.
func putSeats(ctx context.Context, tx boxoffice.Tx, show, old *boxoffice.Show, maps map[string][]boxoffice.Seat) error {
	for _, t := range show.Tiers {
		seats, seated := maps[t.ID]
		var was *boxoffice.Tier
		if old != nil {
			was = old.Tier(t.ID)
		}
		if !seated && (was == nil || !was.Seated) {
			continue
		}
		if was != nil && was.Seated && seated {
			stored, err := tx.Seats(ctx, show.ID, t.ID)
			if err != nil {
				return err
			}
			if sameSeats(stored, seats) {
				continue
			}
		}
		if was != nil && was.Held+was.Sold > 0 {
			return boxoffice.Errorf(boxoffice.ECAPACITYCONFLICT, "tier %s has %d held and %d sold tickets: its seat map cannot change until none are", t.ID, was.Held, was.Sold)
		}
		if err := tx.PutSeats(ctx, show.ID, t.ID, seats); err != nil {
			return err
		}
	}
	if old != nil {
		for _, t := range old.Tiers {
			if t.Seated && show.Tier(t.ID) == nil {
				if err := tx.PutSeats(ctx, show.ID, t.ID, nil); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// errSeatRace is a best-available claim that lost a seat to another transaction between reading
// the free seats and taking them (possible where the strategy lets two reservations of a tier
// run at once); reserve tries again with the seats free then.
var errSeatRace = errors.New("a chosen seat was taken meanwhile")

// Best available reads the tier's free seats best first, bestAvailableWindow of them, and only
// when those hold no stretch side by side for the party reads bestAvailableWideWindow: the first
// is a few rows, where a party nearly always fits, and costs a few hundred index entries a hold;
// the second is enough to find seats together in a stadium's tier without reading all of it.
const (
	bestAvailableWindow     = 64
	bestAvailableWideWindow = 4000
)

// takeSeats gives hold h its seats in tx: the ones it names (all or none), or the best available.
// It returns them best first.
func takeSeats(ctx context.Context, tx boxoffice.Tx, h *boxoffice.Hold, wanted []string) ([]string, error) {
	if len(wanted) > 0 {
		n, err := tx.ClaimSeats(ctx, h.ShowID, h.TierID, h.ID, wanted)
		if err != nil {
			return nil, err
		}
		if n != len(wanted) {
			return nil, whyNotSeats(ctx, tx, h, wanted)
		}
	} else {
		var pick []boxoffice.Seat
		for _, window := range []int{bestAvailableWindow, bestAvailableWideWindow} {
			free, err := tx.AvailableSeats(ctx, h.ShowID, h.TierID, window)
			if err != nil {
				return nil, err
			}
			var together bool
			pick, together = bestAvailable(free, h.Quantity)
			if together || len(free) < window {
				break // seats side by side, or every free seat was read
			}
		}
		if len(pick) < h.Quantity {
			return nil, boxoffice.SoldOut(h.TierID, len(pick), h.Quantity)
		}
		ids := make([]string, len(pick))
		for i, s := range pick {
			ids[i] = s.ID
		}
		n, err := tx.ClaimSeats(ctx, h.ShowID, h.TierID, h.ID, ids)
		if err != nil {
			return nil, err
		}
		if n != len(ids) {
			return nil, errSeatRace
		}
		return ids, nil // best first already: the free seats come by rank
	}
	got, err := tx.SeatsOfHold(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(got))
	for i, s := range got {
		ids[i] = s.ID
	}
	return ids, nil
}

// whyNotSeats is the refusal of a claim of named seats that did not take them all: seats that
// are not the tier's are a validation error, taken ones ESEATUNAVAILABLE naming them. It reads
// the named seats only: two browsers racing for one seat of a stadium's tier must not cost the
// show's writer a read of the whole tier.
func whyNotSeats(ctx context.Context, tx boxoffice.Tx, h *boxoffice.Hold, wanted []string) error {
	seats, err := tx.SeatsByID(ctx, h.ShowID, h.TierID, wanted)
	if err != nil {
		return err
	}
	state := make(map[string]boxoffice.SeatState, len(seats))
	for _, s := range seats {
		state[s.ID] = s.State
		if s.HoldID == h.ID {
			state[s.ID] = boxoffice.SeatAvailable // claimed by this very attempt, which is undone
		}
	}
	var unknown, taken []string
	for _, id := range wanted {
		switch st, ok := state[id]; {
		case !ok:
			unknown = append(unknown, id)
		case st != boxoffice.SeatAvailable:
			taken = append(taken, id)
		}
	}
	if len(unknown) > 0 {
		return boxoffice.Validation(boxoffice.FieldError{Field: "seats",
			Message: fmt.Sprintf("%q are not seats of tier %s", unknown, h.TierID)})
	}
	if len(taken) == 0 {
		return errSeatRace // free now: taken and given back between the claim and this read
	}
	return boxoffice.Errorf(boxoffice.ESEATUNAVAILABLE, "seats %q of tier %s are held or sold", taken, h.TierID)
}

// bestAvailable chooses n of the free seats (best first, as the seat map ranks them). The rule:
//
//  1. Seats that are accessible or have a restricted view are left for those who ask for them
//     by name, unless the others are too few.
//  2. n seats side by side in one row: in the best row that has a stretch of free seats of
//     exactly n, or of n+2 or more, so that no single seat is left alone between taken ones;
//     taken from the stretch's best end.
//  3. Failing that, the best stretch of n+1 (which leaves one seat alone).
//  4. Failing that (no row has n free side by side), the n best free seats.
//
// It returns fewer than n only when there are fewer than n free seats; together says the seats
// are side by side (rule 2 or 3).
func bestAvailable(free []boxoffice.Seat, n int) (seats []boxoffice.Seat, together bool) {
	plain := slices.DeleteFunc(slices.Clone(free), func(s boxoffice.Seat) bool { return s.Accessible || s.RestrictedView })
	if len(plain) >= n {
		free = plain
	}
	if len(free) < n {
		return free, false
	}
	// Stretches of free seats side by side: one row, consecutive places.
	var runs [][]boxoffice.Seat
	for i := 0; i < len(free); {
		j := i + 1
		for j < len(free) && free[j].Section == free[i].Section && free[j].Row == free[i].Row && free[j].Pos == free[j-1].Pos+1 {
			j++
		}
		runs = append(runs, free[i:j])
		i = j
	}
	for _, r := range runs {
		if len(r) == n || len(r) >= n+2 {
			return r[:n], true
		}
	}
	for _, r := range runs {
		if len(r) == n+1 {
			return r[:n], true
		}
	}
	return free[:n], false
}

// SeatMap is GET /v1/shows/{id}/seats: every seat of the show's seated tiers with its state.
type SeatMap struct {
	ShowID string           `json:"show_id"`
	Seats  []boxoffice.Seat `json:"seats"`
	// At is when the map was read; it is at most seatMapMaxAge old.
	At time.Time `json:"at"`
}

// seatMapMaxAge is how long a read seat map is answered again to everyone who asks: a crowd
// polling the map of a show on sale then costs the store two reads a second, not one per poll.
const seatMapMaxAge = 500 * time.Millisecond

// seatMapCache keeps each show's last seat map as answered, with its ETag.
type seatMapCache struct {
	mu    sync.Mutex
	shows map[string]*cachedSeatMap
}

type cachedSeatMap struct {
	mu   sync.Mutex // one read of the store at a time per show; the others wait for it
	at   time.Time
	body []byte
	etag string
}

// ShowSeats returns the show's seat map as JSON and its ETag (a hash of the body, so that a
// poller whose map has not changed gets 304 Not Modified). Maps are read at most every
// seatMapMaxAge per show; a show without seated tiers has an empty list.
func (s *Service) ShowSeats(ctx context.Context, showID string) (body []byte, etag string, err error) {
	if !boxoffice.ValidName(showID) {
		return nil, "", boxoffice.Errorf(boxoffice.ENOTFOUND, "show %q does not exist", showID)
	}
	c := &s.seatMaps
	c.mu.Lock()
	if c.shows == nil {
		c.shows = map[string]*cachedSeatMap{}
	}
	e := c.shows[showID]
	if e == nil {
		e = &cachedSeatMap{}
		c.shows[showID] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := s.now()
	if e.body != nil && now.Sub(e.at) < seatMapMaxAge && now.Sub(e.at) >= 0 {
		return e.body, e.etag, nil
	}
	m := &SeatMap{ShowID: showID, At: now.UTC()}
	err = s.store.View(ctx, func(tx boxoffice.Tx) error {
		if _, err := tx.GetShow(ctx, showID); err != nil {
			return err
		}
		var err error
		m.Seats, err = tx.Seats(ctx, showID, "")
		return err
	})
	if err != nil {
		if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
			c.mu.Lock()
			delete(c.shows, showID) // a poll of ids that do not exist must not grow the cache
			c.mu.Unlock()
		}
		return nil, "", err
	}
	if m.Seats == nil {
		m.Seats = []boxoffice.Seat{}
	}
	// The ETag hashes the seats alone, not the time they were read: an unchanged map keeps it.
	seatsJSON, err := json.Marshal(m.Seats)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(seatsJSON)
	body, err = json.Marshal(m)
	if err != nil {
		return nil, "", err
	}
	e.at, e.body, e.etag = now, body, `"`+hex.EncodeToString(sum[:12])+`"`
	return e.body, e.etag, nil
}

// forgetSeatMap drops a show's cached seat map (its map was replaced).
func (s *Service) forgetSeatMap(showID string) {
	s.seatMaps.mu.Lock()
	delete(s.seatMaps.shows, showID)
	s.seatMaps.mu.Unlock()
}
