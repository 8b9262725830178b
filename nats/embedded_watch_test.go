package nats

import (
	"context"
	"testing"
	"time"

	"boxoffice/internal/checkfor"
)

// TestJetStreamComesBackAfterTurningItselfOff: nats-server turns JetStream off on a full disk
// (handleOutOfSpace calls ShutdownJetStream) and never on again. Done here the same way, the
// async side must say it is not ready, turn JetStream on again from its files, and go on
// relaying and writing receipts: orders confirmed before and while it was off all get theirs.
func TestJetStreamComesBackAfterTurningItselfOff(t *testing.T) {
	e := newEnv(t)
	mail := t.TempDir()
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: t.TempDir(), MailDir: mail, Store: e.store,
		Tuning: &AsyncTuning{EmailBackoff: []time.Duration{50 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	before := e.confirmOrders(t, 3)
	checkfor.Until(t, 30*time.Second, 20*time.Millisecond, "the first receipts", func() bool {
		return len(mailFiles(t, mail)) == len(before)
	})
	if err := a.srv.srv.ShutdownJetStream(); err != nil {
		t.Fatal(err)
	}
	if a.srv.srv.JetStreamEnabled() {
		t.Fatal("JetStream still on")
	}
	during := e.confirmOrders(t, 3)
	checkfor.Until(t, 30*time.Second, 50*time.Millisecond, "JetStream on again", a.srv.srv.JetStreamEnabled)
	checkfor.Until(t, 60*time.Second, 50*time.Millisecond, "a receipt for every order", func() bool {
		return len(mailFiles(t, mail)) == len(before)+len(during)
	})
	checkfor.Until(t, 10*time.Second, 100*time.Millisecond, "Ready again", func() bool {
		return a.Ready(context.Background()) == nil
	})
}
