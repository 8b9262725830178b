package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"boxoffice/nats/natstest"
	"boxoffice/postgres/pgtest"
)

// serversLeaseTTL is the servers' --lease-ttl in TestSeveralServers: short, so that the kill and
// the stop are taken over within a second or two.
const serversLeaseTTL = time.Second

// TestSeveralServers runs what an operator deploys: three `boxoffice serve` on one PostgreSQL, a
// 3-node NATS cluster, one `boxoffice payments-sim` and one shared mail folder. Buyers spread
// over the three, each key's retries go to another server and a fifth of the keys are sent to
// two servers at once. Mid-sale the show's owner is SIGKILLed and restarted, then the next owner
// is SIGSTOPped past its lease while the others sell, and SIGCONTed. Afterwards every key has
// exactly one order whichever server answered, every acknowledged order is confirmed, the tier
// counts match the orders, each order has one receipt across all servers and one charge at the
// provider, PostgreSQL logged no deadlock, and verify passes.
func TestSeveralServers(t *testing.T) {
	pg := pgtest.Start(t)
	bus := natstest.Start(t, 3)
	simLedger := filepath.Join(t.TempDir(), "ledger.jsonl")
	sim := startPaymentsSim(t, "--ledger", simLedger)
	mailRoot := t.TempDir()
	common := []string{"--db", pg, "--nats", strings.Join(bus.URLs(), ","), "--payments", sim.URL,
		"--mail-dir", filepath.Join(mailRoot, "mail"), "--lease-ttl", serversLeaseTTL.String()}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	servers := make([]*server, 3)
	for i := range servers {
		servers[i] = startServer(t, dirs[i], common...)
	}
	// A fourth server with the embedded defaults would keep events, charges and receipts of its
	// own: it refuses to start, naming the flags to set.
	code, out := serveRefusal(t, []string{"--db", pg, "--admin-key", adminKey}, "")
	if code == 0 || !strings.Contains(out, "--nats") {
		t.Fatalf("a server with embedded NATS beside live peers: exit %d\n%s", code, out)
	}

	admin := servers[0].client(adminKey)
	admin.must(201, "PUT", "/v1/shows/big", showBody(100000, 60))
	key := servers[0].newClientKey(t)
	status := admin.must(200, "GET", "/v1/cluster", nil).json(t)
	if live := liveServers(status); live != 3 {
		t.Fatalf("GET /v1/cluster: %d live servers, want 3: %v", live, status)
	}

	// urls is read by the buyers: a killed server's slot is swapped for its restart.
	var urlMu sync.Mutex
	urls := []string{servers[0].URL, servers[1].URL, servers[2].URL}
	urlOf := func(i int) string { urlMu.Lock(); defer urlMu.Unlock(); return urls[i%3] }
	hc := &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	purchase := func(base, k string) (int, string) {
		c := &client{t: t, base: base, key: key, hc: hc}
		r, err := c.do("POST", "/v1/purchases", map[string]any{"show_id": "big", "tier_id": "ga", "quantity": 1,
			"buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}}, "Idempotency-Key", k)
		if err != nil {
			return 0, "" // a killed or stopped server: the caller tries another
		}
		if r.Status == 201 {
			return 201, r.json(t)["id"].(string)
		}
		return r.Status, string(r.Body)
	}

	// Any server answers any request: the first takes the show, the other two forward to it.
	// And one key sent to all three has one order.
	for i := range servers {
		if st, body := purchase(servers[i].URL, fmt.Sprintf("first-%d", i)); st != 201 {
			t.Fatalf("purchase at server %d: %d %s", i, st, body)
		}
	}
	var same [3]string
	var sameWG sync.WaitGroup
	for i := range servers {
		sameWG.Go(func() {
			for range 40 { // a 409 while another server's request with the key is in flight
				var st int
				if st, same[i] = purchase(servers[i].URL, "same"); st != 409 {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	sameWG.Wait()
	if same[0] == "" || same[0] != same[1] || same[1] != same[2] {
		t.Fatalf("one key at three servers: %q", same)
	}

	// Exactly one server does the background work, and the owner's metrics count its lease.
	eventually(t, "one background lease holder, and the owner's lease in its metrics", func() bool {
		leaders, owned := 0.0, 0.0
		for _, s := range servers {
			leaders += metric(t, s.URL, "boxoffice_cluster_background")
			owned += metric(t, s.URL, "boxoffice_cluster_leases_held")
		}
		return leaders == 1 && owned == 2 // show:big and background
	})

	var mu sync.Mutex
	acked := map[string]string{"same": same[0]} // key → the order id of its first 201
	sent := []string{"first-0", "first-1", "first-2", "same"}
	ack := func(k, id string) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := acked[k]; ok && prev != id {
			t.Errorf("key %s answered order %s and order %s", k, prev, id)
		}
		acked[k] = id
	}
	stop := make(chan struct{})
	var sold atomic.Int64
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Go(func() {
			for i := range 2000 {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%d", w, i)
				mu.Lock()
				sent = append(sent, k)
				mu.Unlock()
				if i%5 == 0 { // the same key at two servers at once
					wg.Go(func() {
						if st, id := purchase(urlOf(w+i+1), k); st == 201 {
							ack(k, id)
						}
					})
				}
				// Retries (a dead server, a 503 while a show moves) go to the next server; bounded.
				for attempt := range 60 {
					st, body := purchase(urlOf(w+i+attempt), k)
					if st == 201 {
						ack(k, body)
						sold.Add(1)
						break
					}
					if st != 0 && st != 503 && st != 409 {
						t.Errorf("purchase %s: %d %s", k, st, body)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}

	owner := func() int {
		t.Helper()
		var idx int
		eventually(t, "an owner of show big", func() bool {
			st := admin.must(200, "GET", "/v1/cluster", nil).json(t)
			idx = ownerIndex(st, servers)
			return idx >= 0
		})
		return idx
	}
	eventually(t, "sales before the kill", func() bool { return sold.Load() >= 60 })
	victim := owner()
	servers[victim].kill()
	killedAt, before := time.Now(), sold.Load()
	eventually(t, "sales after the kill", func() bool { return sold.Load() >= before+30 })
	t.Logf("the show sold again %v after its owner was SIGKILLed", time.Since(killedAt).Round(10*time.Millisecond))
	servers[victim] = startServer(t, dirs[victim], common...)
	urlMu.Lock()
	urls[victim] = servers[victim].URL
	urlMu.Unlock()
	if victim == 0 {
		admin = servers[0].client(adminKey)
	}

	stopped := owner()
	if err := servers[stopped].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	before = sold.Load()
	otherAdmin := servers[(stopped+1)%3].client(adminKey)
	eventually(t, "sales while the owner is stopped", func() bool { return sold.Load() >= before+30 })
	eventually(t, "another server to own the show", func() bool {
		idx := ownerIndex(otherAdmin.must(200, "GET", "/v1/cluster", nil).json(t), servers)
		return idx >= 0 && idx != stopped
	})
	if err := servers[stopped].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	before = sold.Load()
	eventually(t, "sales after the stopped server is back", func() bool { return sold.Load() >= before+30 })
	close(stop)
	wg.Wait()

	// Every key sent, answered or not, now has exactly one order: a retry anywhere replays it.
	orders := map[string]string{}
	for i, k := range sent {
		var st int
		var id string
		for attempt := range 100 {
			if st, id = purchase(urlOf(i+attempt), k); st == 201 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st != 201 {
			t.Fatalf("key %s: %d %s after the sale", k, st, id)
		}
		if prev, ok := acked[k]; ok && prev != id {
			t.Fatalf("key %s answered %s during the sale and %s after", k, prev, id)
		}
		orders[id] = k
	}
	cl := servers[0].client(key)
	statuses := listOrders(t, cl, "big")
	for id, st := range statuses {
		if st != "confirmed" {
			t.Errorf("order %s is %s", id, st)
		}
		if _, ok := orders[id]; !ok {
			t.Errorf("order %s belongs to no key", id)
		}
	}
	if len(statuses) != len(orders) {
		t.Fatalf("%d orders for %d keys", len(statuses), len(orders))
	}
	tier := cl.must(200, "GET", "/v1/shows/big", nil).json(t)["tiers"].([]any)[0].(map[string]any)
	if int(tier["sold"].(float64)) != len(orders) || tier["held"] != 0.0 {
		t.Fatalf("tier %v for %d orders", tier, len(orders))
	}
	// One receipt per order across all servers, in the one shared folder.
	eventually(t, "a receipt for every order", func() bool {
		receipts, _ := mailbox(t, mailRoot)
		return len(receipts) >= len(orders)
	})
	receipts, notices := mailbox(t, mailRoot)
	for id := range statuses {
		if receipts[id] != 1 {
			t.Errorf("order %s has %d receipts", id, receipts[id])
		}
	}
	if len(receipts) != len(statuses) || len(notices) != 0 {
		t.Errorf("%d receipts and %d notices for %d orders", len(receipts), len(notices), len(statuses))
	}
	// One charge per order at the provider.
	charges := map[string]int{}
	for _, c := range simCharges(t, sim.URL) {
		charges[strings.TrimSuffix(c.IdempotencyKey, "/charge")]++
	}
	for id := range statuses {
		if charges[id] != 1 {
			t.Errorf("order %s has %d charges", id, charges[id])
		}
	}
	if len(charges) != len(statuses) {
		t.Errorf("%d charged orders for %d orders", len(charges), len(statuses))
	}
	if n := deadlocks(t, pg); n != 0 {
		t.Errorf("PostgreSQL logged %d deadlocks", n)
	}
	t.Logf("%d keys, %d orders, %d receipts", len(sent), len(statuses), len(charges))
	for _, s := range servers {
		if err := s.stop(); err != nil {
			t.Errorf("clean stop: %v\n%s", err, s.logs)
		}
	}
	// verify holds the orders against the external simulator's charges, asked over HTTP or read
	// from its ledger file.
	want := fmt.Sprintf("against %d charges at the provider", len(statuses))
	if code, out := runCLI(t, "verify", "--db", pg, "--payments", sim.URL); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("verify --payments: %d\n%s", code, out)
	}
	want = fmt.Sprintf("against %d ledger entries", len(statuses))
	if code, out := runCLI(t, "verify", "--db", pg, "--ledger", simLedger); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("verify --ledger: %d\n%s", code, out)
	}
}

// liveServers counts the live servers of a GET /v1/cluster answer.
func liveServers(status map[string]any) int {
	n := 0
	for _, s := range status["servers"].([]any) {
		if s.(map[string]any)["live"] == true {
			n++
		}
	}
	return n
}

// ownerIndex is the index in servers of the live owner of show big in a GET /v1/cluster
// answer, or -1.
func ownerIndex(status map[string]any, servers []*server) int {
	var owner string
	for _, l := range status["leases"].([]any) {
		l := l.(map[string]any)
		if l["name"] == "show:big" && l["live"] == true {
			owner = l["server_id"].(string)
		}
	}
	for _, s := range status["servers"].([]any) {
		s := s.(map[string]any)
		if s["id"] != owner {
			continue
		}
		for i, srv := range servers {
			if strings.TrimPrefix(srv.URL, "http://") == s["addr"] {
				return i
			}
		}
	}
	return -1
}

// metric reads one unlabelled gauge from a server's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	r, err := (&client{t: t, base: base, hc: &http.Client{Timeout: 10 * time.Second}}).do("GET", "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("%s has no %s", base, name)
	return 0
}

// deadlocks is PostgreSQL's count of deadlocks detected in the database at url.
func deadlocks(t *testing.T, url string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
