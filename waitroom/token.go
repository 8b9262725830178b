package waitroom

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"boxoffice"
)

// A queue ticket's token is base64url(payload) "." base64url(HMAC-SHA256(secret, payload)[:16]).
// The payload, "v1|show|seq|buyer|expires|admitted-until", names the place (show and entry seq),
// the buyer by a hash of their address (tokens travel in URLs and logs: no address in clear), when
// the token stops being good for reading the ticket, and, once the queue has admitted the
// buyer, until when it opens holds (0 before). The store is the truth about a place; the token
// only says who may ask about it, and, signed, that the queue admitted its holder — so creating a
// hold checks it without a read of the store.
const tokenVersion = "v1"

// macLen is the length of the token's truncated MAC: 128 bits is out of reach of forgery and
// keeps tokens short enough for a URL.
const macLen = 16

// claims is what a token says.
type claims struct {
	ShowID  string
	Seq     int64
	Buyer   string    // buyerHash of the identity
	Expires time.Time // the token reads the ticket until then
	// AdmittedUntil is when the admission the token carries runs out; zero: not admitted.
	AdmittedUntil time.Time
}

// buyerHash names an identity in a token without revealing the address.
func buyerHash(identity string) string {
	sum := sha256.Sum256([]byte("boxoffice queue buyer\x00" + identity))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

func sign(secret []byte, c claims) string {
	adm := int64(0)
	if !c.AdmittedUntil.IsZero() {
		adm = c.AdmittedUntil.Unix()
	}
	payload := strings.Join([]string{tokenVersion, c.ShowID, strconv.FormatInt(c.Seq, 10), c.Buyer,
		strconv.FormatInt(c.Expires.Unix(), 10), strconv.FormatInt(adm, 10)}, "|")
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." +
		base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:macLen])
}

// errBadToken is the answer to a token that is not one of ours: the same as for a ticket that
// does not exist, so a forger learns nothing.
func errBadToken() error {
	return boxoffice.Errorf(boxoffice.ENOTFOUND, "no such queue ticket")
}

// parse checks token's signature and returns its claims; the caller judges the times.
func parse(secret []byte, token string) (claims, error) {
	if len(token) > 512 {
		return claims{}, errBadToken()
	}
	p64, mac64, ok := strings.Cut(token, ".")
	if !ok {
		return claims{}, errBadToken()
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(mac64)
	if err1 != nil || err2 != nil || len(mac) != macLen {
		return claims{}, errBadToken()
	}
	m := hmac.New(sha256.New, secret)
	m.Write(payload)
	if !hmac.Equal(mac, m.Sum(nil)[:macLen]) {
		return claims{}, errBadToken()
	}
	f := strings.Split(string(payload), "|")
	if len(f) != 6 || f[0] != tokenVersion {
		return claims{}, errBadToken()
	}
	seq, err1 := strconv.ParseInt(f[2], 10, 64)
	exp, err2 := strconv.ParseInt(f[4], 10, 64)
	adm, err3 := strconv.ParseInt(f[5], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return claims{}, errBadToken()
	}
	c := claims{ShowID: f[1], Seq: seq, Buyer: f[3], Expires: time.Unix(exp, 0).UTC()}
	if adm != 0 {
		c.AdmittedUntil = time.Unix(adm, 0).UTC()
	}
	return c, nil
}
