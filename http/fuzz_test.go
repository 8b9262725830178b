package http

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"boxoffice"
	"boxoffice/sale"
)

func TestParseIdempotencyKey(t *testing.T) {
	cases := []struct {
		values []string
		want   string
		code   string
	}{
		{nil, "", boxoffice.EIDEMMISSING},
		{[]string{}, "", boxoffice.EIDEMMISSING},
		{[]string{""}, "", boxoffice.EIDEMINVALID},
		{[]string{"  "}, "", boxoffice.EIDEMINVALID},
		{[]string{"a", "b"}, "", boxoffice.EIDEMINVALID},
		{[]string{"abc"}, "abc", ""},
		{[]string{" abc\t"}, "abc", ""},
		{[]string{"a,b"}, "a,b", ""},
		{[]string{`ab"c`}, `ab"c`, ""},
		{[]string{`"abc"`}, "abc", ""},
		{[]string{`"a\\b"`}, `a\b`, ""},
		{[]string{`"a\"b"`}, `a"b`, ""},
		{[]string{`"a\nb"`}, "", boxoffice.EIDEMINVALID},
		{[]string{`"a\"`}, "", boxoffice.EIDEMINVALID},
		{[]string{`"abc"d`}, "", boxoffice.EIDEMINVALID},
		{[]string{`"`}, "", boxoffice.EIDEMINVALID},
		{[]string{`"a` + "\x7f" + `"`}, "", boxoffice.EIDEMINVALID},
		{[]string{"a\x00"}, "", boxoffice.EIDEMINVALID},
		{[]string{strings.Repeat("x", 255)}, strings.Repeat("x", 255), ""},
		{[]string{strings.Repeat("x", 256)}, "", boxoffice.EIDEMINVALID},
		{[]string{`"` + strings.Repeat(`\\`, 255) + `"`}, strings.Repeat(`\`, 255), ""},
		{[]string{`"` + strings.Repeat(`\\`, 256) + `"`}, "", boxoffice.EIDEMINVALID},
	}
	for _, c := range cases {
		got, err := ParseIdempotencyKey(c.values)
		if code := boxoffice.ErrorCode(err); code != c.code || got != c.want {
			t.Errorf("ParseIdempotencyKey(%q) = %q, %v; want %q, %s", c.values, got, err, c.want, c.code)
		}
	}
}

// FuzzParseIdempotencyKey checks that whatever a client sends, an accepted key is 1–255 visible
// ASCII characters and a refused one is a 400.
func FuzzParseIdempotencyKey(f *testing.F) {
	for _, s := range []string{"", "abc", `"abc"`, `"a\"b"`, `"a\\"`, `"`, `""`, `"a"b"`, "a b", "\x7f", "é",
		strings.Repeat("k", 255), strings.Repeat("k", 256), `"` + strings.Repeat("k", 255) + `"`} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, twice bool) {
		values := []string{s}
		if twice {
			values = append(values, s)
		}
		key, err := ParseIdempotencyKey(values)
		if err != nil {
			if key != "" {
				t.Fatalf("key %q with error %v", key, err)
			}
			if st := StatusOf(boxoffice.ErrorCode(err)); st != 400 {
				t.Fatalf("error %v has status %d", err, st)
			}
			return
		}
		if twice {
			t.Fatalf("repeated header accepted")
		}
		if !validKey(key) {
			t.Fatalf("accepted invalid key %q from %q", key, s)
		}
	})
}

// inputs returns a fresh value of every type a request body is decoded into.
func inputs() []any {
	return []any{&sale.ShowInput{}, &sale.HoldInput{}, &sale.ConfirmInput{}, &sale.PurchaseInput{},
		&sale.APIKeyInput{}, &struct{}{}}
}

// FuzzDecodeRequest checks that decoding any bytes into any input type never panics, answers only
// 4xx problems, and that a body it accepts can always be fingerprinted (the POST path relies on
// that). Minimisation of a new input can take up to a minute per worker at this speed; pass
// -fuzzminimizetime=200x to keep short runs busy. It also sends the bytes through the handler to every POST and PUT route: nothing the
// client sends may turn into a 5xx.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		"", " ", "{}", "[]", "null", "0", `"x"`, holdBody, holdBody + "{}", `{"tier_id":1}`,
		`{"quantity":1e400}`, `{"quantity":-0}`, `{"buyer":{"email":null}}`, `{"a":1}`, `{"tiers":[{"capacity":"1"}]}`,
		`{"starts_at":"2030-01-01T00:00:00Z","tiers":[{"id":"ga","price":{"amount":1,"currency":"EUR"}}]}`,
		`{"starts_at":"x"}`, `{"payment":{"token":"tok_ok"}}`, `{"role":"client"}`, "{\"a\":\"\xff\"}", `{"`, `{"x":[[[[`,
		`{"name":"a","name":"b"}`, "\ufeff{}",
	} {
		f.Add([]byte(s))
	}
	fake := &fakeService{}
	h := NewHandler(fake, Options{})
	routes := []req{
		{method: "POST", path: "/v1/api-keys", key: adminKey},
		{method: "PUT", path: "/v1/shows/gala", key: adminKey},
		{method: "POST", path: "/v1/shows/gala/holds", key: clientKey},
		{method: "POST", path: "/v1/holds/hld_1/confirm", key: clientKey},
		{method: "POST", path: "/v1/purchases", key: clientKey},
		{method: "POST", path: "/v1/orders/ord_1/cancel", key: clientKey},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fake.mu.Lock()
		fake.calls = nil // keep a long run's memory flat
		fake.mu.Unlock()
		for _, in := range inputs() {
			err := decodeJSON(data, in)
			if err == nil {
				if _, ferr := sale.NewIdem("key_c", "POST /p", "/p", "k", in); ferr != nil {
					t.Fatalf("decoded %q into %T but cannot fingerprint it: %v", data, in, ferr)
				}
				continue
			}
			if boxoffice.AsError(err) == nil {
				t.Fatalf("%T: not a domain error: %v", in, err)
			}
			if resp := (Renderer{}).Problem(err); resp.Status < 400 || resp.Status > 499 {
				t.Fatalf("%T: %q gave status %d: %v", in, data, resp.Status, err)
			}
		}
		for _, r := range routes {
			r.body = string(data)
			r.idem = []string{"k"}
			w := serve(t, h, r)
			if w.Code >= 500 {
				t.Fatalf("%s %s with %q: %d %s", r.method, r.path, data, w.Code, w.Body)
			}
		}
	})
}

// FuzzCheckKeys holds checkKeys, which scans the bytes itself, to checkKeysTokens, the reference
// it falls back to: for any valid UTF-8 body (decodeJSON refuses others before) both give the
// same error, field and message included, or both none.
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{
		"", " ", "{}", "[]", "null", "0", "-0.5e+3", "01", "1x", `"x"`, holdBody, holdBody + "{}", holdBody + " ",
		`{"a":1,"a":2}`, `{"A":1}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"b":1,"b":2}]}`, `{"\u0061":1,"a":2}`,
		`{"a":1,"\u0041":2}`, `{"a" 1}`, `{"a":1,}`, `{"a":1 "b":2}`, `[1,2,]`, `{"a":tru}`, `{"a":"\q"}`,
		`{"a":1}{"A":1}`, `{"a":1,"B":2,"a":3}`, "{\"a\":\"\x01\"}", `{"k":"é","é":1}`, `{"x":[[[[`,
		`{"a":1,"a":{`, `{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{"p":{"q":{"r":1}}}}}}}}}}}}}}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return
		}
		got, want := checkKeys(data), checkKeysTokens(data)
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprintf("%+v", boxoffice.AsError(got)) != fmt.Sprintf("%+v", boxoffice.AsError(want)) {
			t.Fatalf("checkKeys(%q) = %v, the reference says %v", data, got, want)
		}
	})
}
