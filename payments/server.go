package payments

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"boxoffice"
)

// Faults are the failures NewServer injects into POST requests, so that a client can be tested
// against a provider that errs, resets connections, and loses the answers to calls it carried out:
// the cases an idempotency key exists for.
//
// ErrorRate, ResetRate and DropRate are the probabilities of three disjoint outcomes of one attempt
// (when they add up to more than 1, the later ones get what is left). Which attempt fails is not
// drawn from a random source but decided by a hash of the route, the Idempotency-Key and the
// attempt's number, so the same requests meet the same faults on every run and a failing test can
// be replayed. Only a key's first FirstAttempts attempts can fail: a client that keeps retrying
// with the same key gets through, as it would once a real provider recovered, so a bounded retry
// loop in a test always ends.
type Faults struct {
	// Latency delays every POST, faulty or not, before it is handled: a slow provider that makes
	// callers' timeouts and sync budgets matter.
	Latency time.Duration
	// ErrorRate is the share of attempts answered 500 before anything is done.
	ErrorRate float64
	// ResetRate is the share of attempts whose connection is reset (TCP RST) without an answer,
	// before anything is done.
	ResetRate float64
	// DropRate is the share of attempts that are carried out (the charge or refund is made and
	// recorded) and whose answer is then lost: the connection is closed where the response should
	// be. This is the fault that charges twice when a client retries without the same key.
	DropRate float64
	// FirstAttempts is how many attempts of one key (per route) can meet a fault; later attempts
	// never do. Zero means 3.
	FirstAttempts int
	// Logger, when set, records every injected fault at info level, so that a test or an operator
	// can see that the faults happened and to which keys.
	Logger *slog.Logger
}

// fault is what the server does to one attempt instead of, or after, answering it.
type fault int

const (
	faultNone  fault = iota
	faultError       // 500 before doing anything
	faultReset       // RST before doing anything
	faultDrop        // do it, then close without answering
	numFaults
)

var faultNames = [numFaults]string{"none", "error", "reset", "drop"}

// possible reports whether any attempt can meet a fault, which is what attempts are counted for.
func (f *Faults) possible() bool {
	return f.ErrorRate > 0 || f.ResetRate > 0 || f.DropRate > 0
}

// decide is the fault for the attempt-th attempt (counting from 1) of key on route. It is a pure
// function of its arguments and f, so tests can predict it.
func (f *Faults) decide(route, key string, attempt int) fault {
	first := f.FirstAttempts
	if first <= 0 {
		first = 3
	}
	if attempt > first {
		return faultNone
	}
	h := fnv.New64a()
	h.Write([]byte(route))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(attempt))
	h.Write(n[:])
	// FNV alone spreads keys that differ in their last byte poorly over the high bits; the
	// splitmix64 finalizer makes every bit of the input move every bit of u.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	u := float64(x>>11) / (1 << 53) // uniform in [0, 1)
	rate := func(r float64) float64 { return min(max(r, 0), 1) }
	switch e, r, d := rate(f.ErrorRate), rate(f.ResetRate), rate(f.DropRate); {
	case u < e:
		return faultError
	case u < e+r:
		return faultReset
	case u < e+r+d:
		return faultDrop
	}
	return faultNone
}

// Routes that count attempts; part of the fault hash so that a charge key and a refund key that
// happen to be equal fail independently.
const (
	routeCharges = "POST /v1/charges"
	routeRefunds = "POST /v1/refunds"
)

// maxBody bounds a request body: Stripe's form requests are small, and a simulator on a test
// machine should not be the thing that runs out of memory.
const maxBody = 64 << 10

// server is the HTTP face of a Sim.
type server struct {
	sim    *Sim
	faults Faults
	mux    *http.ServeMux

	// attempts counts the attempts of each route and key, by a 64-bit hash of the two: a count per
	// key ever seen is kept for the sim's life, and a hash keeps it at a few dozen bytes where the
	// key itself would take a hundred. Two keys whose hashes collide would share a count, which
	// only shifts which of their attempts meet a fault. Without faults to inject nothing is counted.
	mu       sync.Mutex
	attempts map[uint64]int

	injected [numFaults]atomic.Int64 // how many of each fault were injected, for tests
}

// NewServer returns a Stripe-compatible HTTP API in front of sim, so that the Stripe-compatible
// adapter (NewHTTP), or any Stripe client library pointed at it, can be tested end to end:
//
//   - POST /v1/charges (form: amount, currency, source, description, metadata[…]) → 200 a charge
//     object; a decline → 402 with a card_error; a transient failure (tok_flaky) → 503 with an
//     api_error.
//   - POST /v1/refunds (form: charge, amount, metadata[…]) → 200 a refund object; a new refund of
//     a charge refunded in full → 400 with code charge_already_refunded.
//   - GET /v1/charges and GET /v1/refunds (optionally ?charge=) → a list object, newest first,
//     paged by limit (1 to 100), starting_after and ending_before as Stripe pages, with has_more
//     and url; a cursor without a limit gets Stripe's default of 10. Unlike Stripe, a request with
//     neither a limit nor a cursor gets every object in one page (has_more false), because the
//     audits of boxoffice read the whole simulator that way.
//   - GET /v1/charges/{id} and GET /v1/refunds/{id} → one charge or refund.
//
// Every POST needs an Idempotency-Key header: it is the sim's key, so a retry with the same key
// answers with the same charge or refund and never makes a second one. As at Stripe, the answer to
// a POST echoes the key in an Idempotency-Key header, and an answer that an earlier request with
// the key brought about (rather than this one) says Idempotent-Replayed: true; a retry whose
// parameters (amount, source, charge, metadata) differ is a 400 idempotency_error. Requests are
// answered with Stripe's field names and error shapes; each charge and refund also carries the
// simulator-only field "idempotency_key", so that an audit can tie charges to the orders whose
// derived keys made them. The Authorization header is not checked: there is no money behind the
// simulator to protect.
//
// A tok_slow charge is answered when it settles (unlike Stripe, which would answer "pending" at
// once); a client whose deadline ends first retries with the same key and waits only for the rest.
// faults are applied to POSTs; see Faults.
func NewServer(sim *Sim, faults Faults) http.Handler {
	s := &server{sim: sim, faults: faults, mux: http.NewServeMux(), attempts: make(map[uint64]int)}
	s.mux.HandleFunc(routeCharges, s.createCharge)
	s.mux.HandleFunc(routeRefunds, s.createRefund)
	s.mux.HandleFunc("GET /v1/charges", s.listCharges)
	s.mux.HandleFunc("GET /v1/charges/{id}", s.getCharge)
	s.mux.HandleFunc("GET /v1/refunds", s.listRefunds)
	s.mux.HandleFunc("GET /v1/refunds/{id}", s.getRefund)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiError{Type: "invalid_request_error",
			Message: fmt.Sprintf("Unrecognized request URL (%s: %s).", r.Method, r.URL.Path)})
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Stripe gives every answer a request id, and its client libraries put it into errors.
	w.Header().Set("Request-Id", "req_"+boxoffice.RandomString(14))
	s.mux.ServeHTTP(w, r)
}

// begin does what every POST does first: it checks the Idempotency-Key, counts the attempt, waits
// the latency, and injects the faults that strike before any work. ok is false when the request
// was answered (or hung up on) here; drop says to lose the answer once the work is done.
func (s *server) begin(w http.ResponseWriter, r *http.Request, route string) (key string, drop, ok bool) {
	key = strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if !validKey(key) {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Param: "Idempotency-Key",
			Message: "this simulator needs an Idempotency-Key header of 1 to 255 visible characters on every POST"})
		return "", false, false
	}
	// Stripe echoes the key on every answer to a request that carried one, failures included;
	// stripe-go reads it into LastResponse.IdempotencyKey.
	w.Header().Set("Idempotency-Key", key)
	attempt := 0
	if s.faults.possible() {
		h := fnv1aAdd(fnv1aAdd(fnv1a(route), "\x00"), key)
		s.mu.Lock()
		s.attempts[h]++
		attempt = s.attempts[h]
		s.mu.Unlock()
	}

	if d := s.faults.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return "", false, false // the client is gone; nobody reads an answer
		}
	}
	f := s.faults.decide(route, key, attempt)
	if f != faultNone {
		s.injected[f].Add(1)
		if s.faults.Logger != nil {
			s.faults.Logger.Info("payments simulator: injected fault", "fault", faultNames[f], "route", route, "key", key, "attempt", attempt)
		}
	}
	switch f {
	case faultError:
		writeError(w, http.StatusInternalServerError, apiError{Type: "api_error",
			Message: "simulated internal error; nothing was done, retry with the same Idempotency-Key"})
		return "", false, false
	case faultReset:
		hangUp(w, true)
		return "", false, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error",
			Message: "send the parameters form-encoded (Content-Type: application/x-www-form-urlencoded), as Stripe expects"})
		return "", false, false
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Message: "invalid form body: " + err.Error()})
		return "", false, false
	}
	return key, f == faultDrop, true
}

// validKey accepts what Stripe accepts: up to 255 characters, here also without control
// characters, since the key ends up in a JSON ledger and in logs.
func validKey(key string) bool {
	if key == "" || len(key) > 255 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] == 0x7f {
			return false
		}
	}
	return true
}

// finish answers a POST whose work is done, or loses the answer when the attempt drew a drop.
func finish(w http.ResponseWriter, drop bool, status int, body any) {
	if drop {
		hangUp(w, false)
		return
	}
	writeJSON(w, status, body)
}

// createCharge is POST /v1/charges.
func (s *server) createCharge(w http.ResponseWriter, r *http.Request) {
	key, drop, ok := s.begin(w, r, routeCharges)
	if !ok {
		return
	}
	amount, bad := formAmount(r, "amount", true)
	if bad != nil {
		writeError(w, http.StatusBadRequest, *bad)
		return
	}
	currency := r.PostForm.Get("currency")
	if len(currency) != 3 {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Param: "currency",
			Message: "currency must be a three-letter ISO code"})
		return
	}
	source := r.PostForm.Get("source")
	if source == "" {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Param: "source",
			Message: "source (a payment token such as tok_ok) is required"})
		return
	}
	metadata, bad := formMetadata(r)
	if bad != nil {
		writeError(w, http.StatusBadRequest, *bad)
		return
	}
	// The Sim answers with the record itself, so that a new charge is rendered from what was just
	// logged rather than read back from the ledger.
	rec, replayed, err := s.sim.chargeRecord(r.Context(), boxoffice.ChargeRequest{
		Key: key, Token: source, Description: r.PostForm.Get("description"),
		// The Sim compares a retry's amount with the first one's, so the currency is normalised
		// to one spelling: Stripe's clients send lower case, boxoffice's Money is upper case.
		Amount: boxoffice.Money{Amount: amount, Currency: strings.ToUpper(currency)},
	}, metadata)
	if replayed {
		// Set on declines too: Stripe replays a saved 402 like a saved 200.
		w.Header().Set("Idempotent-Replayed", "true")
	}
	switch code := boxoffice.ErrorCode(err); {
	case err == nil:
		finish(w, drop, http.StatusOK, chargeJSON(rec))
	case code == boxoffice.EPAYMENTDECLINED:
		e := apiError{Type: "card_error", Code: "card_declined", DeclineCode: "generic_decline",
			Message: boxoffice.ErrorMessage(err), Charge: rec.ID}
		finish(w, drop, http.StatusPaymentRequired, errorBody{e})
	default:
		s.failed(w, drop, err)
	}
}

// createRefund is POST /v1/refunds.
func (s *server) createRefund(w http.ResponseWriter, r *http.Request) {
	key, drop, ok := s.begin(w, r, routeRefunds)
	if !ok {
		return
	}
	chargeID := r.PostForm.Get("charge")
	if chargeID == "" {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Param: "charge",
			Message: "charge (the id of the charge to refund) is required"})
		return
	}
	amount, bad := formAmount(r, "amount", false)
	if bad != nil {
		writeError(w, http.StatusBadRequest, *bad)
		return
	}
	metadata, bad := formMetadata(r)
	if bad != nil {
		writeError(w, http.StatusBadRequest, *bad)
		return
	}
	req := boxoffice.RefundRequest{Key: key, ChargeID: chargeID}
	if amount > 0 {
		// A Stripe refund names no currency: it is the charge's.
		req.Amount.Amount = amount
		if rec, ok := s.sim.recordByID(chargeID); ok {
			req.Amount.Currency = rec.Amount.Currency
		}
	}
	rec, replayed, err := s.sim.refundRecord(r.Context(), req, metadata)
	if err != nil {
		s.failed(w, drop, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	finish(w, drop, http.StatusOK, refundJSON(rec))
}

// failed answers a POST that did not succeed, in Stripe's terms: what the caller should do next is
// in the status (4xx: fix the request; 5xx and 409: retry with the same key).
func (s *server) failed(w http.ResponseWriter, drop bool, err error) {
	var (
		status = http.StatusInternalServerError
		e      = apiError{Type: "api_error", Message: "internal error in the payment simulator; retry with the same Idempotency-Key"}
	)
	switch boxoffice.ErrorCode(err) {
	case boxoffice.EPAYMENTUNAVAILABLE:
		status, e.Message = http.StatusServiceUnavailable, boxoffice.ErrorMessage(err)
		w.Header().Set("Stripe-Should-Retry", "true")
	case boxoffice.EVALIDATION:
		status, e.Type, e.Message = http.StatusBadRequest, "invalid_request_error", boxoffice.ErrorMessage(err)
		switch {
		case errors.Is(err, errKeyReused):
			e.Type = "idempotency_error"
		case errors.Is(err, errAlreadyRefunded):
			e.Code = "charge_already_refunded"
		}
	case boxoffice.ENOTFOUND:
		status, e.Type, e.Code, e.Param, e.Message = http.StatusNotFound, "invalid_request_error", "resource_missing", "charge", boxoffice.ErrorMessage(err)
	default:
		switch {
		case errors.Is(err, errClosed):
			status, e.Message = http.StatusServiceUnavailable, "the payment simulator is shutting down; retry with the same Idempotency-Key"
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// The client gave up (a tok_slow charge outlived its deadline); the work goes on,
			// and a retry with the same key picks it up.
			status, e.Message = http.StatusServiceUnavailable, "not settled yet; retry with the same Idempotency-Key"
		}
	}
	finish(w, drop, status, errorBody{e})
}

// listCharges is GET /v1/charges: the charges, newest first as Stripe lists them, a page at a time
// when the caller names a limit or a cursor. Without either, every charge comes in one answer
// (has_more false): the audits of boxoffice read the simulator whole that way, by a forward
// stream of the ledger that settles each charge's state as it goes.
func (s *server) listCharges(w http.ResponseWriter, r *http.Request) {
	q, bad := s.pageQuery(r, func(ln *ledgerLine) bool { return ln.Op == opCharge }, "charge", s.sim.book.chargeOffset)
	if bad != nil {
		writeError(w, http.StatusBadRequest, *bad)
		return
	}
	var (
		recs    []ChargeRecord
		hasMore bool
		err     error
	)
	if q == nil {
		recs, err = s.sim.book.records()
		slices.Reverse(recs)
	} else {
		var lines []*ledgerLine
		if lines, hasMore, err = s.sim.book.pageLines(*q); err == nil {
			recs, err = s.sim.book.recordsOf(lines)
		}
	}
	if err != nil {
		s.readFailed(w, err)
		return
	}
	data := make([]chargeObject, len(recs))
	for i, rec := range recs {
		data[i] = chargeJSON(rec)
	}
	writeJSON(w, http.StatusOK, listObject[chargeObject]{Object: "list", Data: data, HasMore: hasMore, URL: "/v1/charges"})
}

// listRefunds is GET /v1/refunds: the refunds, newest first, of one charge when ?charge= names
// it, paged like listCharges. Without a limit it is every refund, by a scan of the whole ledger.
func (s *server) listRefunds(w http.ResponseWriter, r *http.Request) {
	match := func(ln *ledgerLine) bool { return ln.Op == opRefund }
	if ch := r.URL.Query().Get("charge"); ch != "" {
		match = func(ln *ledgerLine) bool { return ln.Op == opRefund && ln.ChargeID == ch }
	}
	refundOffset := func(id string) (int64, bool, error) {
		off, ln, err := s.sim.book.refundByID(id)
		return off, ln != nil, err
	}
	q, bad := s.pageQuery(r, match, "refund", refundOffset)
	if bad != nil {
		writeError(w, http.StatusBadRequest, *bad)
		return
	}
	if q == nil {
		q = &pageQuery{match: match, after: -1, before: -1}
	}
	lines, hasMore, err := s.sim.book.pageLines(*q)
	if err != nil {
		s.readFailed(w, err)
		return
	}
	data := make([]refundObject, len(lines))
	for i, ln := range lines {
		data[i] = refundJSON(refundRecordOf(ln))
	}
	writeJSON(w, http.StatusOK, listObject[refundObject]{Object: "list", Data: data, HasMore: hasMore, URL: "/v1/refunds"})
}

// maxLimit is the most objects a page holds, and defaultLimit how many a cursor without a limit
// gets: Stripe's bounds.
const (
	maxLimit     = 100
	defaultLimit = 10
)

// pageQuery reads Stripe's paging parameters: limit, starting_after and ending_before, the
// cursors being ids of the listed kind that locate resolves to ledger offsets. It returns nil
// when the request names none of them (the whole list; see listCharges).
func (s *server) pageQuery(r *http.Request, match func(*ledgerLine) bool, kind string,
	locate func(id string) (int64, bool, error)) (*pageQuery, *apiError) {
	v := r.URL.Query()
	limit, after, before := v.Get("limit"), v.Get("starting_after"), v.Get("ending_before")
	if limit == "" && after == "" && before == "" {
		return nil, nil
	}
	q := &pageQuery{match: match, limit: defaultLimit, after: -1, before: -1}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > maxLimit {
			return nil, &apiError{Type: "invalid_request_error", Code: "parameter_invalid_integer", Param: "limit",
				Message: fmt.Sprintf("Invalid limit %q: must be an integer from 1 to %d.", limit, maxLimit)}
		}
		q.limit = n
	}
	if after != "" && before != "" {
		return nil, &apiError{Type: "invalid_request_error", Param: "ending_before",
			Message: "starting_after and ending_before cannot be used together."}
	}
	for _, c := range []struct {
		param, id string
		off       *int64
	}{{"starting_after", after, &q.after}, {"ending_before", before, &q.before}} {
		if c.id == "" {
			continue
		}
		off, found, err := locate(c.id)
		if err != nil || !found {
			// A cursor that names nothing is the caller's mistake: no page can be placed.
			return nil, &apiError{Type: "invalid_request_error", Code: "resource_missing", Param: c.param,
				Message: fmt.Sprintf("No such %s: '%s'", kind, c.id)}
		}
		*c.off = off
	}
	return q, nil
}

// readFailed answers a GET whose ledger read failed.
func (s *server) readFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, errClosed) {
		writeError(w, http.StatusServiceUnavailable, apiError{Type: "api_error", Message: "the payment simulator is shutting down"})
		return
	}
	writeError(w, http.StatusInternalServerError, apiError{Type: "api_error", Message: "cannot read the ledger back: " + err.Error()})
}

// getCharge is GET /v1/charges/{id}: how a Stripe client polls a pending charge.
func (s *server) getCharge(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.sim.recordByID(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, apiError{Type: "invalid_request_error", Code: "resource_missing", Param: "id",
			Message: fmt.Sprintf("No such charge: '%s'", r.PathValue("id"))})
		return
	}
	writeJSON(w, http.StatusOK, chargeJSON(rec))
}

// getRefund is GET /v1/refunds/{id}: a refund read back from its ledger line, found through the
// key hash its id carries.
func (s *server) getRefund(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, ln, err := s.sim.book.refundByID(id)
	if err != nil {
		s.readFailed(w, err)
		return
	}
	if ln == nil {
		writeError(w, http.StatusNotFound, apiError{Type: "invalid_request_error", Code: "resource_missing", Param: "id",
			Message: fmt.Sprintf("No such refund: '%s'", id)})
		return
	}
	writeJSON(w, http.StatusOK, refundJSON(refundRecordOf(ln)))
}

// Stripe's metadata bounds: keys a client library or a dashboard can show, values of a note's
// length, and a body that stays small.
const (
	maxMetadataKeys  = 50
	maxMetadataKey   = 40
	maxMetadataValue = 500
)

// formMetadata reads Stripe's metadata[key]=value parameters. An empty value sets nothing, as at
// Stripe, where it is how a key is unset.
func formMetadata(r *http.Request) (map[string]string, *apiError) {
	var md map[string]string
	for name, vals := range r.PostForm {
		if name == "metadata" && len(vals) == 1 && vals[0] == "" {
			continue // "metadata=" clears all, which on a create means none
		}
		k, ok := strings.CutPrefix(name, "metadata[")
		if !ok && name != "metadata" {
			continue
		}
		k, ok = strings.CutSuffix(k, "]")
		if !ok || k == "" || strings.ContainsAny(k, "[]") || len(k) > maxMetadataKey {
			return nil, &apiError{Type: "invalid_request_error", Param: "metadata",
				Message: fmt.Sprintf("Invalid metadata parameter %q: send metadata[key]=value with a key of 1 to %d characters and no square brackets.", name, maxMetadataKey)}
		}
		v := vals[len(vals)-1]
		if len(v) > maxMetadataValue {
			return nil, &apiError{Type: "invalid_request_error", Param: "metadata[" + k + "]",
				Message: fmt.Sprintf("Metadata values can have up to %d characters.", maxMetadataValue)}
		}
		if v == "" {
			continue
		}
		if md == nil {
			md = make(map[string]string)
		}
		md[k] = v
	}
	if len(md) > maxMetadataKeys {
		return nil, &apiError{Type: "invalid_request_error", Param: "metadata",
			Message: fmt.Sprintf("Metadata can have up to %d keys.", maxMetadataKeys)}
	}
	return md, nil
}

// formAmount reads an amount in minor units. Zero is allowed for charges (the Sim takes free
// tickets) while Stripe would want at least 50 cents: the simulator serves boxoffice first.
func formAmount(r *http.Request, name string, required bool) (int64, *apiError) {
	v := r.PostForm.Get(name)
	if v == "" {
		if required {
			return 0, &apiError{Type: "invalid_request_error", Param: name, Message: name + " is required"}
		}
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || (!required && n == 0) {
		return 0, &apiError{Type: "invalid_request_error", Param: name,
			Message: fmt.Sprintf("invalid %s %q: want a non-negative integer in minor units", name, v)}
	}
	return n, nil
}

// hangUp ends the exchange without an answer. With reset it sends a TCP RST, as a crashed peer or
// a middlebox would; without, the connection is closed in order, as by a server that died after
// doing the work, and the client reads EOF where the status line should be.
func hangUp(w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// A writer that cannot be hijacked (HTTP/2): aborting the handler makes the server drop
		// the stream without an answer, which the client sees alike.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
	_ = conn.Close()
}

// Stripe's JSON shapes, with its field names, so that Stripe client libraries decode them.

type apiError struct {
	Type        string `json:"type"`
	Code        string `json:"code,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
	DocURL      string `json:"doc_url,omitempty"` // set by writeJSON for errors with a code
	Message     string `json:"message"`
	Param       string `json:"param,omitempty"`
	Charge      string `json:"charge,omitempty"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

type listObject[T any] struct {
	Object  string `json:"object"`
	Data    []T    `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

type chargeObject struct {
	ID             string                   `json:"id"`
	Object         string                   `json:"object"`
	Amount         int64                    `json:"amount"`
	AmountCaptured int64                    `json:"amount_captured"`
	AmountRefunded int64                    `json:"amount_refunded"`
	Currency       string                   `json:"currency"`
	Status         string                   `json:"status"`
	Paid           bool                     `json:"paid"`
	Captured       bool                     `json:"captured"`
	Refunded       bool                     `json:"refunded"`
	Description    *string                  `json:"description"`
	FailureCode    *string                  `json:"failure_code"`
	FailureMessage *string                  `json:"failure_message"`
	Created        int64                    `json:"created"`
	Livemode       bool                     `json:"livemode"`
	Metadata       map[string]string        `json:"metadata"`
	Refunds        listObject[refundObject] `json:"refunds"`
	IdempotencyKey string                   `json:"idempotency_key"` // simulator only: the ledger's key
}

type refundObject struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"`
	Amount   int64             `json:"amount"`
	Charge   string            `json:"charge"`
	Currency string            `json:"currency"`
	Status   string            `json:"status"`
	Metadata map[string]string `json:"metadata"`
	// Created is the refund line's time, so a first answer, its replays and later reads agree.
	Created        int64  `json:"created"`
	IdempotencyKey string `json:"idempotency_key"` // simulator only: the ledger's key
}

func chargeJSON(rec ChargeRecord) chargeObject {
	o := chargeObject{
		ID: rec.ID, Object: "charge", Amount: rec.Amount.Amount, Currency: strings.ToLower(rec.Amount.Currency),
		Created: rec.CreatedAt.Unix(), Metadata: metadataJSON(rec.Metadata), IdempotencyKey: rec.Key,
		Refunds: listObject[refundObject]{Object: "list", Data: []refundObject{}, URL: "/v1/charges/" + rec.ID + "/refunds"},
	}
	if rec.Description != "" {
		o.Description = &rec.Description
	}
	switch rec.Status {
	case ChargeSucceeded:
		o.Status, o.Paid, o.Captured, o.AmountCaptured = "succeeded", true, true, rec.Amount.Amount
	case ChargePending:
		o.Status = "pending"
	default:
		code, msg := "card_declined", rec.Message
		o.Status, o.FailureCode, o.FailureMessage = "failed", &code, &msg
	}
	if rec.Refunded {
		o.Refunded, o.AmountRefunded = true, rec.RefundAmount.Amount
		o.Refunds.Data = append(o.Refunds.Data, refundJSON(rec))
	}
	return o
}

func refundJSON(rec ChargeRecord) refundObject {
	return refundObject{
		ID: rec.RefundID, Object: "refund", Amount: rec.RefundAmount.Amount, Charge: rec.ID,
		Currency: strings.ToLower(rec.RefundAmount.Currency), Status: "succeeded",
		Metadata: metadataJSON(rec.RefundMetadata), Created: rec.RefundCreatedAt.Unix(), IdempotencyKey: rec.RefundKey,
	}
}

// refundRecordOf is the record refundJSON renders for a refund line read on its own.
func refundRecordOf(ln *ledgerLine) ChargeRecord {
	rec := ChargeRecord{ID: ln.ChargeID}
	setRefund(&rec, ln)
	return rec
}

// metadataJSON is m as Stripe sends it: an object, {} when empty, never null.
func metadataJSON(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if e, ok := v.(errorBody); ok && e.Error.Code != "" && e.Error.DocURL == "" {
		e.Error.DocURL = docURL(e.Error.Code)
		v = e
	}
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"cannot encode the answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, errorBody{e})
}

// docURL is where Stripe documents an error code, which its errors name in doc_url.
func docURL(code string) string {
	return "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(code, "_", "-")
}
