package shop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"boxoffice"
)

// Cookies. The session names the buyer for every show (Path=/shop); the queue cookie keeps one
// show's queue ticket token (Path=/shop/{show_id}), so the script never holds the token that
// opens holds, and a reload finds the buyer's place again.
const (
	sessionCookie = "boxoffice_shop"
	queueCookie   = "boxoffice_shop_queue"
)

// cookieVersion starts every signed value, so that a later format can tell old cookies apart.
const cookieVersion = "v1"

// macLen is the length of a cookie's truncated MAC: 128 bits is out of reach of forgery.
const macLen = 16

// session is a signed-in buyer.
type session struct {
	email   string
	expires time.Time
}

// mac signs payload under the shop's secret, for one purpose (a session, a buyer's tag), so that
// a value signed for one can never be presented as the other.
func (s *Shop) mac(purpose, payload string) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(payload))
	return m.Sum(nil)[:macLen]
}

// signed is a cookie value: base64url(payload) "." base64url(MAC of payload for purpose).
func (s *Shop) signed(purpose, payload string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." +
		base64.RawURLEncoding.EncodeToString(s.mac(purpose, payload))
}

// payload is the start of a signed cookie's payload: the format's version and when the value
// runs out; the fields of its kind follow, the last of which may hold anything (an email).
func payload(expires time.Time, fields ...string) string {
	return cookieVersion + "|" + strconv.FormatInt(expires.Unix(), 10) + "|" + strings.Join(fields, "|")
}

// opened reads r's cookie name as signed for purpose with n fields after the version and the
// expiry (see payload); ok is false when r has no such cookie, or one that is not ours
// (tampered, signed with another secret or for another purpose), or one that has run out.
func (s *Shop) opened(r *http.Request, name, purpose string, n int) (fields []string, expires time.Time, raw string, ok bool) {
	c, err := r.Cookie(name)
	if err != nil || len(c.Value) > 1024 {
		return nil, time.Time{}, "", false
	}
	p64, mac64, found := strings.Cut(c.Value, ".")
	if !found {
		return nil, time.Time{}, "", false
	}
	p, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(mac64)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(purpose, string(p))) {
		return nil, time.Time{}, "", false
	}
	f := strings.SplitN(string(p), "|", n+2)
	if len(f) != n+2 || f[0] != cookieVersion {
		return nil, time.Time{}, "", false
	}
	exp, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || !s.opts.Now().Before(time.Unix(exp, 0)) {
		return nil, time.Time{}, "", false
	}
	return f[2:], time.Unix(exp, 0), string(p), true
}

// sessionValue is the cookie value naming email until expires:
// base64url("v1|expires|email") "." base64url(MAC). The email comes last, so that no "|" in it
// can move a field.
func (s *Shop) sessionValue(email string, expires time.Time) string {
	return s.signed("session", payload(expires, email))
}

// session returns the buyer r's cookie names, or nil when it has none, or one that is not ours
// (tampered, or signed with another secret), or one that has run out.
func (s *Shop) session(r *http.Request) *session {
	f, expires, _, ok := s.opened(r, sessionCookie, "session", 1)
	if !ok {
		return nil
	}
	return &session{email: f[0], expires: expires}
}

// buyerTag names a buyer, unguessably and without the address, for the queue cookie and the
// idempotency keys: what one buyer's cookie or key is, another's can never be.
func (s *Shop) buyerTag(email string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("buyer", boxoffice.BuyerKey(email))[:9])
}

// sameBuyer reports whether an object's buyer is the session's: addresses compare as the sale
// compares buyers (boxoffice.BuyerKey).
func sameBuyer(email string, ss *session) bool {
	return boxoffice.BuyerKey(email) == boxoffice.BuyerKey(ss.email)
}

// setCookie sets a cookie: HttpOnly so no script reads it, SameSite=Strict so no other site's
// page sends it, Secure when served over TLS (on plain loopback HTTP a Secure cookie would never
// come back). maxAge < 0 deletes it.
func setCookie(w http.ResponseWriter, r *http.Request, name, path, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// queuePath is the queue cookie's path: one show's pages, so that each show keeps its own ticket
// (a cookie path "/shop/a" is not sent to "/shop/ab").
func queuePath(showID string) string { return "/shop/" + showID }

// queueToken returns the queue ticket token r carries for the session's buyer, "" when none:
// the cookie's value is the buyer's tag, "~", the token, and a token left by another buyer
// signed in before on this browser is not this one's.
func (s *Shop) queueToken(r *http.Request, ss *session) string {
	c, err := r.Cookie(queueCookie)
	if err != nil {
		return ""
	}
	tag, token, ok := strings.Cut(c.Value, "~")
	if !ok || !hmac.Equal([]byte(tag), []byte(s.buyerTag(ss.email))) {
		return ""
	}
	return token
}

// setQueueToken keeps token for the session's buyer and show until the token runs out.
func (s *Shop) setQueueToken(w http.ResponseWriter, r *http.Request, ss *session, showID, token string, until time.Time) {
	maxAge := max(int(until.Sub(s.opts.Now()).Seconds()), 1)
	setCookie(w, r, queueCookie, queuePath(showID), s.buyerTag(ss.email)+"~"+token, maxAge)
}
