package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"

	"boxoffice/postgres/pgtest"
)

var receiptSubjectRE = regexp.MustCompile(`(?m)^Subject: Your tickets, order (\S+)\r?$`)
var cancelSubjectRE = regexp.MustCompile(`(?m)^Subject: Your order (\S+) was cancelled\r?$`)

// mailbox reads <dir>/mail: receipts and cancellation notices per order id.
func mailbox(t *testing.T, dir string) (receipts, notices map[string]int) {
	t.Helper()
	receipts, notices = map[string]int{}, map[string]int{}
	names, err := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if m := receiptSubjectRE.FindSubmatch(b); m != nil {
			receipts[string(m[1])]++
		} else if m := cancelSubjectRE.FindSubmatch(b); m != nil {
			notices[string(m[1])]++
		} else {
			t.Errorf("%s is neither a receipt nor a notice:\n%s", name, b)
		}
	}
	return receipts, notices
}

// confirmedOrders lists the show's orders by status.
func listOrders(t *testing.T, cl *client, show string) map[string]string {
	t.Helper()
	status := map[string]string{}
	after := ""
	for range 1000 {
		pg := cl.must(200, "GET", "/v1/orders?show_id="+show+"&limit=100&after="+after, nil).json(t)
		for _, o := range pg["data"].([]any) {
			m := o.(map[string]any)
			status[m["id"].(string)] = m["status"].(string)
		}
		if pg["next"] == nil {
			return status
		}
		after = pg["next"].(string)
	}
	t.Fatal("too many order pages")
	return nil
}

// TestAsyncReceiptsExactlyOnce buys tickets over HTTP, SIGKILLs the server mid-sale, restarts it
// and buys more, cancels one order: every confirmed order ends with exactly one receipt .eml under
// <data-dir>/mail/, the cancelled one with one receipt and one notice, and nothing else is mailed —
// on both stores, with the default strategy.
func TestAsyncReceiptsExactlyOnce(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { asyncReceiptsExactlyOnce(t) })
	t.Run("postgres", func(t *testing.T) { asyncReceiptsExactlyOnce(t, "--db", pgtest.Start(t)) })
}

// asyncReceiptsExactlyOnce is TestAsyncReceiptsExactlyOnce on the store that args name.
func asyncReceiptsExactlyOnce(t *testing.T, args ...string) {
	dir := t.TempDir()
	s := startServer(t, dir, args...)
	s.client(adminKey).must(201, "PUT", "/v1/shows/mail", showBody(100000, 60))
	key := s.newClientKey(t)
	buy := func(cl *client, stop <-chan struct{}, n *atomic.Int64, prefix string) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					r, err := cl.do("POST", "/v1/purchases", map[string]any{"show_id": "mail", "tier_id": "ga", "quantity": 1,
						"buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}},
						"Idempotency-Key", fmt.Sprintf("%s-%d-%d", prefix, w, i))
					if err != nil {
						return // the server died under this request
					}
					if r.Status == 201 {
						n.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}

	var n atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { buy(s.client(key), stop, &n, "a"); close(done) }()
	eventually(t, "some sales before the crash", func() bool { return n.Load() >= 30 })
	s.kill()
	close(stop)
	<-done

	s2 := startServer(t, dir, args...)
	cl := s2.client(key)
	n.Store(0)
	stop2 := make(chan struct{})
	done2 := make(chan struct{})
	go func() { buy(cl, stop2, &n, "b"); close(done2) }()
	eventually(t, "some sales after the restart", func() bool { return n.Load() >= 20 })
	close(stop2)
	<-done2

	orders := listOrders(t, cl, "mail")
	var cancelled string
	for id, st := range orders {
		if st == "confirmed" {
			cancelled = id
			break
		}
	}
	cl.must(200, "POST", "/v1/orders/"+cancelled+"/cancel", nil, "Idempotency-Key", "cancel-1")
	orders[cancelled] = "cancelled"

	eventually(t, "a receipt for every confirmed order", func() bool {
		receipts, notices := mailbox(t, dir)
		return len(receipts) == len(orders) && notices[cancelled] == 1
	})
	checkMailbox(t, dir, orders, cancelled)
	if err := s2.stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, s2.logs)
	}
}

// checkMailbox checks <dir>/mail against the show's orders: exactly one receipt per order, none
// for an order that does not exist, and one cancellation notice, for cancelled.
func checkMailbox(t *testing.T, dir string, orders map[string]string, cancelled string) {
	t.Helper()
	receipts, notices := mailbox(t, dir)
	for id, st := range orders {
		if receipts[id] != 1 {
			t.Errorf("order %s (%s) has %d receipts, want 1", id, st, receipts[id])
		}
	}
	for id, c := range receipts {
		if _, ok := orders[id]; !ok {
			t.Errorf("%d receipts for an order %s that does not exist", c, id)
		}
	}
	if len(notices) != 1 || notices[cancelled] != 1 {
		t.Errorf("cancellation notices %v, want one for %s", notices, cancelled)
	}
}
