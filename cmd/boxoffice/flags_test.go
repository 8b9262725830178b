package main

import (
	"io"
	"strings"
	"testing"
)

// TestServeRefusesUnsafeSettings: settings that would break a guarantee or expose the server are
// refused before anything starts, with an error that names the flag.
func TestServeRefusesUnsafeSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// A key that expires while its request (or a quick retry) is under way lets the retry
		// make a second order and a second charge.
		{[]string{"--idempotency-ttl", "3s"}, "--idempotency-ttl 3s"},
		{[]string{"--idempotency-ttl", "1m", "--payment-sync-budget", "2s"}, "--idempotency-ttl 1m0s"},
		// Profiles show the server's memory.
		{[]string{"--debug-addr", ":6060"}, "--debug-addr :6060"},
		{[]string{"--debug-addr", "10.1.2.3:6060"}, "not a loopback address"},
	} {
		err := serve(append([]string{"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0"}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v = %v; want an error naming %q", tc.args, err, tc.want)
		}
	}
	for _, ok := range []string{"127.0.0.1:6060", "localhost:6060", "[::1]:6060"} {
		if !loopbackAddr(ok) {
			t.Errorf("loopbackAddr(%q) = false", ok)
		}
	}
}
