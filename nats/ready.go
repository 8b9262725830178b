package nats

import (
	"context"
	"sync"
	"time"

	"boxoffice"
)

// readyEvery is how often Ready asks JetStream; between asks it answers the last outcome, so a
// load balancer polling /readyz does not load the bus.
const readyEvery = time.Second

// readiness caches Ready's last look at JetStream.
type readiness struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// Ready reports whether the async side can take the server's events: the connection to NATS is
// up and JetStream answers (an embedded server that disabled its store on a full disk does
// not). A failure is a *boxoffice.NotReadyError; purchases would still commit (the outbox is
// the store's), but receipts and webhooks would stall, which an operator must see.
func (a *Async) Ready(ctx context.Context) error {
	if a.nc == nil || !a.nc.IsConnected() {
		return &boxoffice.NotReadyError{Reason: "the event bus (NATS) is disconnected"}
	}
	if a.storeFailed.Load() != 0 {
		return &boxoffice.NotReadyError{Reason: "JetStream cannot write its files (a full disk?)"}
	}
	a.ready.mu.Lock()
	defer a.ready.mu.Unlock()
	if time.Since(a.ready.at) >= readyEvery {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := a.js.AccountInfo(ctx)
		cancel()
		a.ready.at, a.ready.err = time.Now(), err
	}
	if a.ready.err != nil {
		return &boxoffice.NotReadyError{Reason: "JetStream does not answer", Err: a.ready.err}
	}
	return nil
}
