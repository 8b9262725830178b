package nats

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
	"boxoffice/internal/checkfor"
	"boxoffice/nats/natstest"
)

// The tests here play several boxoffice servers on one store and one JetStream: each server is
// an Email of its own, sharing the store, the stream and the mail dir.

// confirmOrders appends n order.confirmed events and returns them.
func (e *env) confirmOrders(t *testing.T, n int) []*boxoffice.Event {
	t.Helper()
	var evs []*boxoffice.Event
	for i := range n {
		o := boxoffice.Order{
			ID: fmt.Sprintf("ord_%03d", i), Status: boxoffice.OrderConfirmed, ShowID: "show1", TierID: "ga",
			Quantity: 1, Amount: boxoffice.Money{Amount: 2500, Currency: "EUR"},
			Buyer: boxoffice.Buyer{Email: "b@example.com"}, Tickets: []boxoffice.Ticket{{Code: fmt.Sprintf("T%03d", i)}},
		}
		evs = append(evs, e.appendEvent(t, boxoffice.EventOrderConfirmed, o.ID, o))
	}
	return evs
}

// emailInfo is the email consumer's state, or nil while it cannot be read.
func (e *env) emailInfo(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := e.js.Consumer(ctx, StreamName, EmailConsumer)
	if err != nil {
		return nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil
	}
	return info
}

// TestEmailSlowApplyKeepsItsMessage runs two email consumers, as two servers would, with an
// AckWait of 300 ms and an apply that takes 1.2 s: the progress reports keep each message with the
// server working on it, so every receipt is applied once and JetStream redelivers nothing.
func TestEmailSlowApplyKeepsItsMessage(t *testing.T) {
	e := newEnv(t)
	mail := filepath.Join(e.dir, "mail")
	events := e.confirmOrders(t, 3)
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()

	var applies atomic.Int32
	slow := func(ctx context.Context, m *Message) error {
		applies.Add(1)
		// Four AckWaits: without progress reports JetStream would have handed the message to
		// the other server three times over.
		if !sleep(ctx, 1200*time.Millisecond) {
			return ctx.Err()
		}
		return nil
	}
	servers := make([]*Email, 2)
	stops := make([]func() error, 2)
	for i := range servers {
		servers[i] = &Email{Store: e.store, JS: e.js, Dir: mail, AckWait: 300 * time.Millisecond, beforeWrite: slow}
		stops[i] = run(servers[i].Run)
	}
	stopped := false
	stopAll := func() {
		if stopped {
			return
		}
		stopped = true
		for i, stop := range stops {
			if err := stop(); err != nil {
				t.Errorf("server %d: %v", i, err)
			}
		}
	}
	defer stopAll()

	eventually(t, "every receipt is written and acked", func() bool {
		info := e.emailInfo(t)
		return info != nil && info.NumPending == 0 && info.NumAckPending == 0 && len(mailFiles(t, mail)) == len(events)
	})
	stopAll()

	if got := applies.Load(); got != int32(len(events)) {
		t.Errorf("%d applies for %d events: a slow apply lost its message to the other server", got, len(events))
	}
	for i, s := range servers {
		if _, skipped := s.Stats(); skipped != 0 {
			t.Errorf("server %d skipped %d redelivered events, want none", i, skipped)
		}
	}
	if info := e.emailInfo(t); info == nil || info.NumRedelivered != 0 {
		t.Errorf("consumer info %+v: want no redelivered message", info)
	}
	if info := e.emailInfo(t); info != nil && info.Config.AckWait != 300*time.Millisecond {
		t.Errorf("consumer AckWait %v, want the configured 300ms", info.Config.AckWait)
	}
	for _, ev := range events {
		if !inboxHas(t, e.store, EmailConsumer, ev.ID) {
			t.Errorf("inbox lacks %s", ev.ID)
		}
	}
}

// TestEmailDeadServerHandsOver has one server take a receipt and lose its connection to NATS
// mid-apply, before it wrote anything: the other server gets the message once the default AckWait
// passes — well within a bound below the 30 s the consumer used to wait — and writes the receipt.
// Then the first server, which was only cut off (paused, partitioned), comes back and finishes
// its apply: it rewrites the same file in the shared mail dir with the same bytes, so there is
// still one receipt with one inbox row.
func TestEmailDeadServerHandsOver(t *testing.T) {
	e := newEnv(t)
	mail := filepath.Join(e.dir, "mail")
	ev := e.confirmOrders(t, 1)[0]
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()

	nc1, js1 := e.connect(t)
	started := make(chan struct{})
	resume := make(chan struct{})
	var dyingApplies atomic.Int32
	dying := &Email{Store: e.store, JS: js1, Dir: mail, beforeWrite: func(ctx context.Context, m *Message) error {
		if dyingApplies.Add(1) == 1 {
			// The server drops off NATS with the message in hand; its progress reports stop.
			nc1.Close()
			close(started)
		}
		select {
		case <-resume:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	stopDying := run(dying.Run)
	defer func() { _ = stopDying() }()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the first server never got the message")
	}

	other := &Email{Store: e.store, JS: e.js, Dir: mail}
	stopOther := run(other.Run)
	defer func() { _ = stopOther() }()
	target := filepath.Join(mail, ev.ID+".eml")
	checkfor.Until(t, 15*time.Second, 10*time.Millisecond, "the other server writes the receipt", func() bool {
		info := e.emailInfo(t)
		return info != nil && info.NumAckPending == 0 && inboxHas(t, e.store, EmailConsumer, ev.ID)
	})
	if w, _ := other.Stats(); w != 1 {
		t.Errorf("the other server wrote %d receipts, want 1", w)
	}
	if w, _ := dying.Stats(); w != 0 {
		t.Errorf("the cut-off server wrote %d receipts before it came back, want 0", w)
	}
	if info := e.emailInfo(t); info == nil || info.Config.AckWait != DefaultAckWait {
		t.Errorf("consumer info %+v: want AckWait %v by default", info, DefaultAckWait)
	}
	first, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}

	// The cut-off server comes back and completes the apply it began.
	close(resume)
	checkfor.Until(t, 20*time.Second, 10*time.Millisecond, "the cut-off server finishes its apply", func() bool {
		w, _ := dying.Stats()
		return w == 1
	})
	if err := stopDying(); err != nil {
		t.Errorf("cut-off server: %v", err)
	}
	if err := stopOther(); err != nil {
		t.Errorf("other server: %v", err)
	}
	files := mailFiles(t, mail)
	if len(files) != 1 || files[0] != target {
		t.Fatalf("mail dir holds %v, want the one receipt %s", files, target)
	}
	again, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Errorf("the rewrite changed the receipt:\n%s\nthen:\n%s", first, again)
	}
	if !inboxHas(t, e.store, EmailConsumer, ev.ID) {
		t.Errorf("inbox lacks %s", ev.ID)
	}
	if tmp, _ := filepath.Glob(filepath.Join(mail, ".tmp-*")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}

// TestStartAsyncSharedMailDir starts the async side twice, as two servers with data dirs of
// their own would, on one store and one NATS server, with one shared MailDir and the relay led by
// the first: every receipt is written once into the shared dir, none into a data dir, and the
// second server's relay is held back by its Leader.
func TestStartAsyncSharedMailDir(t *testing.T) {
	e := newEnv(t)
	// nats-server processes, as servers sharing a bus would meet, rather than one in this
	// process: two StartAsyncs updating the stream and creating consumers on one in-process
	// server at once trip a data race inside nats-server (fileStore.UpdateConfig against
	// ConsumerStore), which -race reports against this test.
	ext := natstest.Start(t, 3)
	shared := filepath.Join(t.TempDir(), "receipts")
	var followerAsked atomic.Int32
	leaders := []func() bool{
		func() bool { return true },
		func() bool { followerAsked.Add(1); return false },
	}
	var dataDirs []string
	for i, leader := range leaders {
		dir := t.TempDir()
		dataDirs = append(dataDirs, dir)
		a, err := StartAsync(AsyncConfig{NATS: ext.URL(0), DataDir: dir, Store: e.store, MailDir: shared, Leader: leader})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Stop()
		if want := ".eml files under " + shared; a.Mail != want {
			t.Errorf("server %d: Mail %q, want %q", i, a.Mail, want)
		}
	}
	events := e.confirmOrders(t, 5)
	eventually(t, "every receipt is in the shared dir", func() bool {
		for _, ev := range events {
			if !inboxHas(t, e.store, EmailConsumer, ev.ID) {
				return false
			}
		}
		return len(mailFiles(t, shared)) == len(events)
	})
	for _, ev := range events {
		if _, err := os.Stat(filepath.Join(shared, ev.ID+".eml")); err != nil {
			t.Errorf("no receipt for %s: %v", ev.ID, err)
		}
	}
	for i, dir := range dataDirs {
		if files := mailFiles(t, filepath.Join(dir, "mail")); len(files) != 0 {
			t.Errorf("server %d wrote receipts into its own data dir: %v", i, files)
		}
	}
	if followerAsked.Load() == 0 {
		t.Error("the second server's relay never asked its Leader")
	}
}
