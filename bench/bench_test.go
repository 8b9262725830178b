package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckLoopback(t *testing.T) {
	for _, c := range []struct {
		url    string
		remote bool
		ok     bool
	}{
		{"http://127.0.0.1:8080", false, true},
		{"http://127.5.6.7:1", false, true},
		{"http://localhost:8080", false, true},
		{"http://[::1]:8080", false, true},
		{"http://10.0.0.5:8080", false, false},
		{"http://192.168.1.2", false, false},
		{"http://example.com", false, false},
		{"http://example.com", true, true},
		{"ftp://127.0.0.1", false, false},
		{"127.0.0.1:8080", false, false},
	} {
		if err := CheckLoopback(c.url, c.remote); (err == nil) != c.ok {
			t.Errorf("%s (allow remote %v): err %v, want ok=%v", c.url, c.remote, err, c.ok)
		}
	}
}

// TestRunCountsEveryRequest drives the no-op handler: every purchase is answered once, retries
// come only from the share cut off by the client timeout, and the percentiles are ordered.
func TestRunCountsEveryRequest(t *testing.T) {
	url, stop, err := StartNoop()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	res, err := Run(context.Background(), Config{URL: url, Mode: ModeNoop, Buyers: 8, Requests: 400, Duration: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 400 || res.Outcomes["201"] != 400 {
		t.Fatalf("requests %d, outcomes %v", res.Requests, res.Outcomes)
	}
	if res.Attempts != 400 || res.Retries != 0 {
		t.Fatalf("attempts %d retries %d without a retry share", res.Attempts, res.Retries)
	}
	if !(res.P50 <= res.P99 && res.P99 <= res.P999) || res.P50 <= 0 {
		t.Fatalf("percentiles out of order: %v %v %v", res.P50, res.P99, res.P999)
	}
	if res.SoldOutRate != 0 {
		t.Fatalf("sold-out rate %v of a run whose every answer was a sale", res.SoldOutRate)
	}
	if _, err := Run(context.Background(), Config{URL: "http://10.1.2.3:80", Mode: ModeNoop}); err == nil {
		t.Fatal("a non-loopback target was loaded")
	}
}

// TestSoldOutRate: a run that sells out has the rate of the answers after its last sale, which
// leaves out the time spent selling: higher than the whole run's rate of those answers, and
// counting only them.
func TestSoldOutRate(t *testing.T) {
	var answered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if answered.Add(1) <= 100 {
			time.Sleep(2 * time.Millisecond) // selling is slower than refusing
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.WriteHeader(http.StatusConflict)
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Mode: ModeNoop, Buyers: 8, Requests: 400, Duration: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcomes["201"] != 100 || res.Requests != 400 {
		t.Fatalf("outcomes %v", res.Outcomes)
	}
	// At most the 7 other buyers' refusals can have finished before the last sale did.
	overall := 300 / res.Elapsed.Seconds()
	if res.SoldOutRate <= overall || res.SoldOutRate*res.Elapsed.Seconds() < 293 {
		t.Fatalf("sold-out rate %.0f/s over a %v run with 300 refusals (%.0f/s over the whole run)", res.SoldOutRate, res.Elapsed, overall)
	}
}
