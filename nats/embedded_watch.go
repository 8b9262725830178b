package nats

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// jetStreamWatch is how often the embedded server's JetStream is checked: nats-server turns
// JetStream off for good on its first write error of a full disk (handleOutOfSpace), and
// nothing in the server turns it back on, so without this no receipt goes out until a restart.
const jetStreamWatch = 2 * time.Second

// slogLogger writes the embedded nats-server's log to the server's slog: its errors (a full
// disk, a corrupt block) are what an operator needs to see, and it has no log of its own.
// storeFailed, when set, gets the time of the server's last failure to write a stream's files.
type slogLogger struct {
	log         *slog.Logger
	storeFailed *atomic.Int64
}

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

// Errorf implements server.Logger. A failure to store a message marks the stream as broken for
// keepJetStream: nats-server keeps that write error on the stream for good and stops answering
// its publishers, so only turning JetStream off and on again (reloading it from its files)
// clears it.
func (l slogLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if l.storeFailed != nil && strings.Contains(msg, "failed to store a msg") {
		l.storeFailed.Store(time.Now().UnixNano())
	}
	l.log.Error("nats: " + msg)
}

// Debugf implements server.Logger.
func (l slogLogger) Debugf(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}

// Tracef implements server.Logger; tracing is never turned on.
func (l slogLogger) Tracef(string, ...any) {}

// keepJetStream turns JetStream on again, from its files, whenever the embedded server has
// turned it off (a full disk, then space freed), until ctx ends; and turns it off and on again
// after the server failed to write a stream's files (storeFailed), which otherwise leaves that
// stream refusing every publish for good. Events wait in the store's outbox meanwhile, and the
// relay and consumers resume where they were once it is back.
func (s *Server) keepJetStream(ctx context.Context, log *slog.Logger, storeFailed *atomic.Int64) {
	t := time.NewTicker(jetStreamWatch)
	defer t.Stop()
	down := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if at := storeFailed.Load(); at != 0 && s.srv.JetStreamEnabled() && time.Since(time.Unix(0, at)) >= jetStreamWatch {
			// A stream failed a write at least one watch ago: reload JetStream to clear it. If
			// the disk is still full the next write fails again and marks it again.
			storeFailed.Store(0)
			log.Warn("async: the embedded JetStream failed to write a stream; reloading it from its files")
			if err := s.srv.ShutdownJetStream(); err != nil {
				log.Warn("async: turning JetStream off failed", "err", err)
			}
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
