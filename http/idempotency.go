package http

import (
	"strings"

	"boxoffice"
)

// headerIdempotencyKey is the request header of the IETF draft "The Idempotency-Key HTTP Header
// Field".
const headerIdempotencyKey = "Idempotency-Key"

// maxIdempotencyKeyLen bounds a key, so that a client cannot make us store arbitrary data per
// request.
const maxIdempotencyKeyLen = 255

// ParseIdempotencyKey returns the key of the Idempotency-Key header given as all its values (as
// http.Header.Values returns them). The draft makes the field an RFC 8941 sf-string; many clients
// send the key bare, so both are accepted, and "abc" and abc are the same key. Either way the key
// is 1–255 visible ASCII characters (0x21–0x7E). No value is EIDEMMISSING; an empty, malformed or
// repeated one is EIDEMINVALID, because picking one of two keys could merge two requests.
func ParseIdempotencyKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", boxoffice.Errorf(boxoffice.EIDEMMISSING, "a POST needs an Idempotency-Key header")
	case 1:
	default:
		return "", boxoffice.Errorf(boxoffice.EIDEMINVALID, "the Idempotency-Key header must be given once")
	}
	// Field values carry no leading or trailing whitespace; net/http strips it already, but the
	// function is also called with raw values.
	v := strings.Trim(values[0], " \t")
	if strings.HasPrefix(v, `"`) {
		unquoted, ok := parseSFString(v)
		if !ok {
			return "", boxoffice.Errorf(boxoffice.EIDEMINVALID, "the Idempotency-Key header is not a valid quoted string")
		}
		v = unquoted
	}
	if !validKey(v) {
		return "", boxoffice.Errorf(boxoffice.EIDEMINVALID,
			"an Idempotency-Key is 1 to %d visible ASCII characters", maxIdempotencyKeyLen)
	}
	return v, nil
}

// validKey reports whether k is 1–255 visible ASCII characters.
func validKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// parseSFString parses s as exactly one RFC 8941 sf-string: a double quote, printable ASCII with
// \" and \\ as the only escapes, and a closing double quote that ends s. Parameters after the
// string are not accepted: the draft defines none for this field.
func parseSFString(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i >= len(s) || (s[i] != '"' && s[i] != '\\') {
				return "", false
			}
			b.WriteByte(s[i])
		case c == '"':
			return b.String(), i == len(s)-1
		case c < 0x20 || c > 0x7e:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false // no closing quote
}
