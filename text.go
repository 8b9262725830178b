package boxoffice

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PlainText reports whether s is valid UTF-8 without control characters (tab included) or the
// bidirectional embedding, override and isolate characters (U+202A–U+202E, U+2066–U+2069).
func PlainText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
			return false
		}
	}
	return true
}

// ValidEmail accepts a bare buyer address (no display name), as net/mail parses it, of at most
// 254 bytes, in PlainText (net/mail allows control characters in quoted parts), with a dot in
// its domain. The sale, the waiting room and the buyer's page all check addresses with it, so
// that none accepts one another would then refuse.
func ValidEmail(s string) bool {
	if s == "" || len(s) > 254 || strings.ContainsAny(s, " <>\"") || !PlainText(s) {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && strings.Contains(s[at+1:], ".") && !strings.HasSuffix(s, ".")
}
