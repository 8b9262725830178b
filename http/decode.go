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
func checkKeys(body []byte) error {
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
func lowerASCII(s string) bool {
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
