package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCluster is n loopback servers speaking just enough of the API for a purchase run, recording
// which server got which request. A purchase whose key is in lose has its first attempt's answer
// cut off mid-body, wherever it lands: the client sees its request fail after the server acted,
// which is the case a same-key retry exists for, without depending on how long anything takes.
type fakeCluster struct {
	t    *testing.T
	srvs []*httptest.Server
	lose func(key string) bool

	// ready, when set, is closed once every server has had a load request; until then each holds
	// its answer, so the run only proceeds if buyers really are spread over all the servers.
	ready     chan struct{}
	readyOnce sync.Once

	mu    sync.Mutex
	keys  map[string][]int // Idempotency-Key → the servers that got it, in order of arrival
	setup map[int][]string // server → "METHOD path" of requests that are not purchases
	sold  int
	hit   map[int]bool
}

func newFakeCluster(t *testing.T, n int, lose func(string) bool) *fakeCluster {
	c := &fakeCluster{t: t, lose: lose, keys: map[string][]int{}, setup: map[int][]string{}, hit: map[int]bool{}}
	for s := range n {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serve(s, w, r) }))
		t.Cleanup(srv.Close)
		c.srvs = append(c.srvs, srv)
	}
	return c
}

func (c *fakeCluster) urls() []string {
	var u []string
	for _, s := range c.srvs {
		u = append(u, s.URL)
	}
	return u
}

func (c *fakeCluster) serve(s int, w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.URL.Path != "/v1/purchases" {
		c.mu.Lock()
		c.setup[s] = append(c.setup[s], r.Method+" "+r.URL.Path)
		sold := c.sold
		c.mu.Unlock()
		switch {
		case r.Method == "PUT":
			w.WriteHeader(201)
		case r.Method == "POST" && r.URL.Path == "/v1/api-keys":
			w.WriteHeader(201)
			fmt.Fprint(w, `{"key":"client-key"}`)
		default: // GET /v1/shows/{id}: what was sold
			fmt.Fprintf(w, `{"tiers":[{"sold":%d}]}`, sold)
		}
		return
	}
	key := r.Header.Get("Idempotency-Key")
	c.mu.Lock()
	c.keys[key] = append(c.keys[key], s)
	first := len(c.keys[key]) == 1
	c.hit[s] = true
	all := len(c.hit) == len(c.srvs)
	c.mu.Unlock()
	if c.ready != nil {
		if all {
			c.readyOnce.Do(func() { close(c.ready) })
		}
		select {
		case <-c.ready:
		case <-time.After(10 * time.Second): // a bound, not a measurement: a broken spread fails below
			w.WriteHeader(500)
			return
		}
	}
	if first && c.lose(key) {
		c.mu.Lock()
		c.sold++ // the effect happened; only the answer is lost
		c.mu.Unlock()
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			c.t.Error(err)
			return
		}
		// Headers and a short body: the client has a response, so its transport cannot quietly
		// resend it to the same server; reading the body then fails.
		_, _ = buf.WriteString("HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"id\"")
		_ = buf.Flush()
		_ = conn.Close()
		return
	}
	c.mu.Lock()
	if first {
		c.sold++
	}
	c.mu.Unlock()
	w.WriteHeader(201)
	fmt.Fprint(w, `{"id":"ord_1","status":"confirmed"}`)
}

// purchaseNumber is i of a run's key "<run>-<i>".
func purchaseNumber(t *testing.T, key string) int64 {
	i, err := strconv.ParseInt(key[strings.LastIndex(key, "-")+1:], 10, 64)
	if err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
	return i
}

// TestBenchSpreadsBuyersAndRetriesOnTheNextServer: with three servers every buyer has its own
// server, each purchase is answered once, and a purchase whose first answer was lost is retried
// with the same key on the next server in the list, never the same one. Setup and the read of
// what was sold go to the first server only.
func TestBenchSpreadsBuyersAndRetriesOnTheNextServer(t *testing.T) {
	const requests = 120 // every 4th retried: 30
	c := newFakeCluster(t, 3, func(key string) bool { return purchaseNumber(t, key)%4 == 0 })
	c.ready = make(chan struct{})
	res, err := Run(context.Background(), Config{URLs: c.urls(), AdminKey: "admin", Buyers: 3, Requests: requests,
		Duration: time.Minute, RetryRate: 0.25, Timeout: time.Minute, RunID: "spread"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != requests || res.Outcomes["201"] != requests || res.Retries != requests/4 || res.Errors != 0 {
		t.Fatalf("requests %d retries %d errors %d outcomes %v", res.Requests, res.Retries, res.Errors, res.Outcomes)
	}
	if res.Sold != requests {
		t.Fatalf("sold %d, want %d read back from the first server", res.Sold, requests)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	got := make([]int64, 3)
	for key, servers := range c.keys {
		for _, s := range servers {
			got[s]++
		}
		switch i := purchaseNumber(t, key); {
		case i%4 != 0 && len(servers) != 1:
			t.Errorf("key %s (not retried) went to servers %v", key, servers)
		case i%4 == 0 && (len(servers) != 2 || servers[1] != (servers[0]+1)%3):
			t.Errorf("key %s (retried) went to servers %v; want two, the second next after the first", key, servers)
		}
	}
	if len(c.keys) != requests {
		t.Errorf("%d keys reached the servers, want %d", len(c.keys), requests)
	}
	for s, load := range res.Servers {
		if load.URL != c.srvs[s].URL || load.Attempts != got[s] || load.Attempts == 0 {
			t.Errorf("server %d: reported %+v, it got %d", s, load, got[s])
		}
	}
	if len(c.setup[1]) != 0 || len(c.setup[2]) != 0 || len(c.setup[0]) != 3 {
		t.Errorf("setup and reads by server: %v; want PUT show, POST key, GET show, all on the first", c.setup)
	}
}

// TestBenchBuyerKeepsItsServer: a buyer's purchases all start at its own server (buyer b uses
// URL b mod n), so with one buyer the first server gets every first attempt and the second exactly
// the retries; the third gets nothing.
func TestBenchBuyerKeepsItsServer(t *testing.T) {
	c := newFakeCluster(t, 3, func(key string) bool { return purchaseNumber(t, key)%5 == 0 })
	res, err := Run(context.Background(), Config{URLs: c.urls(), AdminKey: "admin", Buyers: 1, Requests: 50,
		Duration: time.Minute, RetryRate: 0.2, Timeout: time.Minute, RunID: "home"})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{50, 10, 0}
	for s, load := range res.Servers {
		if load.Attempts != want[s] {
			t.Errorf("server %d got %d requests, want %d (all: %+v)", s, load.Attempts, want[s], res.Servers)
		}
	}
	if res.Outcomes["201"] != 50 {
		t.Fatalf("outcomes %v", res.Outcomes)
	}
}

// TestBenchSkipsAServerThatIsDown: with several servers, one that refuses connections is a
// server down, and its buyers' purchases go on with the same key at the next one instead of
// ending as transport errors; every purchase is answered.
func TestBenchSkipsAServerThatIsDown(t *testing.T) {
	c := newFakeCluster(t, 2, func(string) bool { return false })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	urls := []string{c.srvs[0].URL, down, c.srvs[1].URL}
	res, err := Run(context.Background(), Config{URLs: urls, AdminKey: "admin", Buyers: 3, Requests: 60,
		Duration: time.Minute, RunID: "down"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcomes["201"] != 60 || res.Errors != 0 {
		t.Fatalf("outcomes %v, %d errors", res.Outcomes, res.Errors)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, servers := range c.keys {
		if len(servers) != 1 {
			t.Errorf("key %s answered by %v", key, servers)
		}
	}
	if len(c.keys) != 60 {
		t.Errorf("%d keys reached the live servers, want 60", len(c.keys))
	}
}

// TestBenchRefusesBadServerLists: an empty entry, a server listed twice or a non-loopback one is
// refused with an error that says which, before any request is sent.
func TestBenchRefusesBadServerLists(t *testing.T) {
	for _, tc := range []struct {
		list   string
		remote bool
		want   string // "" = accepted
	}{
		{"http://127.0.0.1:1", false, ""},
		{"http://127.0.0.1:1, http://localhost:2 ,http://[::1]:3", false, ""},
		{"http://127.0.0.1:1,,http://127.0.0.1:2", false, "entry 2 of 3 is empty"},
		{"http://127.0.0.1:1,", false, "entry 2 of 2 is empty"},
		{",http://127.0.0.1:1", false, "entry 1 of 2 is empty"},
		{"", false, "entry 1 of 1 is empty"},
		{"http://127.0.0.1:1, ,http://127.0.0.1:2", false, "entry 2 of 3 is empty"},
		{"http://127.0.0.1:1,http://10.0.0.5:2", false, "10.0.0.5 is not a loopback address"},
		{"http://127.0.0.1:1,http://10.0.0.5:2", true, ""},
		{"http://127.0.0.1:1,127.0.0.1:2", false, "not an http(s) URL"},
		{"http://127.0.0.1:1,http://127.0.0.1:1/", false, "listed twice"},
	} {
		urls, err := ParseURLs(tc.list, tc.remote)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ParseURLs(%q) = %v", tc.list, err)
		case tc.want == "" && len(urls) != strings.Count(tc.list, ",")+1:
			t.Errorf("ParseURLs(%q) = %q", tc.list, urls)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParseURLs(%q) = %q, %v; want an error saying %q", tc.list, urls, err, tc.want)
		}
	}
	if urls, _ := ParseURLs(" http://127.0.0.1:1 ,http://localhost:2", false); urls[0] != "http://127.0.0.1:1" {
		t.Errorf("spaces kept: %q", urls)
	}
	// Run checks the list itself: a library caller gets the same refusal, and a remote server
	// in the list is never sent a request. (10.255.255.1 is only ever parsed, not dialled.)
	for _, cfg := range []Config{
		{URLs: []string{"http://127.0.0.1:1", "http://10.255.255.1:80"}, Mode: ModeNoop},
		{URLs: []string{"http://127.0.0.1:1", ""}, Mode: ModeNoop},
		{URL: "http://127.0.0.1:2", URLs: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, Mode: ModeNoop},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run accepted %+v", cfg)
		}
	}
	// --allow-remote reaches Run: a remote list is accepted by the checks (defaults only; nothing
	// is sent).
	ok := Config{URLs: []string{"http://127.0.0.1:1", "http://10.255.255.1:80"}, AllowRemote: true}
	if err := ok.defaults(); err != nil || ok.URL != "http://127.0.0.1:1" {
		t.Errorf("allowed remote list: %v, URL %q", err, ok.URL)
	}
}
