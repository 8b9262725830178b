package nats

import (
	"context"
	"errors"
	"testing"

	"boxoffice"
	"boxoffice/internal/checkfor"
)

// TestAsyncReadySaysWhenTheBusIsDown: Ready answers nil while NATS and JetStream answer, and a
// NotReadyError naming the bus once the server is gone.
func TestAsyncReadySaysWhenTheBusIsDown(t *testing.T) {
	e := newEnv(t)
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: t.TempDir(), Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	if err := a.Ready(context.Background()); err != nil {
		t.Fatalf("a running bus: %v", err)
	}
	a.srv.Shutdown()
	checkfor.Until(t, readyEvery*10, readyEvery/10, "Ready to say the bus is down", func() bool {
		var nr *boxoffice.NotReadyError
		return errors.As(a.Ready(context.Background()), &nr)
	})
}
