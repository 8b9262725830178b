package http

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"boxoffice"
	"boxoffice/waitroom"
)

// WaitRoom is what the transport needs of the waiting rooms: the methods of *waitroom.Service
// it calls.
type WaitRoom interface {
	Put(ctx context.Context, showID string, in waitroom.RoomInput) (*boxoffice.WaitRoom, bool, error)
	Get(ctx context.Context, showID string) (*boxoffice.WaitRoom, error)
	Delete(ctx context.Context, showID string) error
	Pause(ctx context.Context, showID string, paused bool) (*boxoffice.WaitRoom, error)
	Join(ctx context.Context, showID string, in waitroom.JoinInput) (*waitroom.Ticket, bool, error)
	Status(ctx context.Context, token string) (*waitroom.Ticket, error)
	// Done is closed when the service stops, which ends every stream of ticket events.
	Done() <-chan struct{}
}

var _ WaitRoom = (*waitroom.Service)(nil)

// maxTokenLen bounds a token in a path; real ones are about 120 characters.
const maxTokenLen = 512

// waitRoomRoutes registers the waiting room's routes (when the server has waiting rooms).
func (h *handler) waitRoomRoutes() {
	h.handle("PUT /v1/shows/{show_id}/waiting-room", adminRole, h.putWaitRoom)
	h.handle("GET /v1/shows/{show_id}/waiting-room", clientRole, h.getWaitRoom)
	h.handle("DELETE /v1/shows/{show_id}/waiting-room", adminRole, h.deleteWaitRoom)
	h.handle("POST /v1/shows/{show_id}/waiting-room/pause", adminRole, h.pauseWaitRoom(true))
	h.handle("POST /v1/shows/{show_id}/waiting-room/resume", adminRole, h.pauseWaitRoom(false))
	h.handle("POST /v1/shows/{show_id}/waiting-room/tickets", clientRole, h.joinWaitRoom)
	h.handle("GET /v1/waiting-room/tickets/{token}", clientRole, h.getTicket)
	// The stream holds its connection for minutes: it authenticates like every route but takes
	// no slot of MaxInFlight, which bounds requests being worked on, not buyers waiting.
	h.raw("GET /v1/waiting-room/tickets/{token}/events", http.HandlerFunc(h.ticketEvents))
}

// putWaitRoom is PUT /v1/shows/{show_id}/waiting-room: natural idempotency, as for shows.
func (h *handler) putWaitRoom(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, false, err
	}
	var in waitroom.RoomInput
	if err := decodeJSON(body, &in); err != nil {
		return nil, false, err
	}
	id, err := showID(r)
	if err != nil {
		return nil, false, err
	}
	room, created, err := h.waitRoom.Put(r.Context(), id, in)
	if err != nil {
		return nil, false, err
	}
	if created {
		return h.render.Resource(http.StatusCreated, room, "/v1/shows/"+url.PathEscape(id)+"/waiting-room"), false, nil
	}
	return h.ok(room)
}

// getWaitRoom is GET /v1/shows/{show_id}/waiting-room: the settings and how many wait.
func (h *handler) getWaitRoom(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := showID(r)
	if err != nil {
		return nil, false, err
	}
	room, err := h.waitRoom.Get(r.Context(), id)
	if err != nil {
		return nil, false, err
	}
	return h.ok(room)
}

// deleteWaitRoom is DELETE /v1/shows/{show_id}/waiting-room.
func (h *handler) deleteWaitRoom(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	id, err := showID(r)
	if err != nil {
		return nil, false, err
	}
	if err := h.waitRoom.Delete(r.Context(), id); err != nil {
		return nil, false, err
	}
	return h.render.Resource(http.StatusNoContent, nil, ""), false, nil
}

// pauseWaitRoom is POST /v1/shows/{show_id}/waiting-room/pause (paused) or …/resume: the pause
// alone, the room's other settings as whoever put them last. A PUT sets the whole room, so an
// operator pausing by PUT in an incident would reset what the body left out (an automatic
// admission back to the rate, the admission's lifetime to its default). Like every POST it needs
// an Idempotency-Key, but a pause is a state, so the answer is the room as it is, not a stored
// response (as a join's is its place).
func (h *handler) pauseWaitRoom(paused bool) endpoint {
	return func(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
		var in struct{}
		if _, err := h.beginPost(r, p, &in, true); err != nil {
			return nil, false, err
		}
		id, err := showID(r)
		if err != nil {
			return nil, false, err
		}
		room, err := h.waitRoom.Pause(r.Context(), id, paused)
		if err != nil {
			return nil, false, err
		}
		return h.ok(room)
	}
}

// joinWaitRoom is POST /v1/shows/{show_id}/waiting-room/tickets. Like every POST it needs an
// Idempotency-Key, but a join is idempotent by its buyer (one place per buyer and show), so the
// answer comes from the queue rather than a stored response: 201 with a new place, 200 with the
// place the buyer has, each with a fresh token.
func (h *handler) joinWaitRoom(r *http.Request, p *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	var in waitroom.JoinInput
	if _, err := h.beginPost(r, p, &in, false); err != nil {
		return nil, false, err
	}
	id, err := showID(r)
	if err != nil {
		return nil, false, err
	}
	t, created, err := h.waitRoom.Join(r.Context(), id, in)
	if err != nil {
		return nil, false, err
	}
	if created {
		return h.render.Resource(http.StatusCreated, t, "/v1/waiting-room/tickets/"+t.Token), false, nil
	}
	return h.ok(t)
}

// token returns the {token} path value if it can be a token.
func token(r *http.Request) (string, error) {
	t := r.PathValue("token")
	if t == "" || len(t) > maxTokenLen {
		return "", notFound()
	}
	return t, nil
}

// getTicket is GET /v1/waiting-room/tickets/{token}: status, position, estimated wait, and a
// fresh token — once admitted, the one that opens holds.
func (h *handler) getTicket(r *http.Request, _ *boxoffice.Principal) (*boxoffice.Response, bool, error) {
	tok, err := token(r)
	if err != nil {
		return nil, false, err
	}
	t, err := h.waitRoom.Status(r.Context(), tok)
	if err != nil {
		return nil, false, err
	}
	return h.ok(t)
}

// ticketEvents is GET /v1/waiting-room/tickets/{token}/events: server-sent events, a "ticket"
// event with the ticket as GET answers it, with a fresh token, each time the stream reads it
// (Ticket.ReadAgainIn: each second near the front of the queue, less often far back), ending
// after the event that says admitted or expired.
// Errors before the stream starts are problems like any route's; a failure later ends the
// stream, and the client's EventSource reconnects with the last token it got.
func (h *handler) ticketEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p, err := h.authenticate(r, clientRole)
	if err == nil {
		err = h.limit.Allow(p.KeyID)
	}
	var tok string
	if err == nil {
		tok, err = token(r)
	}
	var t *waitroom.Ticket
	if err == nil {
		t, err = h.waitRoom.Status(r.Context(), tok)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if r.Method == http.MethodHead {
		// The pattern's GET takes HEAD too: the headers a stream would have, and no stream.
		streamHeader(w.Header())
		w.WriteHeader(http.StatusOK)
		return
	}
	if h.streams.open(w, t) {
		return
	}
	// The connection cannot be taken over (HTTP/2): the stream is served here, from this
	// request's goroutine.
	rc := http.NewResponseController(w)
	streamHeader(w.Header())
	w.WriteHeader(http.StatusOK)
	next := time.NewTimer(t.ReadAgainIn())
	defer next.Stop()
	for {
		// The server's WriteTimeout would end a stream that outlives it; each event has its own.
		_ = rc.SetWriteDeadline(time.Now().Add(t.ReadAgainIn() + 30*time.Second))
		if err := writeTicketEvent(w, t); err != nil {
			return
		}
		if err := rc.Flush(); err != nil || t.Done() {
			return
		}
		select {
		case <-next.C:
		case <-r.Context().Done():
			return
		case <-h.waitRoom.Done():
			return
		}
		if t, err = h.waitRoom.Status(r.Context(), t.Token); err != nil {
			return
		}
		next.Reset(t.ReadAgainIn())
	}
}
