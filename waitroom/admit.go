package waitroom

import (
	"context"
	"time"

	"boxoffice"
)

// admitLoop lets each room's queue through at its rate, every AdmitEvery. Every server runs it:
// the store spends each room's budget once whoever asks (WaitRoomStore.AdmitQueue), so more
// admitters only make admission survive a server's death.
func (s *Service) admitLoop() {
	t := time.NewTicker(s.cfg.AdmitEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.base.Done():
			return
		}
		s.AdmitOnce(s.base)
	}
}

// AdmitOnce runs one round of admission over every room and returns how many it let through.
func (s *Service) AdmitOnce(ctx context.Context) int {
	shows, err := s.store.WaitRoomShows(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("waiting room: list rooms", "err", err)
		}
		return 0
	}
	total := 0
	for _, id := range shows {
		shoppers, err := s.shoppers(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("waiting room: tickets left", "show", id, "err", err)
			}
			continue
		}
		n, err := s.store.AdmitQueue(ctx, id, s.now(), shoppers)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("waiting room: admit", "show", id, "err", err)
			}
			continue
		}
		if n > 0 {
			// Positions read the admission count from the room's cache: this server's own
			// admissions show at once.
			s.forget(id)
		}
		total += n
	}
	return total
}

// shoppers is how many buyers of showID may be shopping at once: -1 (no bound) for a room
// admitting at its rate, else the tickets its tiers can still sell plus the room's margin,
// rounded up so that a margin is never lost to rounding.
func (s *Service) shoppers(ctx context.Context, showID string) (int, error) {
	room, err := s.room(ctx, showID)
	if err != nil || room == nil || room.AdmissionMode() != boxoffice.AdmissionAuto || s.cfg.Available == nil {
		return -1, err
	}
	left, err := s.cfg.Available(ctx, showID)
	if err != nil {
		return 0, err
	}
	return left + (left*room.AutoMarginPercent+99)/100, nil
}

// HeaderTicket is the request header (gRPC: metadata) that carries a queue ticket's token to
// the requests that make holds.
const HeaderTicket = "Queue-Ticket"

type tokenKey struct{}

// WithToken returns ctx carrying the queue ticket token a request brought (the Queue-Ticket
// header, the queue-ticket metadata), for Admitted to judge. A context value, because the token
// is a credential of the request, like its API key, and not part of what it asks: a retry with
// a fresher token is the same request to the Idempotency-Key.
func WithToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return context.WithValue(ctx, tokenKey{}, token)
}

// Admitted says whether the request of ctx may hold tickets of showID for the buyer email: yes
// when the show has no waiting room, else only with a token the queue admitted, for this show and
// this buyer, whose admission has not run out. It reads no store but for the room's settings,
// kept in memory for RoomCache. A refusal is 403 not_admitted.
func (s *Service) Admitted(ctx context.Context, showID, email string) error {
	room, err := s.room(ctx, showID)
	if err != nil || room == nil {
		return err
	}
	token, _ := ctx.Value(tokenKey{}).(string)
	if token == "" {
		return notAdmitted("show %s sells through its waiting room: join it (POST /v1/shows/%s/waiting-room/tickets) "+
			"and, once admitted, send the ticket's token in the Queue-Ticket header", showID, showID)
	}
	c, err := parse(s.secret, token)
	switch {
	case err != nil:
		return notAdmitted("the queue ticket is not valid")
	case c.ShowID != showID:
		return notAdmitted("the queue ticket is for another show")
	case c.Buyer != buyerHash(boxoffice.BuyerKey(email)):
		return notAdmitted("the queue ticket is for another buyer")
	case c.AdmittedUntil.IsZero():
		return notAdmitted("the queue has not admitted this ticket yet: read it again (GET /v1/waiting-room/tickets/{token}) for an admitted token")
	case !s.cfg.Now().Before(c.AdmittedUntil):
		return notAdmitted("the admission ran out at %s", c.AdmittedUntil.Format(time.RFC3339))
	}
	return nil
}

func notAdmitted(format string, args ...any) error {
	return boxoffice.Errorf(boxoffice.ENOTADMITTED, format, args...)
}
