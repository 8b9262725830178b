package sale

import (
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
	v.check(boxoffice.ValidEmail(s), field, "must be a valid email address")
}

func (v *validator) quantity(n, maxQ int, field string) {
	v.check(n >= 1 && n <= maxQ, field, "must be between 1 and "+itoa(maxQ))
}

func (v *validator) token(s, field string) {
	v.check(s != "" && len(s) <= 255 && visible(s), field, "must be 1 to 255 visible ASCII characters")
}

// text checks free text shown to people (show and tier names, labels): 1 to max bytes, not
// blank, and no control or bidirectional-override characters, which can hide or reorder what a
// person reads (a refund notice that reads backwards, a name that deletes a line in a log).
func (v *validator) text(s string, max int, field string) {
	switch {
	case strings.TrimSpace(s) == "" || len(s) > max:
		v.check(false, field, "must be 1 to "+itoa(max)+" characters")
	case !boxoffice.PlainText(s):
		v.check(false, field, "must not contain control or bidirectional-override characters")
	}
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

// seats checks the seats a hold or a purchase names and returns its quantity: the number of
// seats when they are named (quantity may then be 0, or must be that number), else quantity.
func (v *validator) seats(seats []string, quantity, maxQ int) int {
	if len(seats) == 0 {
		return quantity
	}
	seen := map[string]bool{}
	for _, id := range seats {
		if len(id) > 62 || id == "" || seen[id] {
			v.check(false, "seats", "must be distinct seat ids such as A-12-7")
			break
		}
		seen[id] = true
	}
	v.check(len(seats) <= maxQ, "seats", "may name at most "+itoa(maxQ)+" seats")
	if quantity != 0 && quantity != len(seats) {
		v.check(false, "quantity", "must be the number of seats named, or left out")
	}
	return len(seats)
}
