package nats

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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
//
// The server turns itself off in a goroutine of its own (handleOutOfSpace): it marks JetStream
// disabled at once and tears it down afterwards, account by account. Turning it on in between
// races that teardown, which can end with the server's JetStream on but the account's off (every
// request answered "JetStream not enabled for account", for good) or with the account's left on
// so that every later start fails. So this waits for the teardown to finish before turning
// JetStream on, and repairs either half-state when it sees one.
//
// probe is the readiness probe's lock (Async.Ready asks JetStream for its account under it, and
// waits for the answer). Turning JetStream on or off is done holding it: nats-server sets up its
// API request queues without a lock when JetStream is turned on, while the server's goroutine of
// the connection that carried the last probe may have read them; the race detector reported
// that against the disk-full test. Holding the lock orders that last request (answered, so
// dispatched) before the turn.
func (s *Server) keepJetStream(ctx context.Context, log *slog.Logger, storeFailed *atomic.Int64, probe sync.Locker) {
	turn := func(f func() error) error {
		probe.Lock()
		defer probe.Unlock()
		return f()
	}
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
			if !s.srv.GlobalAccount().JetStreamEnabled() {
				log.Warn("async: the embedded JetStream is on but not for its account (a restart raced the server's own shutdown); turning it off and on again")
				if err := turn(s.srv.ShutdownJetStream); err != nil {
					log.Warn("async: turning JetStream off failed", "err", err)
				}
				continue
			}
			at := storeFailed.Load()
			if at == 0 || time.Since(time.Unix(0, at)) < jetStreamWatch {
				continue
			}
			// A stream failed a write at least one watch ago: reload JetStream to clear it
			// (turned off here, on again below). If the disk is still full the next write
			// fails again and marks it again.
			storeFailed.Store(0)
			log.Warn("async: the embedded JetStream failed to write a stream; reloading it from its files")
			if err := turn(s.srv.ShutdownJetStream); err != nil {
				log.Warn("async: turning JetStream off failed", "err", err)
			}
		}
		if !down {
			log.Error("async: the embedded JetStream turned itself off (out of disk space?); events wait in the store's outbox, and JetStream is turned on again once it can write")
			down = true
		}
		if s.srv.JetStreamConfig() != nil {
			continue // marked off, still being torn down: the next tick looks again
		}
		if acc := s.srv.GlobalAccount(); acc.JetStreamEnabled() {
			// Left on by a teardown that raced an earlier start; a start would refuse it.
			_ = acc.DisableJetStream()
		}
		if err := turn(func() error { return s.srv.EnableJetStream(&server.JetStreamConfig{StoreDir: s.dir}) }); err != nil {
			log.Warn("async: turning JetStream on again failed; retrying", "err", err)
			continue
		}
		down = false
		log.Info("async: the embedded JetStream is on again")
	}
}
