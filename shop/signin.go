package shop

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"boxoffice"
)

// Mailer sends the sign-in codes: *nats.Email's SendNotice, the way the receipts go.
type Mailer interface {
	SendNotice(ctx context.Context, to, subject, text string) error
}

// Sign-in codes. With a Mailer, typing an address is not enough to buy as it: the shop emails a
// six-digit code to the address and signs the buyer in only once it comes back. Without it,
// anyone could take another buyer's place in a waiting room (one place per address) by typing
// their address.
//
// The code is no state of the server's: it is a MAC, under the shop's secret, of the pending
// cookie's payload (a random nonce, the address and when the code runs out), so every server on
// the store can check it and none has to remember it. What the servers do remember, each in
// memory and bounded, is how many codes an address was sent lately and how many wrong codes a
// nonce was given: together they keep guessing far out of reach (codesPerAddress codes of
// attemptsPerCode tries each per codeWindow and server, against a million codes).
const (
	signinCookie = "boxoffice_shop_signin"
	// codeTTL is how long a code is good for.
	codeTTL = 10 * time.Minute
	// codesPerAddress codes may be sent to one address per codeWindow by one server.
	codesPerAddress = 5
	codeWindow      = 15 * time.Minute
	// attemptsPerCode wrong codes end a code: a new one must be asked for.
	attemptsPerCode = 5
	// limitEntries bounds each of the two in-memory tallies; past it the oldest entries go.
	limitEntries = 10_000
	// defaultCodesPerMinute is Options.CodesPerMinute's default. The limits above are per
	// address, and an address costs nothing to type: without a bound on them all, a script
	// could have the shop mail codes to every address on a list (spam in the venue's name, and
	// the sender's reputation with it), or type ten thousand addresses to evict an address's
	// count from its tally. 600 a minute is ten sign-ins a second for each server; an on-sale
	// that expects more sets Options.CodesPerMinute (serve --shop-codes-per-minute).
	defaultCodesPerMinute = 600
)

// pending is a sign-in waiting for its code.
type pending struct {
	email, nonce string
	expires      time.Time
	payload      string
}

// signinValue is the pending cookie's value: base64url("v1|expires|nonce|email") "." MAC.
func (s *Shop) signinValue(p *pending) string { return s.signed("signin", p.payload) }

// newPending starts a sign-in of email.
func (s *Shop) newPending(email string) *pending {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	p := &pending{email: email, nonce: base64.RawURLEncoding.EncodeToString(b), expires: s.opts.Now().Add(codeTTL)}
	p.payload = payload(p.expires, p.nonce, email)
	return p
}

// pendingOf returns the sign-in r's pending cookie names, or nil when it has none that is ours
// and still good.
func (s *Shop) pendingOf(r *http.Request) *pending {
	f, expires, raw, ok := s.opened(r, signinCookie, "signin", 2)
	if !ok {
		return nil
	}
	return &pending{nonce: f[0], email: f[1], expires: expires, payload: raw}
}

// code is p's six-digit code.
func (s *Shop) code(p *pending) string {
	n := binary.BigEndian.Uint64(s.mac("code", p.payload)[:8]) % 1_000_000
	return fmt.Sprintf("%06d", n)
}

// tally counts events by key within a window, keeping at most limitEntries keys (the oldest go
// first), so that a crowd of addresses cannot grow it without end.
type tally struct {
	mu     sync.Mutex
	window time.Duration
	m      map[string]*tallyEntry
	order  []string // keys in the order they were first counted, for eviction
}

type tallyEntry struct {
	n     int
	since time.Time
}

// add counts one event of key at now and returns how many there are in the window, this one too.
func (t *tally) add(key string, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*tallyEntry)
	}
	e := t.m[key]
	if e == nil || now.Sub(e.since) >= t.window {
		if e == nil {
			for len(t.m) >= limitEntries && len(t.order) > 0 {
				delete(t.m, t.order[0])
				t.order = t.order[1:]
			}
			t.order = append(t.order, key)
		}
		e = &tallyEntry{since: now}
		t.m[key] = e
	}
	e.n++
	return e.n
}

// count says how many events key has in the window at now.
func (t *tally) count(key string, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[key]; e != nil && now.Sub(e.since) < t.window {
		return e.n
	}
	return 0
}

// sendCode starts the sign-in of email: the code goes to the address, the pending cookie to the
// browser, and the page is told to ask for the code.
func (s *Shop) sendCode(w http.ResponseWriter, r *http.Request, email string) {
	now := s.opts.Now()
	key := boxoffice.BuyerKey(email)
	tooMany := func() {
		e := boxoffice.Errorf(boxoffice.ERATELIMITED, "%d codes were sent to this address lately; use the last one, or ask again later", codesPerAddress)
		e.RetryAfter = codeWindow
		s.writeError(w, r, e)
	}
	// The address's count is looked at before the server's budget is spent on it, and taken
	// after: a refusal of either spends nothing of the other.
	if s.codesSent.count(key, now) >= codesPerAddress {
		tooMany()
		return
	}
	if !s.codeBudget.AllowN(now, 1) {
		e := boxoffice.Errorf(boxoffice.ERATELIMITED, "the box office is sending too many sign-in codes just now; try again in a minute")
		e.RetryAfter = time.Minute
		s.writeError(w, r, e)
		return
	}
	if s.codesSent.add(key, now) > codesPerAddress {
		tooMany() // another request for the address took the last one meanwhile
		return
	}
	p := s.newPending(email)
	code := s.code(p)
	text := "Your code to sign in to the box office is " + code + ".\n\n" +
		"Type it on the page that asked for it within " + strconv.Itoa(int(codeTTL/time.Minute)) + " minutes.\n" +
		"If you did not ask for it, someone typed your address: ignore this email, and nothing happens.\n"
	if err := s.opts.Mailer.SendNotice(r.Context(), email, "Your sign-in code: "+code, text); err != nil {
		s.log.Error("shop: send sign-in code", "err", err)
		s.writeError(w, r, boxoffice.Overloaded(5*time.Second, "the code could not be sent just now; try again in a moment"))
		return
	}
	setCookie(w, r, signinCookie, "/shop", s.signinValue(p), int(codeTTL/time.Second))
	s.writeJSON(w, http.StatusAccepted, map[string]any{"buyer": email, "code_sent": true, "code_expires_at": p.expires.UTC()})
}

// codeInput is the body of POST /shop/{show_id}/api/session/code.
type codeInput struct {
	Code string `json:"code"`
}

// confirmCode is POST /shop/{show_id}/api/session/code: the code from the email signs the buyer in
// as the address it was sent to.
func (s *Shop) confirmCode(w http.ResponseWriter, r *http.Request) {
	var in codeInput
	if err := decode(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	p := s.pendingOf(r)
	if p == nil {
		s.writeError(w, r, boxoffice.Validation(boxoffice.FieldError{Field: "code", Message: "has run out, or was never asked for here: enter your email again for a new one"}))
		return
	}
	now := s.opts.Now()
	if s.wrongCodes.count(p.nonce, now) >= attemptsPerCode {
		s.writeError(w, r, boxoffice.Validation(boxoffice.FieldError{Field: "code", Message: "was mistyped too often: enter your email again for a new one"}))
		return
	}
	got := strings.Join(strings.Fields(in.Code), "") // "123 456" as typed from a phone
	if !hmac.Equal([]byte(got), []byte(s.code(p))) {
		s.wrongCodes.add(p.nonce, now)
		s.writeError(w, r, boxoffice.Validation(boxoffice.FieldError{Field: "code", Message: "is not the code we sent"}))
		return
	}
	setCookie(w, r, signinCookie, "/shop", "", -1)
	s.startSession(w, r, p.email)
}

// startSession signs the buyer in as email: the session cookie, and a new buyer on this browser
// drops the queue ticket of the one before.
func (s *Shop) startSession(w http.ResponseWriter, r *http.Request, email string) {
	setCookie(w, r, sessionCookie, "/shop", s.sessionValue(email, s.opts.Now().Add(s.opts.SessionTTL)), int(s.opts.SessionTTL/time.Second))
	if id := r.PathValue("show_id"); boxoffice.ValidName(id) {
		setCookie(w, r, queueCookie, queuePath(id), "", -1)
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"buyer": email})
}
