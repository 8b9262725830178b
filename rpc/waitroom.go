package rpc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"boxoffice"
	pb "boxoffice/gen/boxoffice/v1"
	"boxoffice/gen/boxoffice/v1/boxofficev1connect"
	"boxoffice/waitroom"
)

// The waiting room's RPCs are its REST routes (http/waitroom.go) with the same roles: the admin
// puts and deletes a room, any key reads it, joins its queue and reads a ticket. A server without
// waiting rooms answers them not_found, as REST answers routes it does not serve.

// maxTokenLen bounds a token, as REST bounds one in a path; real ones are about 120 characters.
const maxTokenLen = 512

// roomsServed answers not_found when the server has no waiting rooms.
func (s *server) roomsServed() error {
	if s.rooms == nil {
		return fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	return nil
}

// roomShow checks a show id as REST checks one in a path: a malformed one is not found.
func roomShow(id string) error {
	if !boxoffice.ValidName(id) {
		return fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	return nil
}

// ticketToken checks a token as REST checks one in a path: empty or overlong is not found.
func ticketToken(tok string) error {
	if tok == "" || len(tok) > maxTokenLen {
		return fail(boxoffice.Errorf(boxoffice.ENOTFOUND, "no such resource"))
	}
	return nil
}

// PutWaitingRoom is PUT /v1/shows/{show_id}/waiting-room: natural idempotency, as for shows.
func (s *server) PutWaitingRoom(ctx context.Context, req *connect.Request[pb.PutWaitingRoomRequest]) (*connect.Response[pb.PutWaitingRoomResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	if err := s.roomsServed(); err != nil {
		return nil, err
	}
	m := req.Msg
	in := waitroom.RoomInput{AdmitPerSecond: int(m.GetAdmitPerSecond()), AdmissionTTLSeconds: intPtr(m.AdmissionTtlSeconds),
		Admission: m.GetAdmission(), AutoMarginPercent: intPtr(m.AutoMarginPercent), Paused: m.GetPaused()}
	if m.OpensAt != nil {
		if err := m.OpensAt.CheckValid(); err != nil {
			return nil, fail(boxoffice.Validation(boxoffice.FieldError{Field: "opens_at", Message: "is not a valid time"}))
		}
		t := m.OpensAt.AsTime()
		in.OpensAt = &t
	}
	if err := roomShow(m.GetShowId()); err != nil {
		return nil, err
	}
	room, created, err := s.rooms.Put(ctx, m.GetShowId(), in)
	out := &pb.PutWaitingRoomResponse{WaitingRoom: &pb.WaitingRoom{}, Created: created}
	if err := read(room, err, out.WaitingRoom); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// GetWaitingRoom is GET /v1/shows/{show_id}/waiting-room: the settings and how many wait.
func (s *server) GetWaitingRoom(ctx context.Context, req *connect.Request[pb.GetWaitingRoomRequest]) (*connect.Response[pb.GetWaitingRoomResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), false); err != nil {
		return nil, err
	}
	if err := s.roomsServed(); err != nil {
		return nil, err
	}
	if err := roomShow(req.Msg.GetShowId()); err != nil {
		return nil, err
	}
	room, err := s.rooms.Get(ctx, req.Msg.GetShowId())
	out := &pb.GetWaitingRoomResponse{WaitingRoom: &pb.WaitingRoom{}}
	if err := read(room, err, out.WaitingRoom); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// DeleteWaitingRoom is DELETE /v1/shows/{show_id}/waiting-room.
func (s *server) DeleteWaitingRoom(ctx context.Context, req *connect.Request[pb.DeleteWaitingRoomRequest]) (*connect.Response[pb.DeleteWaitingRoomResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), true); err != nil {
		return nil, err
	}
	if err := s.roomsServed(); err != nil {
		return nil, err
	}
	if err := roomShow(req.Msg.GetShowId()); err != nil {
		return nil, err
	}
	if err := s.rooms.Delete(ctx, req.Msg.GetShowId()); err != nil {
		return nil, fail(err)
	}
	return connect.NewResponse(&pb.DeleteWaitingRoomResponse{}), nil
}

// roomPost checks what a waiting room's POST-like RPC checks before it acts, in REST's order:
// the caller (an admin's key when admin), that this server has waiting rooms, the idempotency
// key (required as on every POST, though these answer from state rather than a stored answer),
// and the show id.
func (s *server) roomPost(ctx context.Context, h http.Header, admin bool, showID string) error {
	if _, err := s.authenticate(ctx, h, admin); err != nil {
		return err
	}
	if err := s.roomsServed(); err != nil {
		return err
	}
	if _, err := idempotencyKey(h.Values(HeaderIdempotencyKey)); err != nil {
		return fail(err)
	}
	return roomShow(showID)
}

// PauseWaitingRoom is POST /v1/shows/{show_id}/waiting-room/pause and …/resume: the pause alone.
// Like every POST it needs an idempotency key, checked as REST checks it; a pause is a state, so
// the answer is the room as it is.
func (s *server) PauseWaitingRoom(ctx context.Context, req *connect.Request[pb.PauseWaitingRoomRequest]) (*connect.Response[pb.PauseWaitingRoomResponse], error) {
	if err := s.roomPost(ctx, req.Header(), true, req.Msg.GetShowId()); err != nil {
		return nil, err
	}
	room, err := s.rooms.Pause(ctx, req.Msg.GetShowId(), req.Msg.GetPaused())
	out := &pb.PauseWaitingRoomResponse{WaitingRoom: &pb.WaitingRoom{}}
	if err := read(room, err, out.WaitingRoom); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// JoinWaitingRoom is POST /v1/shows/{show_id}/waiting-room/tickets. Like every POST it needs an
// idempotency key, checked as REST checks it, but a join is idempotent by its buyer (one place
// per buyer and show), so the answer comes from the queue rather than a stored response.
func (s *server) JoinWaitingRoom(ctx context.Context, req *connect.Request[pb.JoinWaitingRoomRequest]) (*connect.Response[pb.JoinWaitingRoomResponse], error) {
	if err := s.roomPost(ctx, req.Header(), false, req.Msg.GetShowId()); err != nil {
		return nil, err
	}
	var in waitroom.JoinInput
	in.Buyer.Email = req.Msg.GetBuyer().GetEmail()
	t, created, err := s.rooms.Join(ctx, req.Msg.GetShowId(), in)
	out := &pb.JoinWaitingRoomResponse{QueueTicket: &pb.QueueTicket{}, Created: created}
	if err := read(t, err, out.QueueTicket); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// GetQueueTicket is GET /v1/waiting-room/tickets/{token}: status, position, estimated wait, and
// a fresh token — once admitted, the one that opens holds.
func (s *server) GetQueueTicket(ctx context.Context, req *connect.Request[pb.GetQueueTicketRequest]) (*connect.Response[pb.GetQueueTicketResponse], error) {
	if _, err := s.authenticate(ctx, req.Header(), false); err != nil {
		return nil, err
	}
	if err := s.roomsServed(); err != nil {
		return nil, err
	}
	if err := ticketToken(req.Msg.GetToken()); err != nil {
		return nil, err
	}
	t, err := s.rooms.Status(ctx, req.Msg.GetToken())
	out := &pb.GetQueueTicketResponse{QueueTicket: &pb.QueueTicket{}}
	if err := read(t, err, out.QueueTicket); err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// WatchQueueTicket is GET /v1/waiting-room/tickets/{token}/events: the ticket now, then again
// with a fresh token each time the ticket says to read it (Ticket.ReadAgainIn) while it waits,
// ending after the one that says admitted or expired. Errors before the first message are the RPC's failure as GetQueueTicket's; a failure
// later ends the stream with it, and the client watches again with the last token it got. Like
// REST's stream it takes no in-flight slot (the shedding interceptor is unary): MaxInFlight bounds
// work, not buyers waiting.
func (s *server) WatchQueueTicket(ctx context.Context, req *connect.Request[pb.WatchQueueTicketRequest], stream *connect.ServerStream[pb.WatchQueueTicketResponse]) error {
	if _, err := s.authenticate(ctx, req.Header(), false); err != nil {
		return s.streamError(ctx, err)
	}
	if err := s.roomsServed(); err != nil {
		return s.streamError(ctx, err)
	}
	if err := ticketToken(req.Msg.GetToken()); err != nil {
		return s.streamError(ctx, err)
	}
	t, err := s.rooms.Status(ctx, req.Msg.GetToken())
	if err != nil {
		return s.streamError(ctx, fail(err))
	}
	next := time.NewTimer(t.ReadAgainIn())
	defer next.Stop()
	for {
		out := &pb.WatchQueueTicketResponse{QueueTicket: &pb.QueueTicket{}}
		if err := read(t, nil, out.QueueTicket); err != nil {
			return s.streamError(ctx, err)
		}
		// The server's WriteTimeout would end a stream that outlives it; each message has its own.
		extendWriteDeadline(ctx, time.Now().Add(t.ReadAgainIn()+30*time.Second))
		if err := stream.Send(out); err != nil {
			return err // the client is gone: nobody reads an answer
		}
		if t.Done() {
			return nil
		}
		select {
		case <-next.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.rooms.Done():
			return s.streamError(ctx, fail(boxoffice.Overloaded(time.Second, "the server is stopping: watch again with the last token")))
		}
		if t, err = s.rooms.Status(ctx, t.Token); err != nil {
			return s.streamError(ctx, fail(err))
		}
		next.Reset(t.ReadAgainIn())
	}
}

// streamError is what a streaming RPC ends with for err (from fail): the unary interceptor
// logInternal does not see streams, so the cause of an internal error is logged here and the
// client gets only "internal error".
func (s *server) streamError(ctx context.Context, err error) error {
	var ie *internalError
	if errors.As(err, &ie) {
		if ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelError, "RPC failed",
				slog.String("procedure", boxofficev1connect.BoxOfficeServiceWatchQueueTicketProcedure), slog.Any("err", ie.cause))
		}
		return ie.answer
	}
	return err
}

// writeDeadlineKey carries the stream's http.ResponseController in its context (withDeadlines).
type writeDeadlineKey struct{}

// withDeadlines lets the streaming RPCs under next move their write deadline, which connect does
// not expose: the request's context carries its http.ResponseController.
func withDeadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == boxofficev1connect.BoxOfficeServiceWatchQueueTicketProcedure {
			r = r.WithContext(context.WithValue(r.Context(), writeDeadlineKey{}, http.NewResponseController(w)))
		}
		next.ServeHTTP(w, r)
	})
}

// extendWriteDeadline moves the write deadline of ctx's stream to at; a no-op where the
// connection has none to move.
func extendWriteDeadline(ctx context.Context, at time.Time) {
	if rc, ok := ctx.Value(writeDeadlineKey{}).(*http.ResponseController); ok {
		_ = rc.SetWriteDeadline(at)
	}
}
