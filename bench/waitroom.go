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
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ModeWaitingRoom is the waiting-room run (RunWaitRoom): a crowd joins a show's queue around its
// on-sale and the server admits it at a set rate.
const ModeWaitingRoom = "waiting-room"

// WaitRoomConfig is one waiting-room run.
type WaitRoomConfig struct {
	URL      string
	AdminKey string
	// Arrivals is the crowd; PreShare of it joins before the on-sale, the rest after.
	Arrivals int
	PreShare float64
	// Buyers is how many arrivals join at once, each on its own keep-alive connection.
	Buyers int
	// Rate is the room's admit_per_second.
	Rate int
	// Wait bounds how long the run waits for the queue to drain after the last join.
	Wait        time.Duration
	RunID       string
	Progress    io.Writer
	AllowRemote bool
	// Noop, when set, is the URL of a no-op handler the same joins are sent to first: the
	// transport limit that joins/s is read against.
	Noop string
	// Purchases is how many admitted buyers buy a ticket (Purchasers at a time), from the
	// on-sale on: the purchase path's latency while the queue takes the crowd, and after.
	Purchases, Purchasers int
	// JoinRate, when above 0, paces the arrivals: each phase's k-th join is sent no earlier than
	// k/JoinRate seconds after the phase began (an open loop, as a crowd arrives whatever the
	// server does), instead of as fast as the Buyers' answers come back. Joins/s is then the
	// rate, not what the server can take; the purchases' latency reads against a crowd that the
	// machine absorbs rather than one that takes all of its CPU.
	JoinRate int
}

// WaitRoomResult is what a waiting-room run measured.
type WaitRoomResult struct {
	Name     string
	Arrivals int
	Pre      int           // joined before the on-sale
	Joins    int64         // joins answered 201
	JoinTime time.Duration // wall time of the joins (both phases)
	// PreJoinTime is the first phase's share of JoinTime: those joins run alone, the later ones
	// beside the admitter and the purchases.
	PreJoinTime time.Duration
	JoinsPS     float64       // joins a second
	NoopPS      float64       // the same requests a second against the no-op handler; 0 if not run
	P50, P99    time.Duration // latency of one join
	Errors      map[string]int
	// JoinRate is the pacing the arrivals were sent at, or 0 for as fast as answered.
	JoinRate int
	// Admitted is how many the server let through; AdmitPS the rate it did so at, from the
	// first admission to the last by the server's clock.
	Admitted int
	AdmitPS  float64
	// Fairness is the share of post-on-sale arrivals admitted no earlier than every post-on-sale
	// arrival whose join was answered before theirs was sent: 1 is first come, first served.
	Fairness float64
	// PreInOrder is the same share among pre-on-sale arrivals, where the draw should make it
	// far from 1 (arriving early gives no edge).
	PreInOrder float64
	// PreFirst says every pre-on-sale arrival was admitted before every post-on-sale one.
	PreFirst bool
	// Bought counts the purchases by outcome; PurchaseDuring and PurchaseAfter are the p50 and
	// p99 of a purchase made while arrivals were still joining, and after the last had joined.
	Bought         map[string]int
	PurchaseDuring [2]time.Duration
	PurchaseAfter  [2]time.Duration
	DuringN        int64
	AfterN         int64
}

// AloneJoinsPS is the joins a second of the phase in which joins ran alone: before the on-sale,
// when nothing is admitted and nobody buys. The no-op handler was sent the same joins with
// nothing beside them, so this is the rate to read against it; after the on-sale the joins share
// the machine with the admitter, the ticket polls and the purchases. Without a pre-on-sale phase
// it is the run's rate.
func (r *WaitRoomResult) AloneJoinsPS() float64 {
	if r.Pre > 0 && r.PreJoinTime > 0 {
		return float64(r.Pre) / r.PreJoinTime.Seconds()
	}
	return r.JoinsPS
}

// JoinRatio is AloneJoinsPS over the no-op handler's rate, or 0 when that was not measured.
func (r *WaitRoomResult) JoinRatio() float64 {
	if r.NoopPS == 0 {
		return 0
	}
	return r.AloneJoinsPS() / r.NoopPS
}

// arrival is one buyer of the crowd.
type arrival struct {
	email      string
	pre        bool
	sent, recv time.Time
	token      string
	// joined holds the token too, for the purchasers, which read it while arrivals still join.
	joined     atomic.Pointer[string]
	admittedAt time.Time
}

// ticket is a's queue token once its join has been answered, or "".
func (a *arrival) ticket() string {
	if p := a.joined.Load(); p != nil {
		return *p
	}
	return ""
}

// wrClient sends the run's requests.
type wrClient struct {
	hc   *http.Client
	base string
}

func (c *wrClient) do(ctx context.Context, method, path, key, idemKey string, body any, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && out != nil && resp.StatusCode < 300 {
		err = json.Unmarshal(b, out)
	}
	return resp.StatusCode, b, err
}

// RunWaitRoom runs the crowd: it creates a show with a waiting room whose on-sale is an hour
// away, sends the pre-on-sale share of the arrivals, moves the on-sale to now, sends the rest,
// waits for the server to admit everyone, then reads every ticket for its admission time.
func RunWaitRoom(ctx context.Context, cfg WaitRoomConfig) (*WaitRoomResult, error) {
	if cfg.Arrivals <= 0 {
		cfg.Arrivals = 10000
	}
	if cfg.Buyers <= 0 {
		cfg.Buyers = 64
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 2000
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 10 * time.Minute
	}
	if cfg.JoinRate < 0 {
		return nil, fmt.Errorf("join rate %d: want 0 (as fast as the server answers) or more", cfg.JoinRate)
	}
	if cfg.PreShare < 0 || cfg.PreShare > 1 {
		return nil, fmt.Errorf("pre-on-sale share %v: want 0 to 1", cfg.PreShare)
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprintf("%x", time.Now().UnixNano()%1e12)
	}
	if err := CheckURLs([]string{cfg.URL}, cfg.AllowRemote); err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Buyers, MaxConnsPerHost: cfg.Buyers, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	res := &WaitRoomResult{Arrivals: cfg.Arrivals, Errors: map[string]int{}, JoinRate: cfg.JoinRate}

	if cfg.Noop != "" && cfg.JoinRate == 0 { // paced joins are not read against the no-op
		noop := &wrClient{hc: hc, base: cfg.Noop}
		start := time.Now()
		n := cfg.Arrivals
		var next atomic.Int64
		var wg sync.WaitGroup
		for range cfg.Buyers {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(n) && ctx.Err() == nil; i = next.Add(1) {
					_, _, _ = noop.do(ctx, "POST", "/v1/shows/x/waiting-room/tickets", "k", fmt.Sprint("j", i),
						map[string]any{"buyer": map[string]string{"email": fmt.Sprintf("b%d@example.com", i)}}, nil)
				}
			})
		}
		wg.Wait()
		res.NoopPS = float64(n) / time.Since(start).Seconds()
	}

	c := &wrClient{hc: hc, base: cfg.URL}
	show := "wr-" + cfg.RunID
	key, err := c.setup(ctx, cfg, show)
	if err != nil {
		return nil, fmt.Errorf("set up the show: %w", err)
	}
	arrivals := make([]*arrival, cfg.Arrivals)
	res.Pre = int(float64(cfg.Arrivals) * cfg.PreShare)
	for i := range arrivals {
		arrivals[i] = &arrival{email: fmt.Sprintf("wr%d-%s@example.com", i, cfg.RunID), pre: i < res.Pre}
	}
	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	var histMu, errMu sync.Mutex
	join := func(batch []*arrival) {
		var next atomic.Int64
		var wg sync.WaitGroup
		began := time.Now()
		for range cfg.Buyers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(len(batch)) && ctx.Err() == nil; i = next.Add(1) - 1 {
					a := batch[i]
					if cfg.JoinRate > 0 {
						due := began.Add(time.Duration(i) * time.Second / time.Duration(cfg.JoinRate))
						if sleep(ctx, time.Until(due)) != nil {
							return
						}
					}
					var t struct {
						Token string `json:"token"`
					}
					for attempt := 0; ; attempt++ {
						a.sent = time.Now()
						st, b, err := c.do(ctx, "POST", "/v1/shows/"+show+"/waiting-room/tickets", key, "join-"+a.email,
							map[string]any{"buyer": map[string]string{"email": a.email}}, &t)
						a.recv = time.Now()
						if err == nil && st == http.StatusServiceUnavailable && attempt < 100 {
							time.Sleep(10 * time.Millisecond) // shed: retry, as a browser would
							continue
						}
						histMu.Lock()
						_ = hist.RecordValue(max(a.recv.Sub(a.sent).Microseconds(), 1))
						histMu.Unlock()
						if err != nil || st != http.StatusCreated {
							errMu.Lock()
							res.Errors[outcomeOf(st, b)]++
							errMu.Unlock()
						}
						break
					}
					a.token = t.Token
					if t.Token != "" {
						a.joined.Store(&t.Token)
					}
				}
			})
		}
		wg.Wait()
	}
	c.progress(cfg, "joining %d arrivals before the on-sale", res.Pre)
	start := time.Now()
	join(arrivals[:res.Pre])
	res.JoinTime = time.Since(start)
	res.PreJoinTime = res.JoinTime
	if err := c.putRoom(ctx, cfg, show, time.Now()); err != nil {
		return nil, fmt.Errorf("open the sale: %w", err)
	}
	c.progress(cfg, "on sale; joining %d arrivals after it", cfg.Arrivals-res.Pre)
	var joining atomic.Bool
	joining.Store(true)
	buying := c.buy(ctx, cfg, show, key, arrivals, &joining, res)
	start = time.Now()
	join(arrivals[res.Pre:])
	res.JoinTime += time.Since(start)
	joining.Store(false)
	// The purchases end before the tickets are read back, so that those after the crowd share
	// the server with the admitter alone.
	buying()
	for _, a := range arrivals {
		if a.token != "" {
			res.Joins++
		}
	}
	res.JoinsPS = float64(res.Joins) / res.JoinTime.Seconds()
	res.P50 = time.Duration(hist.ValueAtQuantile(50)) * time.Microsecond
	res.P99 = time.Duration(hist.ValueAtQuantile(99)) * time.Microsecond
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	// The queue drains at the rate; then every ticket is read once for its admission time.
	deadline := time.Now().Add(cfg.Wait)
	for {
		var room struct {
			Waiting  int `json:"waiting"`
			Admitted int `json:"admitted"`
		}
		if _, _, err := c.do(ctx, "GET", "/v1/shows/"+show+"/waiting-room", key, "", nil, &room); err != nil {
			return res, err
		}
		c.progress(cfg, "admitted %d, waiting %d", room.Admitted, room.Waiting)
		if room.Waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d still waiting after %v", room.Waiting, cfg.Wait)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return res, err
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var readErr atomic.Value
	for range cfg.Buyers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(arrivals)); i = next.Add(1) - 1 {
				a := arrivals[i]
				if a.token == "" {
					continue
				}
				var t struct {
					AdmittedAt *time.Time `json:"admitted_at"`
				}
				if _, b, err := c.do(ctx, "GET", "/v1/waiting-room/tickets/"+a.token, key, "", nil, &t); err != nil || t.AdmittedAt == nil {
					readErr.Store(fmt.Errorf("read ticket of %s: %v %s", a.email, err, b))
					return
				}
				a.admittedAt = *t.AdmittedAt
			}
		})
	}
	wg.Wait()
	if err, _ := readErr.Load().(error); err != nil {
		return res, err
	}
	fairness(res, arrivals)
	return res, nil
}

// Purchasers poll the tickets of the arrivals they watch at most purchasePolls times a second
// each, and each watches up to purchaseWatch arrivals at a time.
const (
	purchasePolls = 25
	purchaseWatch = 32
)

// buy starts cfg.Purchasers buyers that buy one ticket each for cfg.Purchases admitted arrivals,
// as soon as each is admitted, and returns a function that waits for them. Latencies are split by
// whether arrivals were still joining when the purchase was sent.
//
// The draw admits the pre-on-sale arrivals in an order no client knows, so a purchaser that took
// arrivals one at a time in join order would wait seconds for each, and nearly every purchase
// would come after the crowd had joined: the "while joining" figure would rest on a handful of
// purchases. Each purchaser instead watches several arrivals, polls their tickets in turn (at a
// bounded rate, so the polls are a small share of the load) and buys for whichever is admitted
// first, as buyers refreshing the page would.
func (c *wrClient) buy(ctx context.Context, cfg WaitRoomConfig, show, key string, arrivals []*arrival, joining *atomic.Bool, res *WaitRoomResult) func() {
	res.Bought = map[string]int{}
	n := min(cfg.Purchases, len(arrivals))
	if n <= 0 {
		return func() {}
	}
	during := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	after := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	var mu sync.Mutex
	var next, claimed atomic.Int64
	deadline := time.Now().Add(cfg.Wait)
	var wg sync.WaitGroup
	for range max(cfg.Purchasers, 1) {
		wg.Go(func() {
			var watch []*arrival
			tick := time.NewTicker(time.Second / purchasePolls)
			defer tick.Stop()
			for ctx.Err() == nil && time.Now().Before(deadline) && claimed.Load() < int64(n) {
				// Watch the next arrivals that have their tickets; one whose join is still on its
				// way is taken up by the next round.
				for len(watch) < purchaseWatch {
					i := next.Load()
					if i >= int64(len(arrivals)) || arrivals[i].ticket() == "" || !next.CompareAndSwap(i, i+1) {
						break
					}
					watch = append(watch, arrivals[i])
				}
				if len(watch) == 0 {
					if next.Load() >= int64(len(arrivals)) {
						return // every arrival is someone's already
					}
				} else {
					a := watch[0]
					watch = watch[1:]
					var t struct {
						Status string `json:"status"`
						Token  string `json:"token"`
					}
					st, b, err := c.do(ctx, "GET", "/v1/waiting-room/tickets/"+a.ticket(), key, "", nil, &t)
					switch {
					case err != nil || st == http.StatusServiceUnavailable || (st == http.StatusOK && t.Status == "waiting"):
						watch = append(watch, a) // not yet, or shed: back of the line
					case st != http.StatusOK:
						// The ticket cannot be read (a server's bug): counted with the purchases'
						// outcomes, so the run says so, and no purchase is sent for it.
						mu.Lock()
						res.Bought["ticket read "+outcomeOf(st, b)]++
						mu.Unlock()
					case claimed.Add(1) <= int64(n):
						c.purchase(ctx, show, key, a, t.Token, joining, &mu, during, after, res)
					}
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
			}
		})
	}
	return func() {
		wg.Wait()
		q := func(h *hdrhistogram.Histogram, p float64) time.Duration {
			return time.Duration(h.ValueAtQuantile(p)) * time.Microsecond
		}
		res.PurchaseDuring = [2]time.Duration{q(during, 50), q(during, 99)}
		res.PurchaseAfter = [2]time.Duration{q(after, 50), q(after, 99)}
		res.DuringN, res.AfterN = during.TotalCount(), after.TotalCount()
	}
}

// purchase buys one ticket for admitted arrival a with its admitted token, and records the
// outcome and the latency, in during while arrivals are joining and in after once they are not.
func (c *wrClient) purchase(ctx context.Context, show, key string, a *arrival, token string, joining *atomic.Bool,
	mu *sync.Mutex, during, after *hdrhistogram.Histogram, res *WaitRoomResult) {
	body := map[string]any{"show_id": show, "tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": a.email},
		"payment": map[string]string{"token": "tok_ok"}}
	busy := joining.Load()
	t0 := time.Now()
	st, b, err := c.doTicket(ctx, "/v1/purchases", key, "buy-"+a.email, token, body)
	lat := max(time.Since(t0).Microseconds(), 1)
	mu.Lock()
	defer mu.Unlock()
	if busy {
		_ = during.RecordValue(lat)
	} else {
		_ = after.RecordValue(lat)
	}
	if err != nil {
		res.Bought["transport error"]++
	} else {
		res.Bought[outcomeOf(st, b)]++
	}
}

// doTicket is a POST with the Queue-Ticket header.
func (c *wrClient) doTicket(ctx context.Context, path, key, idemKey, ticket string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", idemKey)
	req.Header.Set("Queue-Ticket", ticket)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// fairness fills the admission figures of res from the arrivals' join and admission times.
func fairness(res *WaitRoomResult, arrivals []*arrival) {
	var pre, post []*arrival
	var first, last time.Time
	for _, a := range arrivals {
		if a.admittedAt.IsZero() {
			continue
		}
		res.Admitted++
		if first.IsZero() || a.admittedAt.Before(first) {
			first = a.admittedAt
		}
		if a.admittedAt.After(last) {
			last = a.admittedAt
		}
		if a.pre {
			pre = append(pre, a)
		} else {
			post = append(post, a)
		}
	}
	if d := last.Sub(first).Seconds(); d > 0 {
		res.AdmitPS = float64(res.Admitted-1) / d
	}
	res.Fairness, res.PreInOrder = inOrder(post), inOrder(pre)
	// Ties are one admission tick, which may take the last of the draw and the first after it.
	var lastPre time.Time
	for _, p := range pre {
		if p.admittedAt.After(lastPre) {
			lastPre = p.admittedAt
		}
	}
	res.PreFirst = true
	for _, q := range post {
		if q.admittedAt.Before(lastPre) {
			res.PreFirst = false
		}
	}
}

// inOrder is the share of arrivals b admitted no earlier than every arrival a whose join was
// answered before b's was sent (a certainly arrived first). Admissions in one tick of the server
// share a time, so a tie counts as in order.
func inOrder(as []*arrival) float64 {
	if len(as) == 0 {
		return 1
	}
	byRecv := slices.Clone(as)
	sort.Slice(byRecv, func(i, j int) bool { return byRecv[i].recv.Before(byRecv[j].recv) })
	bySent := slices.Clone(as)
	sort.Slice(bySent, func(i, j int) bool { return bySent[i].sent.Before(bySent[j].sent) })
	var maxAdm time.Time
	k, ok := 0, 0
	for _, b := range bySent {
		for k < len(byRecv) && byRecv[k].recv.Before(b.sent) {
			if byRecv[k].admittedAt.After(maxAdm) {
				maxAdm = byRecv[k].admittedAt
			}
			k++
		}
		if !b.admittedAt.Before(maxAdm) {
			ok++
		}
	}
	return float64(ok) / float64(len(as))
}

// setup creates the show, a client key and the room, its on-sale an hour away.
func (c *wrClient) setup(ctx context.Context, cfg WaitRoomConfig, show string) (string, error) {
	body := map[string]any{"name": "Waiting-room bench", "starts_at": "2030-01-01T20:00:00Z",
		"tiers": []map[string]any{{"id": "ga", "name": "GA", "capacity": cfg.Arrivals, "price": map[string]any{"amount": 1000, "currency": "EUR"}}}}
	if st, b, err := c.do(ctx, "PUT", "/v1/shows/"+show, cfg.AdminKey, "", body, nil); err != nil || st != http.StatusCreated {
		return "", fmt.Errorf("PUT show: %d %s %v", st, b, err)
	}
	var k struct {
		Key string `json:"key"`
	}
	if st, b, err := c.do(ctx, "POST", "/v1/api-keys", cfg.AdminKey, "wr-key-"+cfg.RunID, map[string]string{"role": "client"}, &k); err != nil || st != http.StatusCreated {
		return "", fmt.Errorf("POST api-keys: %d %s %v", st, b, err)
	}
	return k.Key, c.putRoom(ctx, cfg, show, time.Now().Add(time.Hour))
}

// putRoom sets the room's on-sale; moving it while nothing is admitted restarts the budget.
func (c *wrClient) putRoom(ctx context.Context, cfg WaitRoomConfig, show string, opens time.Time) error {
	body := map[string]any{"opens_at": opens.UTC().Format(time.RFC3339Nano), "admit_per_second": cfg.Rate, "admission_ttl_seconds": 3600}
	st, b, err := c.do(ctx, "PUT", "/v1/shows/"+show+"/waiting-room", cfg.AdminKey, "", body, nil)
	if err == nil && st != http.StatusCreated && st != http.StatusOK {
		err = errors.New(string(b))
	}
	return err
}

func (c *wrClient) progress(cfg WaitRoomConfig, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "  "+format+"\n", args...)
	}
}

// PrintWaitRoom writes a waiting-room result for people.
func PrintWaitRoom(w io.Writer, r *WaitRoomResult) {
	fmt.Fprintf(w, "%s\n", r.Name)
	fmt.Fprintf(w, "  joins       %.0f/s (%d of %d arrivals in %v; %d before the on-sale)", r.JoinsPS, r.Joins, r.Arrivals,
		r.JoinTime.Round(time.Millisecond), r.Pre)
	if r.JoinRate > 0 {
		fmt.Fprintf(w, "; sent at %d/s, so this is the rate, not the server's limit", r.JoinRate)
	}
	fmt.Fprintln(w)
	if post := r.JoinTime - r.PreJoinTime; r.Pre > 0 && r.Pre < r.Arrivals && r.PreJoinTime > 0 && post > 0 {
		fmt.Fprintf(w, "  phases      %.0f/s before the on-sale (joins alone), %.0f/s after (beside admission and purchases)\n",
			r.AloneJoinsPS(), float64(r.Arrivals-r.Pre)/post.Seconds())
	}
	if r.JoinRate == 0 && r.NoopPS > 0 {
		fmt.Fprintf(w, "  vs no-op    %.2f× the no-op handler (%.0f/s): the joins that ran alone, as the no-op's did\n", r.JoinRatio(), r.NoopPS)
	}
	fmt.Fprintf(w, "  latency     p50 %v  p99 %v (one join)\n", r.P50, r.P99)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors      %v\n", r.Errors)
	}
	fmt.Fprintf(w, "  admitted    %d at %.0f/s by the server's clock\n", r.Admitted, r.AdmitPS)
	if len(r.Bought) > 0 {
		fmt.Fprintf(w, "  purchases   %v by admitted buyers; p50/p99 %v/%v while arrivals joined (%d), %v/%v after (%d)\n",
			r.Bought, r.PurchaseDuring[0], r.PurchaseDuring[1], r.DuringN, r.PurchaseAfter[0], r.PurchaseAfter[1], r.AfterN)
	}
	fmt.Fprintf(w, "  fairness    %.2f%% of post-on-sale arrivals admitted in arrival order; pre-on-sale arrivals all first: %v; "+
		"pre-on-sale in arrival order: %.2f%% (the draw)\n", 100*r.Fairness, r.PreFirst, 100*r.PreInOrder)
}
