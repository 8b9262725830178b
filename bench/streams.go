package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ModeStreams is bench --mode streams: a crowd waiting on the server-sent events of its queue
// tickets, and what each open stream costs the server.
const ModeStreams = "streams"

// StreamsConfig configures RunStreams.
type StreamsConfig struct {
	URL, AdminKey string
	// Streams is how many buyers join the queue and then each hold a stream open.
	Streams int
	// Hold is how long the streams are held open and their events counted.
	Hold        time.Duration
	Progress    io.Writer
	AllowRemote bool
	RunID       string
}

// StreamsResult is what RunStreams measured, from the server's own /metrics (its process's
// resident memory, CPU time and goroutines) before and while the streams were open.
type StreamsResult struct {
	Name                             string
	Streams, Open, Failed            int
	RSSBefore, RSSOpen               float64 // bytes
	GoroutinesBefore, GoroutinesOpen float64
	Events                           int64
	Hold                             time.Duration
	CPU                              float64 // server CPU seconds while held
	IdleCPU                          float64 // server CPU seconds over as long, before the streams
}

// RunStreams joins cfg.Streams buyers to a show's queue (the room opens at once and lets one
// through a second, so they all wait), measures the server idle for cfg.Hold, opens every
// buyer's event stream, then holds them for cfg.Hold counting the events, and reads the server's
// memory and CPU from its /metrics around it.
func RunStreams(ctx context.Context, cfg StreamsConfig) (*StreamsResult, error) {
	if cfg.Streams <= 0 || cfg.Streams > 50000 {
		return nil, fmt.Errorf("%d streams: want 1 to 50,000", cfg.Streams)
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 20 * time.Second
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprintf("%x", time.Now().UnixNano()%1e12)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if err := CheckURLs([]string{cfg.URL}, cfg.AllowRemote); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("--mode streams needs an http:// server, not %q", cfg.URL)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &wrClient{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: cfg.URL}
	show := "streams-" + cfg.RunID
	wcfg := WaitRoomConfig{AdminKey: cfg.AdminKey, Arrivals: cfg.Streams, Rate: 1, RunID: cfg.RunID}
	key, err := c.setup(ctx, wcfg, show)
	if err != nil {
		return nil, fmt.Errorf("set up the show: %w", err)
	}
	if err := c.putRoom(ctx, wcfg, show, time.Now()); err != nil {
		return nil, fmt.Errorf("open the sale: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "  joining %d buyers\n", cfg.Streams)
	tokens := make([]string, cfg.Streams)
	var next atomic.Int64
	var wg sync.WaitGroup
	var joinErr atomic.Value
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(cfg.Streams) && ctx.Err() == nil; i = next.Add(1) - 1 {
				var t struct {
					Token string `json:"token"`
				}
				email := fmt.Sprintf("st%d-%s@example.com", i, cfg.RunID)
				st, b, err := c.do(ctx, "POST", "/v1/shows/"+show+"/waiting-room/tickets", key, "join-"+email,
					map[string]any{"buyer": map[string]string{"email": email}}, &t)
				if err != nil || st != http.StatusCreated {
					joinErr.CompareAndSwap(nil, fmt.Errorf("join: %d %s %v", st, b, err))
					return
				}
				tokens[i] = t.Token
			}
		})
	}
	wg.Wait()
	if err, _ := joinErr.Load().(error); err != nil {
		return nil, err
	}
	res := &StreamsResult{Streams: cfg.Streams, Hold: cfg.Hold}
	m0, err := c.serverMetrics(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "  the server idle for %v\n", cfg.Hold)
	if sleep(ctx, cfg.Hold) != nil {
		return nil, ctx.Err()
	}
	m1, err := c.serverMetrics(ctx)
	if err != nil {
		return nil, err
	}
	res.IdleCPU = m1.cpu - m0.cpu
	res.RSSBefore, res.GoroutinesBefore = m1.rss, m1.goroutines

	fmt.Fprintf(cfg.Progress, "  opening %d streams\n", cfg.Streams)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var events, open, failed atomic.Int64
	var first sync.WaitGroup
	var readers sync.WaitGroup
	first.Add(cfg.Streams)
	for i, tok := range tokens {
		readers.Go(func() {
			once := false
			defer func() {
				if !once {
					failed.Add(1)
					first.Done()
				}
			}()
			conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(sctx, "tcp", u.Host)
			if err != nil {
				return
			}
			defer conn.Close()
			stop := context.AfterFunc(sctx, func() { conn.Close() })
			defer stop()
			fmt.Fprintf(conn, "GET /v1/waiting-room/tickets/%s/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", tok, u.Host, key)
			r := bufio.NewReaderSize(conn, 1024)
			resp, err := http.ReadResponse(r, nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				return
			}
			open.Add(1)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "event: ") {
					events.Add(1)
					if !once {
						once = true
						first.Done()
					}
				}
			}
		})
		if i%200 == 199 { // a crowd arriving, not a SYN flood
			if sleep(ctx, 20*time.Millisecond) != nil {
				break
			}
		}
	}
	first.Wait()
	if sleep(ctx, 3*time.Second) != nil {
		return nil, ctx.Err()
	}
	m2, err := c.serverMetrics(ctx)
	if err != nil {
		return nil, err
	}
	e0 := events.Load()
	fmt.Fprintf(cfg.Progress, "  holding %d streams for %v\n", open.Load(), cfg.Hold)
	if sleep(ctx, cfg.Hold) != nil {
		return nil, ctx.Err()
	}
	m3, err := c.serverMetrics(ctx)
	if err != nil {
		return nil, err
	}
	res.Events = events.Load() - e0
	res.CPU = m3.cpu - m2.cpu
	res.RSSOpen, res.GoroutinesOpen = m3.rss, m3.goroutines
	res.Open, res.Failed = int(open.Load()), int(failed.Load())
	cancel()
	readers.Wait()
	return res, nil
}

// sleep waits d, or until ctx ends (its error then).
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// processMetrics is what /metrics says of the server's process.
type processMetrics struct{ rss, cpu, goroutines float64 }

// serverMetrics reads the server's process metrics from its /metrics.
func (c *wrClient) serverMetrics(ctx context.Context) (processMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/metrics", nil)
	if err != nil {
		return processMetrics{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return processMetrics{}, fmt.Errorf("read the server's /metrics: %w", err)
	}
	defer resp.Body.Close()
	var m processMetrics
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			m.rss = v
		case "process_cpu_seconds_total":
			m.cpu = v
		case "go_goroutines":
			m.goroutines = v
		default:
			continue
		}
		found++
	}
	if found < 3 {
		return m, fmt.Errorf("the server's /metrics lacks the process's memory, CPU or goroutines")
	}
	return m, nil
}

// PrintStreams writes a streams result for people.
func PrintStreams(w io.Writer, r *StreamsResult) {
	fmt.Fprintf(w, "%s\n", r.Name)
	fmt.Fprintf(w, "  streams     %d open of %d (%d failed)\n", r.Open, r.Streams, r.Failed)
	per := 0.0
	if r.Open > 0 {
		per = (r.RSSOpen - r.RSSBefore) / float64(r.Open)
	}
	fmt.Fprintf(w, "  memory      server RSS %.0f MB before, %.0f MB with them open: %.1f KB a stream\n",
		r.RSSBefore/1e6, r.RSSOpen/1e6, per/1e3)
	fmt.Fprintf(w, "  goroutines  %.0f before, %.0f with them open\n", r.GoroutinesBefore, r.GoroutinesOpen)
	secs := r.Hold.Seconds()
	perEvent := 0.0
	if r.Events > 0 {
		perEvent = (r.CPU - r.IdleCPU) / float64(r.Events) * 1e6
	}
	fmt.Fprintf(w, "  events      %d in %v (%.0f/s); server CPU %.2f cores (%.2f idle): %.0f µs an event beyond idle\n",
		r.Events, r.Hold, float64(r.Events)/secs, r.CPU/secs, r.IdleCPU/secs, perEvent)
}
