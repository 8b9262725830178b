package sale

import (
	"net/mail"
	"regexp"
	"strings"

	"boxoffice"
)

// validator gathers field errors so a client learns every problem of a request at once.
type validator struct{ fields []boxoffice.FieldError }

func (v *validator) check(ok bool, field, msg string) {
	if !ok {
		v.fields = append(v.fields, boxoffice.FieldError{Field: field, Message: msg})
	}
}

func (v *validator) err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return boxoffice.Validation(v.fields...)
}

func (v *validator) name(s, field string) {
	v.check(boxoffice.ValidName(s), field, "must match ^[a-z0-9][a-z0-9_-]{0,63}$")
}

func (v *validator) email(s, field string) {
	v.check(validEmail(s), field, "must be a valid email address")
}

func (v *validator) quantity(n, maxQ int, field string) {
	v.check(n >= 1 && n <= maxQ, field, "must be between 1 and "+itoa(maxQ))
}

func (v *validator) token(s, field string) {
	v.check(s != "" && len(s) <= 255 && visible(s), field, "must be 1 to 255 visible ASCII characters")
}

// validEmail accepts a bare address (no display name), as net/mail parses it, of at most 254 bytes.
func validEmail(s string) bool {
	if s == "" || len(s) > 254 || strings.ContainsAny(s, " <>\"") {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && strings.Contains(s[at+1:], ".") && !strings.HasSuffix(s, ".")
}

func visible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
