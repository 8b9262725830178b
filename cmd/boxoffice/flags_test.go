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
		// The embedded NATS server has no authentication.
		{[]string{"--nats-listen", "10.1.2.3:4222"}, "--nats-listen 10.1.2.3:4222: not a loopback address"},
		{[]string{"--nats-listen", ":4222"}, "--nats-listen :4222: not a loopback address"},
		{[]string{"--nats-listen", "127.0.0.1:4222", "--nats", "nats://u:secret@10.0.0.1:4222"}, "--nats-listen exposes the embedded"},
		// A retention that deletes messages still being retried loses them without a dead letter.
		{[]string{"--events-max-age", "20h"}, "--events-max-age: max age 20h0m0s would delete messages still being retried"},
		{[]string{"--events-max-age", "2h", "--webhook-retries", "1h,1h", "--email-retries", "1s"}, "--events-max-age"},
		{[]string{"--events-max-age", "30s", "--webhook-retries", "1s", "--email-retries", "1s"}, "duplicate window"},
		// No budget at all would refuse every sign-in: that is --shop-trust-email's job, said so.
		{[]string{"--shop-codes-per-minute", "0"}, "--shop-codes-per-minute 0"},
	} {
		err := serve(append([]string{"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0"}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v = %v; want an error naming %q", tc.args, err, tc.want)
		}
	}
	// A refusal never shows a password of the --nats URLs.
	err := serve([]string{"--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:4222", "--nats", "nats://u:secret@10.0.0.1:4222"}, io.Discard, io.Discard)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("serve --nats-listen with a --nats URL = %v; want a refusal without the password", err)
	}
	for _, ok := range []string{"127.0.0.1:6060", "localhost:6060", "[::1]:6060"} {
		if !loopbackAddr(ok) {
			t.Errorf("loopbackAddr(%q) = false", ok)
		}
	}
}
