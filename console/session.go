package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// cookieName is the console's session cookie. It carries a random session id, never the key.
const cookieName = "boxoffice_console"

// maxSessions bounds the sessions kept in memory, so that a flood of sign-ins cannot grow the map
// without end; past it the session closest to its end is dropped.
const maxSessions = 1000

// session is one signed-in browser. The id is in the cookie; the CSRF token is in the page and
// must come back in a header with every action, which a page of another site cannot read or send.
type session struct {
	id      string
	csrf    string
	keyID   string
	expires time.Time // sliding: each request moves it idleTTL ahead, up to hardEnd
	hardEnd time.Time // the latest end, however active the session is
}

// sessions keeps the console's sessions in memory: a restart signs everyone out, which is the
// safe side, and nothing about a session ever reaches the store or the disk.
type sessions struct {
	now     func() time.Time
	idleTTL time.Duration
	maxTTL  time.Duration

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(now func() time.Time, idleTTL, maxTTL time.Duration) *sessions {
	return &sessions{now: now, idleTTL: idleTTL, maxTTL: maxTTL, byID: make(map[string]*session)}
}

// randomToken returns 32 random bytes, base64url: unguessable, and safe in a cookie and a header.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for the key keyID signed in with.
func (s *sessions) create(keyID string) *session {
	now := s.now()
	ss := &session{id: randomToken(), csrf: randomToken(), keyID: keyID,
		expires: now.Add(s.idleTTL), hardEnd: now.Add(s.maxTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if len(s.byID) >= maxSessions {
		var oldest *session
		for _, o := range s.byID {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(s.byID, oldest.id)
	}
	s.byID[ss.id] = ss
	return ss
}

// sweepLocked drops the sessions that have ended.
func (s *sessions) sweepLocked(now time.Time) {
	for id, o := range s.byID {
		if !now.Before(o.expires) {
			delete(s.byID, id)
		}
	}
}

// get returns the live session of r's cookie and extends it, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.byID[c.Value]
	if ss == nil {
		return nil
	}
	if !now.Before(ss.expires) {
		delete(s.byID, ss.id)
		return nil
	}
	ss.expires = now.Add(s.idleTTL)
	if ss.expires.After(ss.hardEnd) {
		ss.expires = ss.hardEnd
	}
	cp := *ss
	return &cp
}

// end removes a session.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// validCSRF reports whether token is the session's, in constant time.
func (ss *session) validCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(ss.csrf)) == 1
}

// setCookie sets the session cookie: HttpOnly so no script reads it, SameSite=Strict so no other
// site's page sends it, Path=/console so the API under /v1 never sees it, Secure when served
// over TLS (on plain loopback HTTP a Secure cookie would never come back).
func setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/console", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}
