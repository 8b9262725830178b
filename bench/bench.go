// Package bench is the on-sale stampede: many virtual buyers over real keep-alive HTTP against a
// running boxoffice, or several sharing one store, a share of them retrying with the same key
// after a client-side timeout (with several servers, at the next one: one key must have one
// effect whichever server answers), with latency percentiles from an HDR histogram and outcomes
// by code. It also measures the baselines a result is read against (the transport limit of a
// no-op handler, a raw PostgreSQL row lock) and writes the comparison as Markdown and SVG.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Modes of a buyer.
const (
	ModePurchase    = "purchase"     // one-shot POST /v1/purchases
	ModeHoldConfirm = "hold-confirm" // POST holds, then POST confirm
	ModeNoop        = "noop"         // POST to a no-op handler: the transport limit
	// ModeSeats is best-available holds of SeatsPerHold seats on a seated tier of Capacity seats:
	// what choosing seats side by side costs.
	ModeSeats = "seats"
)

// SeatsPerHold is the party size of ModeSeats: two, the commonest order of a seated on-sale.
const SeatsPerHold = 2

// seatsPerRow is the row length of ModeSeats's seat map.
const seatsPerRow = 50

// Config is one bench run.
type Config struct {
	URL       string        // server base URL; with URLs, the first of them (or empty, taken from URLs)
	AdminKey  string        // to create the shows and a client key
	Buyers    int           // concurrent virtual buyers, each with its own keep-alive connection
	Requests  int           // logical purchases to attempt, at most
	Duration  time.Duration // and for at most this long
	Shows     int           // 1 = one hot show; more spreads buyers over shows
	Capacity  int           // tickets per show
	Mode      string
	RetryRate float64       // share of purchases whose first attempt times out on the client and is retried with the same key
	Timeout   time.Duration // the client-side timeout of those first attempts
	RunID     string        // makes keys and show ids unique per run
	Progress  io.Writer     // a line a second; nil for none

	// URLs lists every server of a cluster sharing one store, when there is more than one:
	// buyer b sends to URLs[b mod n], and a retry of the same Idempotency-Key goes to the next
	// server in the list, so one key is answered by different servers and must still have one
	// effect. Setup and the final read go to the first. Empty means URL alone.
	URLs []string
	// AllowRemote lets the URLs be other machines; without it a non-loopback target is refused.
	AllowRemote bool
}

// Result is what a run measured.
type Result struct {
	// Mode is the run's mode (ModePurchase, …): what one request of Requests was.
	Mode       string
	Name       string
	Requests   int64          // logical purchases finished
	Attempts   int64          // HTTP requests sent
	Retries    int64          // attempts beyond the first, same key
	Elapsed    time.Duration  // wall time of the load
	Throughput float64        // finished purchases per second
	P50, P99   time.Duration  // latency of one HTTP attempt
	P999       time.Duration  //
	Outcomes   map[string]int // "201", "409 sold_out", … by final answer
	Sold       int            // tickets sold as the server counts them after the run
	Errors     int64          // transport errors (connection refused, reset) on final attempts
	// SoldOutRate is the final answers a second after the last ticket sold: in a sold-out
	// stampede, the refusals' own rate, which the run's Throughput mixes with the purchases
	// before it. 0 when no answer came after a sale.
	SoldOutRate float64
	PeakRSS     int64        // the server's peak resident memory, bytes, when known
	Verify      string       // "ok", the violations, or "" when not run
	Servers     []ServerLoad // what each server was sent, in the order of Config.URLs
}

// ServerLoad is one server's share of a run, so a report over several servers shows the load
// was really spread.
type ServerLoad struct {
	URL      string
	Attempts int64 // HTTP requests of the load sent to it (setup and the final read not counted)
}

// Orders is the number of purchases that were confirmed.
func (r *Result) Orders() int { return r.Outcomes["201"] }

// Run drives cfg.URL with the configured load and returns what it measured. It stops at
// cfg.Requests purchases or cfg.Duration, whichever comes first, or when ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: cfg.Buyers, MaxConnsPerHost: cfg.Buyers, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	clientKey := cfg.AdminKey
	if cfg.Mode != ModeNoop {
		var err error
		if clientKey, err = setup(ctx, hc, cfg); err != nil {
			return nil, fmt.Errorf("set up the sale: %w", err)
		}
	}
	r := &runner{cfg: cfg, hc: hc, key: clientKey, outcomes: map[string]int{}, sent: make([]atomic.Int64, len(cfg.URLs))}
	r.hist = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	loadCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	stopProgress := r.progress(start)
	var wg sync.WaitGroup
	for b := range cfg.Buyers {
		wg.Go(func() { r.buyer(loadCtx, b%len(cfg.URLs)) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	res := &Result{
		Mode:     cfg.Mode,
		Requests: r.done.Load(), Attempts: r.attempts.Load(), Retries: r.retries.Load(), Elapsed: elapsed,
		Outcomes: r.outcomes, Errors: r.errors.Load(),
		P50:  time.Duration(r.hist.ValueAtQuantile(50)) * time.Microsecond,
		P99:  time.Duration(r.hist.ValueAtQuantile(99)) * time.Microsecond,
		P999: time.Duration(r.hist.ValueAtQuantile(99.9)) * time.Microsecond,
	}
	res.Throughput = float64(res.Requests) / elapsed.Seconds()
	if r.afterSale > 0 {
		since := start // no sale at all: every answer was after the last one
		if !r.lastSale.IsZero() {
			since = r.lastSale
		}
		if d := start.Add(elapsed).Sub(since); d > 0 {
			res.SoldOutRate = float64(r.afterSale) / d.Seconds()
		}
	}
	for s, u := range cfg.URLs {
		res.Servers = append(res.Servers, ServerLoad{URL: u, Attempts: r.sent[s].Load()})
	}
	if cfg.Mode != ModeNoop {
		// An interrupt (Ctrl-C) ends the load early, not the report: what ran is still read
		// back, under a bound of its own.
		readCtx, cancelRead := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancelRead()
		sold, err := soldTickets(readCtx, hc, cfg, clientKey)
		if err != nil {
			return res, fmt.Errorf("read what was sold: %w", err)
		}
		res.Sold = sold
	}
	return res, nil
}

func (c *Config) defaults() error {
	if c.Buyers <= 0 {
		c.Buyers = 64
	}
	if c.Requests <= 0 {
		c.Requests = 20000
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Shows <= 0 {
		c.Shows = 1
	}
	if c.Capacity <= 0 {
		c.Capacity = c.Requests
	}
	if c.Mode == "" {
		c.Mode = ModePurchase
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Millisecond
	}
	if c.RunID == "" {
		c.RunID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	switch c.Mode {
	case ModePurchase, ModeHoldConfirm, ModeNoop:
	case ModeSeats:
		if c.Capacity < seatsPerRow || c.Capacity%seatsPerRow != 0 || c.Capacity > 50_000 {
			return fmt.Errorf("mode %s: --capacity %d: want a multiple of %d seats (the row length), at most 50000", ModeSeats, c.Capacity, seatsPerRow)
		}
	default:
		return fmt.Errorf("mode %q: want %s, %s, %s or %s", c.Mode, ModePurchase, ModeHoldConfirm, ModeSeats, ModeNoop)
	}
	if c.RetryRate < 0 || c.RetryRate > 1 {
		return fmt.Errorf("retry rate %v: want 0 to 1", c.RetryRate)
	}
	switch {
	case len(c.URLs) == 0:
		c.URLs = []string{c.URL}
	case c.URL == "":
		c.URL = c.URLs[0]
	case c.URL != c.URLs[0]:
		// Setup goes to URL and the load starts at URLs[0]; two different "first" servers
		// would be a mistake in the caller, not a choice.
		return fmt.Errorf("URL %s is not the first of URLs %v", c.URL, c.URLs)
	}
	return CheckURLs(c.URLs, c.AllowRemote)
}

// ParseURLs reads a comma-separated list of servers (spaces around an entry are ignored) and
// checks it with CheckURLs. An empty entry is refused rather than skipped: "a,,b" or a trailing
// comma is a typo, and silently loading fewer servers than listed would misreport the run.
func ParseURLs(list string, allowRemote bool) ([]string, error) {
	parts := strings.Split(list, ",")
	urls := make([]string, 0, len(parts))
	for n, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("server list %q: entry %d of %d is empty; separate servers by single commas", list, n+1, len(parts))
		}
		urls = append(urls, p)
	}
	if err := CheckURLs(urls, allowRemote); err != nil {
		return nil, err
	}
	return urls, nil
}

// CheckURLs checks every server of a run with CheckLoopback, and refuses a server listed twice:
// a retry meant for the next server would then reach the same one, and the run would claim a
// cross-server retry it never made.
func CheckURLs(urls []string, allowRemote bool) error {
	seen := map[string]bool{}
	for _, u := range urls {
		if err := CheckLoopback(u, allowRemote); err != nil {
			return err
		}
		norm := strings.TrimRight(u, "/")
		if seen[norm] {
			return fmt.Errorf("server %s is listed twice", u)
		}
		seen[norm] = true
	}
	return nil
}

// CheckLoopback refuses a target that is not a loopback address unless allowRemote: a load
// generator pointed at someone else's server by mistake is an attack.
func CheckLoopback(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("target %q is not an http(s) URL", raw)
	}
	if allowRemote {
		return nil
	}
	if host := u.Hostname(); !LoopbackHost(host) {
		return fmt.Errorf("target %s is not a loopback address; pass --allow-remote to load another machine", host)
	}
	return nil
}

// LoopbackHost reports whether host is "localhost" or a loopback IP address.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type runner struct {
	cfg  Config
	hc   *http.Client
	key  string
	next atomic.Int64

	done, attempts, retries, errors atomic.Int64
	sent                            []atomic.Int64 // attempts by server, indexed as cfg.URLs

	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	outcomes map[string]int
	// lastSale is when the last purchase answered 201, afterSale how many final answers came
	// after it (Result.SoldOutRate).
	lastSale  time.Time
	afterSale int64
}

// buyer takes purchase numbers until the run is over, starting each at its home server.
func (r *runner) buyer(ctx context.Context, home int) {
	var lat []int64 // batched into the shared histogram to keep the lock off the hot path
	flush := func() {
		r.mu.Lock()
		for _, v := range lat {
			_ = r.hist.RecordValue(v)
		}
		r.mu.Unlock()
		lat = lat[:0]
	}
	defer flush()
	for ctx.Err() == nil {
		i := r.next.Add(1)
		if i > int64(r.cfg.Requests) {
			return
		}
		outcome := r.purchase(ctx, i, home, &lat)
		if outcome == "" {
			return // the run ended under this purchase; it is not counted
		}
		r.done.Add(1)
		r.mu.Lock()
		r.outcomes[outcome]++
		if outcome == "201" {
			r.lastSale, r.afterSale = time.Now(), 0
		} else {
			r.afterSale++
		}
		r.mu.Unlock()
		if len(lat) >= 32 { // often enough for the progress line to show a live p99
			flush()
		}
	}
}

// retried reports whether purchase i is one whose first attempt times out on the client.
func (r *runner) retried(i int64) bool {
	if r.cfg.RetryRate <= 0 {
		return false
	}
	every := int64(1 / r.cfg.RetryRate)
	return every >= 1 && i%every == 0
}

// nextServer is the server a retry goes to after server s: the next in the list, so a key that
// timed out on one server is answered by another.
func (r *runner) nextServer(s int) int { return (s + 1) % len(r.cfg.URLs) }

// purchase runs one logical purchase, from server home, to its final answer and returns the
// outcome.
func (r *runner) purchase(ctx context.Context, i int64, home int, lat *[]int64) string {
	show := fmt.Sprintf("bench-%s-%d", r.cfg.RunID, i%int64(r.cfg.Shows))
	key := fmt.Sprintf("%s-%d", r.cfg.RunID, i)
	switch r.cfg.Mode {
	case ModeNoop:
		st, _, _ := r.send(ctx, home, "POST", "/v1/purchases", key, []byte(`{}`), 0, lat)
		return outcomeOf(st, nil)
	case ModeHoldConfirm:
		body := fmt.Appendf(nil, `{"tier_id":"ga","quantity":1,"buyer":{"email":"b%d@example.com"}}`, i)
		st, b, err := r.final(ctx, "POST", "/v1/shows/"+show+"/holds", key+"-h", body, i, home, lat)
		if err != nil || st != 201 {
			return outcomeOf(st, b)
		}
		var h struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(b, &h) != nil {
			return "bad hold body"
		}
		st, b, _ = r.final(ctx, "POST", "/v1/holds/"+h.ID+"/confirm", key+"-c", []byte(`{"payment":{"token":"tok_ok"}}`), i, home, lat)
		return outcomeOf(st, b)
	case ModeSeats:
		body := fmt.Appendf(nil, `{"tier_id":"ga","quantity":%d,"buyer":{"email":"b%d@example.com"}}`, SeatsPerHold, i)
		st, b, _ := r.final(ctx, "POST", "/v1/shows/"+show+"/holds", key, body, i, home, lat)
		return outcomeOf(st, b)
	default:
		body := fmt.Appendf(nil, `{"show_id":%q,"tier_id":"ga","quantity":1,"buyer":{"email":"b%d@example.com"},"payment":{"token":"tok_ok"}}`, show, i)
		st, b, _ := r.final(ctx, "POST", "/v1/purchases", key, body, i, home, lat)
		return outcomeOf(st, b)
	}
}

// final sends a POST until it has a final answer: the first attempt of a retried purchase is cut
// off by the client timeout, and "in progress" answers are retried, with the same key, bounded.
// It starts at server home; the retry after the client timeout goes to the next server, and with
// several servers so does one after a transport error (the server is down: a client behind a
// load balancer would be sent to another). Answers that say "later" (in progress, 503, 429) are
// asked again of the server that gave them.
func (r *runner) final(ctx context.Context, method, path, key string, body []byte, i int64, home int, lat *[]int64) (int, []byte, error) {
	timeout := time.Duration(0)
	if r.retried(i) {
		timeout = r.cfg.Timeout
	}
	target, failed := home, 0 // failed: transport errors in a row
	var lastErr error
	for attempt := 0; attempt < 100; attempt++ {
		if attempt > 0 {
			r.retries.Add(1)
		}
		st, b, err := r.send(ctx, target, method, path, key, body, timeout, lat)
		timeout = 0
		lastErr = err
		switch {
		case ctx.Err() != nil:
			return 0, nil, ctx.Err()
		case err != nil && attempt == 0 && r.retried(i):
			target = r.nextServer(target)
			continue // the client gave up; it retries with the same key, as a real one would
		case err != nil && len(r.cfg.URLs) > 1:
			target = r.nextServer(target)
			if failed++; failed%len(r.cfg.URLs) == 0 {
				time.Sleep(10 * time.Millisecond) // every server refused in turn: do not spin
			}
			continue
		case err != nil:
			r.errors.Add(1)
			return 0, nil, err
		}
		failed = 0
		switch {
		case st == 409 && codeOf(b) == "idempotency_request_in_progress":
			time.Sleep(5 * time.Millisecond)
			continue
		case st == 503 || st == 429:
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return st, b, nil
	}
	if lastErr != nil {
		// Only reachable with several servers, every one of them failing to answer.
		r.errors.Add(1)
		return 0, nil, fmt.Errorf("no final answer after 100 attempts: %w", lastErr)
	}
	return 0, nil, errors.New("no final answer after 100 attempts")
}

// send makes one HTTP attempt to server s and records its latency.
func (r *runner) send(ctx context.Context, s int, method, path, key string, body []byte, timeout time.Duration, lat *[]int64) (int, []byte, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, r.cfg.URLs[s]+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	r.attempts.Add(1)
	r.sent[s].Add(1)
	t0 := time.Now()
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, err
	}
	*lat = append(*lat, max(time.Since(t0).Microseconds(), 1))
	return resp.StatusCode, b, nil
}

func codeOf(body []byte) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	return p.Code
}

func outcomeOf(status int, body []byte) string {
	switch {
	case status == 0:
		return "transport error"
	case status < 300:
		return strconv.Itoa(status)
	default:
		if code := codeOf(body); code != "" {
			return strconv.Itoa(status) + " " + code
		}
		// Not a problem of the API (net/http's own plain-text answers, a proxy's page): its
		// first words, so that the outcome still says what went wrong.
		first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if len(first) > 60 {
			first = first[:60]
		}
		return strconv.Itoa(status) + " " + strconv.Quote(first)
	}
}

// progress prints a line a second until the returned stop is called.
func (r *runner) progress(start time.Time) func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := int64(0)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				n := r.done.Load()
				r.mu.Lock()
				p99 := time.Duration(r.hist.ValueAtQuantile(99)) * time.Microsecond
				r.mu.Unlock()
				fmt.Fprintf(r.cfg.Progress, "  %5.1fs  %8d purchases  %7d/s  p99(so far) %v  retries %d\n",
					time.Since(start).Seconds(), n, n-last, p99.Round(10*time.Microsecond), r.retries.Load())
				last = n
			}
		}
	}()
	return func() { close(stop); <-done }
}

// setup creates the shows and a client key through the admin API.
func setup(ctx context.Context, hc *http.Client, cfg Config) (string, error) {
	do := func(method, path, key string, body any, want int) ([]byte, error) {
		b, _ := json.Marshal(body)
		req, err := http.NewRequestWithContext(ctx, method, cfg.URL+path, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+cfg.AdminKey)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
		}
		return out, nil
	}
	for s := range cfg.Shows {
		tier := map[string]any{"id": "ga", "name": "GA", "capacity": cfg.Capacity, "price": map[string]any{"amount": 1000, "currency": "EUR"}}
		if cfg.Mode == ModeSeats {
			tier["seat_map"] = benchSeatMap(cfg.Capacity)
		}
		show := map[string]any{"name": "Bench show", "starts_at": "2030-01-01T20:00:00Z", "hold_ttl_seconds": 600,
			"tiers": []map[string]any{tier}}
		if _, err := do("PUT", fmt.Sprintf("/v1/shows/bench-%s-%d", cfg.RunID, s), "", show, 201); err != nil {
			return "", err
		}
	}
	b, err := do("POST", "/v1/api-keys", "bench-key-"+cfg.RunID, map[string]string{"role": "client"}, 201)
	if err != nil {
		return "", err
	}
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return "", err
	}
	return k.Key, nil
}

// benchSeatMap is a seat map of capacity seats in rows of seatsPerRow, 100 rows to a section.
func benchSeatMap(capacity int) map[string]any {
	var sections []map[string]any
	for r := 0; r < capacity/seatsPerRow; r++ {
		if r%100 == 0 {
			sections = append(sections, map[string]any{"id": fmt.Sprintf("S%d", len(sections)+1), "rows": []map[string]any{}})
		}
		sec := sections[len(sections)-1]
		sec["rows"] = append(sec["rows"].([]map[string]any), map[string]any{"id": strconv.Itoa(r%100 + 1), "seats": seatsPerRow})
	}
	return map[string]any{"sections": sections}
}

// soldTickets sums what the server says it sold over the run's shows; in ModeSeats, which only
// holds, what it holds.
func soldTickets(ctx context.Context, hc *http.Client, cfg Config, key string) (int, error) {
	total := 0
	for s := range cfg.Shows {
		req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/shows/bench-%s-%d", cfg.URL, cfg.RunID, s), nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		var show struct {
			Tiers []struct {
				Sold int `json:"sold"`
				Held int `json:"held"`
			} `json:"tiers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&show)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		for _, t := range show.Tiers {
			total += t.Sold
			if cfg.Mode == ModeSeats {
				total += t.Held
			}
		}
	}
	return total, nil
}

// SortedOutcomes lists outcomes most frequent first, for a stable report.
func (r *Result) SortedOutcomes() []string {
	keys := make([]string, 0, len(r.Outcomes))
	for k := range r.Outcomes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if r.Outcomes[keys[i]] != r.Outcomes[keys[j]] {
			return r.Outcomes[keys[i]] > r.Outcomes[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
