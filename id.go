package boxoffice

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"regexp"
	"time"
)

// ID prefixes of server-made identifiers.
const (
	PrefixHold   = "hld_"
	PrefixOrder  = "ord_"
	PrefixEvent  = "evt_"
	PrefixAPIKey = "key_"
	PrefixRecord = "idr_"
)

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns prefix followed by 26 characters: 48 bits of milliseconds then 80 random bits, so
// ids sort by creation time, which makes them usable as pagination cursors.
func NewID(prefix string, now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// RandomString returns n characters from the lower-case id alphabet, for secrets and codes.
func RandomString(n int) string {
	b := make([]byte, (n*5+7)/8+1)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)[:n]
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidName reports whether s is a valid caller-chosen identifier (show, tier, webhook endpoint).
func ValidName(s string) bool { return nameRE.MatchString(s) }
