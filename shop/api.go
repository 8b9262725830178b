package shop

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"boxoffice"
	"boxoffice/internal/webpage"
	"boxoffice/sale"
	"boxoffice/waitroom"
)

// maxBodyBytes bounds an action's body: an email, a tier, ten seats, a token.
const maxBodyBytes = 16 << 10

// The REST routes whose idempotency scope and fingerprint the page's holds and confirms share, as
// the console's cancel does: one operation, whichever way it came.
const (
	holdOperation    = "POST /v1/shows/{show_id}/holds"
	confirmOperation = "POST /v1/holds/{hold_id}/confirm"
)

// api wraps every JSON route: a bounded number at once (the rest shed with 503, as the REST
// API sheds), and, for a POST, a same-origin Origin header when there is one and a JSON body,
// which no form of another site can send (a cross-site fetch of JSON needs a preflight that
// nothing here answers).
func (s *Shop) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			s.writeError(w, r, boxoffice.Overloaded(time.Second, "the shop is at capacity; retry in a moment"))
			return
		}
		if r.Method == http.MethodPost {
			if !webpage.SameOrigin(r) {
				s.writeError(w, r, boxoffice.Errorf(boxoffice.EFORBIDDEN, "cross-origin request refused"))
				return
			}
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				s.writeError(w, r, boxoffice.Errorf(boxoffice.EUNSUPPORTEDMEDIA, "send JSON (Content-Type: application/json)"))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		h(w, r)
	}
}

// buyer serves h only to a signed-in buyer, for a show id that can be one; others get 401.
func (s *Shop) buyer(h func(http.ResponseWriter, *http.Request, *session, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := s.session(r)
		if ss == nil {
			s.writeError(w, r, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "enter your email first"))
			return
		}
		id := r.PathValue("show_id")
		if !boxoffice.ValidName(id) {
			s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "no such show"))
			return
		}
		h(w, r, ss, id)
	}
}

// decode reads r's JSON body into v strictly: unknown fields, trailing data and wrong types are
// 400 validation_failed, as on the REST API.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return boxoffice.Errorf(boxoffice.EPAYLOADTOOLARGE, "the body is over %d bytes", maxBodyBytes)
	} else if err != nil {
		return boxoffice.Errorf(boxoffice.EVALIDATION, "the body could not be read")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return boxoffice.Validation(boxoffice.FieldError{Field: "body", Message: "must be a JSON object of the expected fields: " + err.Error()})
	}
	if dec.More() {
		return boxoffice.Validation(boxoffice.FieldError{Field: "body", Message: "has data after the JSON object"})
	}
	return nil
}

// idemKey returns the Idempotency-Key the page made for the user's action, put in the buyer's own
// space: the page's holds all belong to one channel, and a key one buyer used must never answer
// another buyer's request, even the same one.
func (s *Shop) idemKey(r *http.Request, ss *session) (string, error) {
	k := r.Header.Get("Idempotency-Key")
	if len(k) == 0 || len(k) > 200 {
		return "", boxoffice.Errorf(boxoffice.EIDEMINVALID, "an action needs an Idempotency-Key of 1 to 200 visible ASCII characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return "", boxoffice.Errorf(boxoffice.EIDEMINVALID, "an action needs an Idempotency-Key of 1 to 200 visible ASCII characters")
		}
	}
	return "shop:" + s.buyerTag(ss.email) + ":" + k, nil
}

// state is the answer of GET /shop/{show_id}/api/state.
type state struct {
	Show  *boxoffice.Show `json:"show"`
	Buyer *string         `json:"buyer"`
	// WaitingRoom says the show sells through its waiting room: the buyer joins it first.
	WaitingRoom bool `json:"waiting_room"`
}

// getState is GET /shop/{show_id}/api/state: the show with its counts, who is signed in, and
// whether the show has a waiting room.
func (s *Shop) getState(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("show_id")
	if !boxoffice.ValidName(id) {
		s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "no such show"))
		return
	}
	show, err := s.show(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st := state{Show: show}
	if ss := s.session(r); ss != nil {
		st.Buyer = &ss.email
	}
	if st.WaitingRoom, err = s.hasRoom(r, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, st)
}

// hasRoom says whether the show sells through a waiting room: whether a buyer without a queue
// ticket would be refused a hold. Asked of the admission check, which keeps the rooms' settings in
// memory, rather than of Get, which counts the queue: every open page asks every few seconds.
func (s *Shop) hasRoom(r *http.Request, showID string) (bool, error) {
	if s.rooms == nil {
		return false, nil
	}
	err := s.rooms.Admitted(r.Context(), showID, "")
	switch boxoffice.ErrorCode(err) {
	case "":
		return false, nil
	case boxoffice.ENOTADMITTED:
		return true, nil
	}
	return false, err
}

// getSeats is GET /shop/{show_id}/api/seats: the seat map as GET /v1/shows/{id}/seats answers
// it, with its ETag, so that the page's polls of an unchanged map cost a 304.
func (s *Shop) getSeats(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("show_id")
	if !boxoffice.ValidName(id) {
		s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "no such show"))
		return
	}
	body, etag, err := s.svc.ShowSeats(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache") // stored, but revalidated every time
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// signInInput is the body of POST /shop/{show_id}/api/session.
type signInInput struct {
	Email string `json:"email"`
}

// signIn is POST /shop/{show_id}/api/session: the buyer says who they are, once; the address is
// checked as the sale checks a buyer's. With a Mailer it is then proven by the code mailed to it
// (sendCode, then confirmCode); without one it signs the buyer in at once (startSession).
func (s *Shop) signIn(w http.ResponseWriter, r *http.Request) {
	var in signInInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	in.Email = strings.TrimSpace(in.Email)
	if !boxoffice.ValidEmail(in.Email) {
		s.writeError(w, r, boxoffice.Validation(boxoffice.FieldError{Field: "email", Message: "must be a valid email address"}))
		return
	}
	if s.opts.Mailer != nil {
		s.sendCode(w, r, in.Email)
		return
	}
	s.startSession(w, r, in.Email)
}

// signOut is POST /shop/{show_id}/api/signout: every cookie goes.
func (s *Shop) signOut(w http.ResponseWriter, r *http.Request) {
	setCookie(w, r, sessionCookie, "/shop", "", -1)
	setCookie(w, r, signinCookie, "/shop", "", -1)
	if id := r.PathValue("show_id"); boxoffice.ValidName(id) {
		setCookie(w, r, queueCookie, queuePath(id), "", -1)
	}
	w.WriteHeader(http.StatusNoContent)
}

// queueTicket is a queue ticket as the page sees it: the token stays in the cookie.
type queueTicket struct {
	Status               string     `json:"status"`
	Position             *int       `json:"position"`
	EstimatedWaitSeconds *int       `json:"estimated_wait_seconds"`
	OpensAt              time.Time  `json:"opens_at"`
	AdmissionExpiresAt   *time.Time `json:"admission_expires_at"`
	// PollAfterSeconds is when the page reads the ticket again (waitroom's pollAfter).
	PollAfterSeconds int `json:"poll_after_seconds,omitempty"`
	// Paused: the venue has stopped the queue for now; the place is kept.
	Paused bool `json:"paused,omitempty"`
	// SoldOut: every ticket is sold or held for now; held ones may come back.
	SoldOut bool `json:"sold_out,omitempty"`
}

// answerTicket keeps t's token in the queue cookie (for as long as it reads the ticket or opens
// holds, whichever is later) and answers the ticket without it.
func (s *Shop) answerTicket(w http.ResponseWriter, r *http.Request, ss *session, showID string, t *waitroom.Ticket) {
	until := t.TokenExpiresAt
	if t.AdmissionExpiresAt != nil && t.AdmissionExpiresAt.After(until) {
		until = *t.AdmissionExpiresAt
	}
	s.setQueueToken(w, r, ss, showID, t.Token, until)
	s.writeJSON(w, http.StatusOK, queueTicket{Status: t.Status, Position: t.Position, EstimatedWaitSeconds: t.EstimatedWaitSeconds,
		OpensAt: t.OpensAt, AdmissionExpiresAt: t.AdmissionExpiresAt, PollAfterSeconds: t.PollAfterSeconds, Paused: t.Paused, SoldOut: t.SoldOut})
}

// joinQueue is POST /shop/{show_id}/api/queue: the buyer joins the show's waiting room, or gets
// back the place they have (a join is idempotent by buyer).
func (s *Shop) joinQueue(w http.ResponseWriter, r *http.Request, ss *session, showID string) {
	if s.rooms == nil {
		s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "show %s has no waiting room", showID))
		return
	}
	var in waitroom.JoinInput
	in.Buyer.Email = ss.email
	t, _, err := s.rooms.Join(r.Context(), showID, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.answerTicket(w, r, ss, showID, t)
}

// queueStatus is GET /shop/{show_id}/api/queue: the buyer's place, read through the token in the
// cookie, with a fresh token kept. A token that ran out, or that the queue no longer knows,
// joins again, which finds the buyer's place (kept) with a fresh token; no token at all is 404,
// for the page to join.
func (s *Shop) queueStatus(w http.ResponseWriter, r *http.Request, ss *session, showID string) {
	if s.rooms == nil {
		s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "show %s has no waiting room", showID))
		return
	}
	token := s.queueToken(r, ss)
	if token == "" {
		s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "you have not joined the queue of show %s", showID))
		return
	}
	t, err := s.rooms.Status(r.Context(), token)
	switch boxoffice.ErrorCode(err) {
	case "":
		if t.ShowID != showID {
			s.writeError(w, r, boxoffice.Errorf(boxoffice.ENOTFOUND, "you have not joined the queue of show %s", showID))
			return
		}
		s.answerTicket(w, r, ss, showID, t)
	case boxoffice.ETICKETEXPIRED, boxoffice.ENOTFOUND:
		s.joinQueue(w, r, ss, showID)
	default:
		s.writeError(w, r, err)
	}
}

// holdInput is the body of POST /shop/{show_id}/api/holds: the buyer comes from the session.
type holdInput struct {
	TierID   string   `json:"tier_id"`
	Quantity int      `json:"quantity"`
	Seats    []string `json:"seats"`
}

// createHold is POST /shop/{show_id}/api/holds: a hold for the session's buyer, under the
// Idempotency-Key the page made for the click, so a retried click holds once; through the
// waiting room with the token of the queue cookie, as the REST API takes it from Queue-Ticket.
func (s *Shop) createHold(w http.ResponseWriter, r *http.Request, ss *session, showID string) {
	key, err := s.idemKey(r, ss)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body holdInput
	if err := decode(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	in := sale.HoldInput{ShowID: showID, TierID: body.TierID, Quantity: body.Quantity, Seats: body.Seats,
		Buyer: sale.BuyerInput{Email: ss.email}}
	idem, err := sale.NewIdem(Channel, holdOperation, "/v1/shows/"+showID+"/holds", key, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := waitroom.WithToken(r.Context(), s.queueToken(r, ss))
	res, replayed, err := s.svc.CreateHold(ctx, principal, idem, in)
	s.writeResult(w, r, res, replayed, err)
}

// ownHold returns the hold of the path if it is the session buyer's and of this show; anything
// else, another buyer's hold above all, is the same 404 as a hold that does not exist.
func (s *Shop) ownHold(r *http.Request, ss *session, showID string) (*boxoffice.Hold, error) {
	id := r.PathValue("hold_id")
	h, err := s.svc.GetHold(r.Context(), principal, id)
	switch {
	case boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND, err == nil && (h.ShowID != showID || !sameBuyer(h.Buyer.Email, ss)):
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "hold %q does not exist", id)
	case err != nil:
		return nil, err
	}
	return h, nil
}

// getHold is GET /shop/{show_id}/api/holds/{hold_id}.
func (s *Shop) getHold(w http.ResponseWriter, r *http.Request, ss *session, showID string) {
	h, err := s.ownHold(r, ss, showID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, h)
}

// confirmInput is the body of POST /shop/{show_id}/api/holds/{hold_id}/confirm.
type confirmInput struct {
	Token string `json:"token"`
}

// confirmHold is POST /shop/{show_id}/api/holds/{hold_id}/confirm: pays for the buyer's hold with
// a test token under the page's Idempotency-Key, so a retried Pay charges once. 201 with the
// order, 202 with it pending (the page polls it), 402 declined, as the REST API answers.
func (s *Shop) confirmHold(w http.ResponseWriter, r *http.Request, ss *session, showID string) {
	key, err := s.idemKey(r, ss)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body confirmInput
	if err := decode(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	h, err := s.ownHold(r, ss, showID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in := sale.ConfirmInput{Payment: sale.PaymentInput{Token: body.Token}}
	idem, err := sale.NewIdem(Channel, confirmOperation, "/v1/holds/"+h.ID+"/confirm", key, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, replayed, err := s.svc.ConfirmHold(r.Context(), principal, idem, h.ID, in)
	s.writeResult(w, r, res, replayed, err)
}

// releaseHold is POST /shop/{show_id}/api/holds/{hold_id}/release: the buyer gives the tickets
// back; again is fine.
func (s *Shop) releaseHold(w http.ResponseWriter, r *http.Request, ss *session, showID string) {
	h, err := s.ownHold(r, ss, showID)
	if err == nil {
		err = s.svc.ReleaseHold(r.Context(), principal, h.ID)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// getOrder is GET /shop/{show_id}/api/orders/{order_id}: the buyer's order with its tickets;
// another buyer's is 404.
func (s *Shop) getOrder(w http.ResponseWriter, r *http.Request, ss *session, showID string) {
	id := r.PathValue("order_id")
	o, err := s.svc.GetOrder(r.Context(), principal, id)
	if err == nil && (o.ShowID != showID || !sameBuyer(o.Buyer.Email, ss)) {
		err = boxoffice.Errorf(boxoffice.ENOTFOUND, "order %q does not exist", id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, o)
}

// writeResult writes what the sale service answered: its rendered response byte for byte (a
// stored refusal such as sold_out or seat_unavailable included), or the error it returned.
func (s *Shop) writeResult(w http.ResponseWriter, r *http.Request, res *boxoffice.Response, replayed bool, err error) {
	if err == nil && res == nil {
		err = errors.New("shop: the service answered neither a response nor an error")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeResponse(w, res)
}

// writeResponse writes a rendered response.
func writeResponse(w http.ResponseWriter, res *boxoffice.Response) {
	if len(res.Body) > 0 {
		ct := "application/json"
		if res.Status >= 400 {
			ct = "application/problem+json"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(len(res.Body)))
	}
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
}

// writeError renders err as the REST API would, status, code and all (bohttp.Renderer), with a
// Retry-After where one is due; internal errors are logged, as their problem tells nothing.
func (s *Shop) writeError(w http.ResponseWriter, r *http.Request, err error) {
	res := rendered.Problem(err)
	code := boxoffice.ErrorCode(err)
	if res.Status >= 500 && code != boxoffice.EOVERLOADED && r.Context().Err() == nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "shop: request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	if e := boxoffice.AsError(err); e != nil && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(int((e.RetryAfter+time.Second-1)/time.Second), 1)))
	}
	writeResponse(w, res)
}

// writeJSON writes v as a JSON answer.
func (s *Shop) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a programming error (an unencodable type) gets here.
		s.log.Error("shop: encode answer", "err", err)
		writeResponse(w, rendered.Problem(err))
		return
	}
	writeResponse(w, &boxoffice.Response{Status: status, Body: append(body, '\n')})
}
