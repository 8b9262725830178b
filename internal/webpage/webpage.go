// Package webpage holds what the server's two browser pages, the operator's console and the
// buyer's page, do alike to be safe in a browser: the headers of every answer and the check of
// an action's origin.
package webpage

import (
	"net/http"
	"net/url"
)

// SecureHeaders sets the headers of every answer of a page: no framing (a Pay or a Cancel button
// clickjacked), scripts, styles and requests from the page's own origin only, and no caching, as
// every answer shows live data or one person's.
func SecureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on a form
	// POST, and SameOrigin could not tell a page's own forms from a sandboxed frame's.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// SameOrigin reports whether r's Origin header, when there is one, is the host r was sent to.
// Browsers send it on every POST; a page of another site gets no further, whatever its cookies.
func SameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}
