package keylimit

import (
	"testing"
	"time"

	"boxoffice"
)

func TestLimiterPerKey(t *testing.T) {
	if New(0, 5) != nil {
		t.Fatal("a zero rate must mean no limiter")
	}
	var nilLimiter *Limiter
	if err := nilLimiter.Allow("k"); err != nil {
		t.Fatalf("a nil limiter refused: %v", err)
	}
	l := New(2, 3) // 2 a second, bursts of 3
	clock := time.Unix(1000, 0)
	l.now = func() time.Time { return clock }
	for i := range 3 {
		if err := l.Allow("a"); err != nil {
			t.Fatalf("request %d of the burst: %v", i+1, err)
		}
	}
	err := l.Allow("a")
	be := boxoffice.AsError(err)
	if be == nil || be.Code != boxoffice.ERATELIMITED || be.RetryAfter <= 0 || be.RetryAfter > 500*time.Millisecond {
		t.Fatalf("past the burst: %v; want rate_limited with a Retry-After of at most half a second", err)
	}
	if err := l.Allow("b"); err != nil {
		t.Fatalf("another key shares a budget: %v", err)
	}
	// A refused request takes nothing: after the wait it announced, one fits again.
	clock = clock.Add(be.RetryAfter)
	if err := l.Allow("a"); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	if err := l.Allow("a"); err == nil {
		t.Fatal("a second request right after the refill fits")
	}
}
