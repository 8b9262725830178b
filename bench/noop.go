package bench

import (
	"net"
	"net/http"
)

// noopBody is what the no-op handler answers: about the size of a real order, so the transport
// does comparable work.
var noopBody = []byte(`{"id":"ord_00000000000000000000000000","status":"confirmed","show_id":"bench","tier_id":"ga","quantity":1,"amount":{"amount":1000,"currency":"EUR"},"buyer":{"email":"b@example.com"},"tickets":[{"code":"AAAA-BBBB-CCCC"}]}`)

// StartNoop serves a handler that reads the request and answers 201 with a fixed body, on a free
// loopback port: the most any server can do on this machine over this transport. It returns the
// base URL and a function that stops it.
func StartNoop() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 512)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(noopBody)
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
