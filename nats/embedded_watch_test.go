package nats

import (
	"context"
	"testing"
	"time"

	"boxoffice/internal/checkfor"
)

// startWatched starts the async side on the embedded server, with its receipts under mail and a
// short email retry, for the tests of keepJetStream; it stops when the test ends.
func startWatched(t *testing.T) (e *env, a *Async, mail string) {
	t.Helper()
	e = newEnv(t)
	mail = t.TempDir()
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: t.TempDir(), MailDir: mail, Store: e.store,
		Tuning: &AsyncTuning{EmailBackoff: []time.Duration{50 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return e, a, mail
}

// TestJetStreamComesBackAfterTurningItselfOff: nats-server turns JetStream off on a full disk
// (handleOutOfSpace calls ShutdownJetStream) and never on again. Done here the same way, the
// async side must say it is not ready, turn JetStream on again from its files, and go on
// relaying and writing receipts: orders confirmed before and while it was off all get theirs.
func TestJetStreamComesBackAfterTurningItselfOff(t *testing.T) {
	e, a, mail := startWatched(t)
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

// TestJetStreamRepairsAnAccountLeftOff: turning JetStream on while the server's own shutdown
// (handleOutOfSpace's goroutine) still tears it down can leave the server's JetStream on and the
// account's off, which answers every request "not enabled for account" for good. Made here
// directly, the async side must say it is not ready, repair it, and deliver every receipt.
func TestJetStreamRepairsAnAccountLeftOff(t *testing.T) {
	e, a, mail := startWatched(t)
	before := e.confirmOrders(t, 2)
	checkfor.Until(t, 30*time.Second, 20*time.Millisecond, "the first receipts", func() bool {
		return len(mailFiles(t, mail)) == len(before)
	})
	if err := a.srv.srv.GlobalAccount().DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	if !a.srv.srv.JetStreamEnabled() || a.srv.srv.GlobalAccount().JetStreamEnabled() {
		t.Fatal("not the half-state this test is about")
	}
	time.Sleep(readyEvery) // past Ready's cached answer
	if err := a.Ready(context.Background()); err == nil {
		t.Fatal("Ready with JetStream off for the account")
	}
	during := e.confirmOrders(t, 2)
	checkfor.Until(t, 60*time.Second, 50*time.Millisecond, "a receipt for every order", func() bool {
		return len(mailFiles(t, mail)) == len(before)+len(during)
	})
	checkfor.Until(t, 10*time.Second, 100*time.Millisecond, "Ready again", func() bool {
		return a.Ready(context.Background()) == nil
	})
}
