package nats

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// jetStreamWatch is how often the embedded server's JetStream is checked: nats-server turns
// JetStream off for good on its first write error of a full disk (handleOutOfSpace), and
// nothing in the server turns it back on, so without this no receipt goes out until a restart.
const jetStreamWatch = 2 * time.Second

// slogLogger writes the embedded nats-server's log to the server's slog: its errors (a full
// disk, a corrupt block) are what an operator needs to see, and it has no log of its own.
type slogLogger struct{ log *slog.Logger }

var _ server.Logger = slogLogger{}

// Noticef implements server.Logger, at debug level: the server's notices are its start-up
// banner and routine events, which would bury the server's own log.
func (l slogLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}

// Warnf implements server.Logger.
func (l slogLogger) Warnf(format string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }

// Fatalf implements server.Logger; the embedded server's fatal errors do not end the process.
func (l slogLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}

// Errorf implements server.Logger.
func (l slogLogger) Errorf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}

// Debugf implements server.Logger.
func (l slogLogger) Debugf(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}

// Tracef implements server.Logger; tracing is never turned on.
func (l slogLogger) Tracef(string, ...any) {}

// keepJetStream turns JetStream on again, from its files, whenever the embedded server has
// turned it off (a full disk, then space freed), until ctx ends. Events wait in the store's
// outbox meanwhile, and the relay and consumers resume where they were once it is back.
func (s *Server) keepJetStream(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(jetStreamWatch)
	defer t.Stop()
	down := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.srv.JetStreamEnabled() {
			continue
		}
		if !down {
			log.Error("async: the embedded JetStream turned itself off (out of disk space?); events wait in the store's outbox, and JetStream is turned on again once it can write")
			down = true
		}
		if err := s.srv.EnableJetStream(&server.JetStreamConfig{StoreDir: s.dir}); err != nil {
			log.Warn("async: turning JetStream on again failed; retrying", "err", err)
			continue
		}
		down = false
		log.Info("async: the embedded JetStream is on again")
	}
}
