package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"boxoffice"
	"boxoffice/sale"
)

// maxBodyBytes is the largest request body; SPEC §3 answers anything bigger with 413.
const maxBodyBytes = 64 << 10

// readBody reads the request body, bounded by maxBodyBytes, and returns nil for an empty or
// whitespace-only one. A non-empty body must be JSON: the content type is checked before reading
// when the length is announced, so that a large body of the wrong type is refused without being
// read, and after reading for a chunked one. The handler wrapper has already put a
// http.MaxBytesReader around r.Body.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > 0 {
		if err := checkContentType(r); err != nil {
			return nil, err
		}
		if r.ContentLength > maxBodyBytes {
			return nil, tooLarge()
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, tooLarge()
		}
		return nil, boxoffice.Validation(boxoffice.FieldError{Field: "body", Message: "the body could not be read"})
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if r.ContentLength <= 0 {
		if err := checkContentType(r); err != nil {
			return nil, err
		}
	}
	return body, nil
}

func tooLarge() error {
	return boxoffice.Errorf(boxoffice.EPAYLOADTOOLARGE, "the body is larger than %d bytes", maxBodyBytes)
}

// checkContentType accepts application/json with any parameters, but a charset other than UTF-8 is
// refused: JSON is UTF-8 (RFC 8259) and decoding another charset as UTF-8 would change the data.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	unsupported := boxoffice.Errorf(boxoffice.EUNSUPPORTEDMEDIA, "the body must be application/json")
	if ct == "" {
		return unsupported
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != contentJSON {
		return unsupported
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupported
	}
	return nil
}

// decodeJSON decodes body strictly into v: the body is required, unknown fields, wrong types,
// syntax errors and data after the value are validation errors naming the field where it can be
// told. Every error it returns is a 400, whatever the bytes: the fuzz target holds it to that.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return boxoffice.Validation(boxoffice.FieldError{Field: "body", Message: "a JSON body is required"})
	}
	if !utf8.Valid(body) {
		// encoding/json would replace the bad bytes with U+FFFD, storing what was not sent.
		return boxoffice.Validation(boxoffice.FieldError{Field: "body", Message: "the body is not valid UTF-8"})
	}
	if err := checkKeys(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, v)
	}
	if _, err := dec.Token(); err != io.EOF {
		return boxoffice.Validation(boxoffice.FieldError{Field: "body", Message: "unexpected data after the JSON value"})
	}
	return nil
}

// checkKeys refuses what encoding/json would silently accept about object keys: a key given twice
// (the last one wins, so two requests that read differently decode alike) and a key that is not
// the field's exact lower-case ASCII name (encoding/json matches names case-insensitively, with
// Unicode folding: "QUANTITY" and "quantity" would both set Quantity, and so would a Kelvin sign
// for a k). Syntax errors are left to the decoder, which names where they are.
//
// It scans the bytes itself (keyScanner) and falls back to checkKeysTokens, the reference, for
// anything it does not judge plainly (an escape in a key, a syntax error, data after the value):
// walking every body through json.Decoder.Token, which allocates for each token, had been the
// largest cost of decoding a purchase (7% of a sold-out stampede's CPU profile).
func checkKeys(body []byte) error {
	sc := keyScanner{b: body}
	err := sc.value(0)
	if !sc.unsure {
		if err != nil {
			return err // everything before the key is valid JSON: the reference stops there too
		}
		sc.space()
		if sc.i == len(sc.b) {
			return nil
		}
	}
	return checkKeysTokens(body)
}

// maxScanDepth is the deepest nesting keyScanner follows; deeper bodies go to checkKeysTokens.
const maxScanDepth = 32

// keyScanner checks object keys as checkKeysTokens does, in one pass over the bytes without
// allocating. unsure says it met something it leaves to checkKeysTokens; what it returned is then
// meaningless. Until then, what it scanned is valid JSON, so a bad key it finds is the first one
// checkKeysTokens would find too.
type keyScanner struct {
	b      []byte
	i      int
	unsure bool
}

func (s *keyScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value scans one JSON value at s.i and returns the first bad key in it.
func (s *keyScanner) value(depth int) error {
	s.space()
	if s.i >= len(s.b) || depth > maxScanDepth {
		s.unsure = true
		return nil
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		s.i++
		s.space()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.value(depth + 1); err != nil || s.unsure {
				return err
			}
			if s.end(']') {
				return nil
			}
		}
	case c == '"':
		s.str()
	case c == '-' || '0' <= c && c <= '9':
		s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
				s.i += len(lit)
				return nil
			}
		}
		s.unsure = true
	}
	return nil
}

// object scans an object at s.i, checking each key against the ones before it.
func (s *keyScanner) object(depth int) error {
	s.i++ // {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	var seenArr [8][]byte // the keys so far: request bodies have a few, so a list beats a map
	seen := seenArr[:0]
	for {
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			s.unsure = true
			return nil
		}
		start := s.i + 1
		if escaped := s.str(); escaped || s.unsure {
			s.unsure = true // the key's text is not its bytes: let the decoder read it
			return nil
		}
		key := s.b[start : s.i-1]
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			s.unsure = true
			return nil
		}
		s.i++
		if !lowerASCII(key) {
			return boxoffice.Validation(boxoffice.FieldError{Field: string(key), Message: "unknown field (field names are lower-case ASCII)"})
		}
		for _, k := range seen {
			if bytes.Equal(k, key) {
				return boxoffice.Validation(boxoffice.FieldError{Field: string(key), Message: "is given more than once"})
			}
		}
		seen = append(seen, key)
		if err := s.value(depth + 1); err != nil || s.unsure {
			return err
		}
		if s.end('}') {
			return nil
		}
	}
}

// end reads what follows an element of an array or a member of an object: a comma (more follow:
// false) or close (true). Anything else, or the end of the body, is for the token walk to judge
// (unsure, and true).
func (s *keyScanner) end(close byte) bool {
	s.space()
	if s.i >= len(s.b) {
		s.unsure = true
		return true
	}
	s.i++
	switch s.b[s.i-1] {
	case ',':
		return false
	case close:
		return true
	default:
		s.unsure = true
		return true
	}
}

// str scans a string at s.i (its opening quote) and says whether it has an escape. A control
// character or a malformed escape makes the scan unsure (the body is UTF-8 already).
func (s *keyScanner) str() (escaped bool) {
	s.i++
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return escaped
		case c < 0x20:
			s.unsure = true
			return escaped
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				s.unsure = true
				return escaped
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) || !isHex4(s.b[s.i+2:s.i+6]) {
					s.unsure = true
					return escaped
				}
				s.i += 6
			default:
				s.unsure = true
				return escaped
			}
		default:
			s.i++
		}
	}
	s.unsure = true
	return escaped
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number scans a number at s.i by JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *keyScanner) number() {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case digits() == 0:
		s.unsure = true
		return
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			s.unsure = true
			return
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			s.unsure = true
			return
		}
	}
	// A number runs into the next token only through a delimiter; "01" or "1x" is a syntax error.
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
		default:
			s.unsure = true
		}
	}
}

// checkKeysTokens is checkKeys by json.Decoder.Token: the reference keyScanner defers to.
func checkKeysTokens(body []byte) error {
	type frame struct {
		object  bool
		wantKey bool
		seen    map[string]bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or a syntax error the decoder reports
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.object {
					top.wantKey = true // after this value, the next key
				}
				stack = append(stack, &frame{object: d == '{', wantKey: d == '{', seen: map[string]bool{}})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top == nil || !top.object {
			continue
		}
		if !top.wantKey {
			top.wantKey = true // a scalar value; a key comes next
			continue
		}
		key, _ := tok.(string)
		top.wantKey = false
		switch {
		case !lowerASCII(key):
			return boxoffice.Validation(boxoffice.FieldError{Field: key, Message: "unknown field (field names are lower-case ASCII)"})
		case top.seen[key]:
			return boxoffice.Validation(boxoffice.FieldError{Field: key, Message: "is given more than once"})
		}
		top.seen[key] = true
	}
}

// lowerASCII reports whether s has no upper-case letter and no byte beyond ASCII.
func lowerASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// decodeError turns an encoding/json error into a validation error with the field it is about.
func decodeError(err error, v any) error {
	field, msg := "body", ""
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &syntaxErr):
		msg = fmt.Sprintf("invalid JSON at byte %d", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		msg = "the JSON ends too early"
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			field = typeErr.Field
		}
		msg = "must be " + jsonKind(typeErr.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if unq, uerr := strconv.Unquote(name); uerr == nil {
			name = unq
		}
		field, msg = name, "unknown field"
	case errors.As(err, &timeErr) || strings.Contains(err.Error(), "Time.UnmarshalJSON"):
		// encoding/json does not say which field a time came from; ShowInput has only one.
		if _, ok := v.(*sale.ShowInput); ok {
			field = "starts_at"
		}
		msg = "must be an RFC 3339 time"
	default:
		msg = "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	return boxoffice.Validation(boxoffice.FieldError{Field: field, Message: msg})
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a valid value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 time"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a valid value"
}
