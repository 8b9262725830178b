// Package nats carries the outbox's domain events over NATS JetStream: an embedded JetStream
// server (or a connection to an external cluster), the stream the events live in, the relay that
// publishes the outbox to it, and the consumers that turn events into effects exactly once.
package nats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subjects. An event of type T is published on SubjectPrefix + T, so a consumer
// can filter by type (boxoffice.events.order.confirmed).
const (
	StreamName    = "BOXOFFICE_EVENTS"
	SubjectPrefix = "boxoffice.events."
)

// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id on the events stream of a relay
// whose GapWait is gapWait and whose SyncLag is syncLag. It must be longer than the relay's retry
// horizon: the longest time between a first publish of an event and the relay publishing it
// again, which happens when the relay stops (crash, kill, restart) after the ack but before its
// checkpoint is committed, when its checkpoint trails the acks by the stream's unsynced window
// (SyncLag), or when it republishes events past a PostgreSQL position gap after a restart. That
// is a relay round (well under a second) plus a restart plus GapWait (0 on SQLite, a minute by
// default on PostgreSQL) plus SyncLag, so a minute more than both covers it, and no longer: JetStream keeps every id of
// the window in memory (about 150 bytes each, two per purchase), so the two-hour window this once
// had held millions of ids, hundreds of MB, during a big on-sale. A republish after a longer
// outage reaches the stream twice and is absorbed by the consumers' inboxes, so no effect repeats.
func DuplicateWindow(gapWait, syncLag time.Duration) time.Duration {
	return max(gapWait, 0) + max(syncLag, 0) + time.Minute
}

// DefaultEventsMaxAge is the events stream's default MaxAge: a week, the consumers' inbox TTL
// (sale.DefaultInboxTTL). A message kept longer could be redelivered — to a consumer created
// again from the stream's start — after its inbox record was swept, and would be applied twice;
// and the stream would grow with every sale for ever. It is far above the longest retry schedule
// (about a day).
const DefaultEventsMaxAge = 7 * 24 * time.Hour

// EmbeddedSyncInterval is how often the embedded JetStream server fsyncs its stream files. An ack
// then means the message is in the server's files (it survives a kill -9 of the process) but not
// yet on the disk (a power cut may lose up to this much); the relay covers that window with
// EmbeddedSyncLag, so the stream no longer pays an fsync per event.
const EmbeddedSyncInterval = time.Second

// EmbeddedSyncLag is the relay's SyncLag over the embedded server: two sync intervals (an ack just
// after a sync waits a whole interval, and the sync itself takes time) plus a second for a
// machine too busy to run the sync timer on time.
const EmbeddedSyncLag = 2*EmbeddedSyncInterval + time.Second

// dlqDuplicateWindow is the dead-letter stream's: a message redelivered after its consumer failed
// to terminate it (AckWait later) is dead-lettered again, and the window drops that copy. Dead
// letters are few, so the window can be wide.
const dlqDuplicateWindow = 2 * time.Hour

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// Listen makes the server accept clients (tools such as the nats CLI) on Addr; unset, it has
	// no listener and only in-process connections reach it.
	Listen bool
	// Addr is the host:port Listen listens on; empty means 127.0.0.1 and a random port, and port
	// 0 a random one. The server has no authentication: whoever reaches the port can read every
	// event (buyers' addresses included) and delete the streams, so the caller keeps it on
	// loopback unless the operator says otherwise (boxoffice serve --nats-allow-remote).
	Addr string
	// Logger, when set, gets the server's log; unset, the server logs nothing.
	Logger server.Logger
	// ReadyTimeout bounds the wait for the server to start; 0 means 10 s.
	ReadyTimeout time.Duration
	// SyncInterval is how often the server fsyncs its stream files; 0 means EmbeddedSyncInterval.
	// A relay publishing to it must trail its checkpoint by more (Relay.SyncLag).
	SyncInterval time.Duration
}

// Server is an embedded JetStream server.
type Server struct {
	srv *server.Server
	dir string // the store dir, to turn JetStream on again from (keepJetStream)
}

// StartEmbedded starts an in-process JetStream server whose file storage is under dir.
func StartEmbedded(dir string, opts EmbeddedOptions) (*Server, error) {
	syncInterval := opts.SyncInterval
	if syncInterval <= 0 {
		syncInterval = EmbeddedSyncInterval
	}
	so := &server.Options{
		ServerName: "boxoffice-embedded",
		JetStream:  true,
		StoreDir:   dir,
		Host:       "127.0.0.1",
		Port:       -1,
		DontListen: !opts.Listen,
		// The process owns signal handling (boxoffice serve drains HTTP first on SIGTERM).
		NoSigs: true,
		NoLog:  opts.Logger == nil,
		// An acked publish is written to the stream's files before the ack (so it survives a
		// kill -9 of the process) and fsync'd every SyncInterval, not once per message: an fsync
		// per event cost a fifth of the server's CPU in a stampede. What a power cut can take
		// (the last interval) the relay publishes again, because its checkpoint trails the acks
		// by more than the interval (Relay.SyncLag) and the outbox rows are durable in the store.
		SyncAlways:   false,
		SyncInterval: syncInterval,
	}
	if opts.Listen && opts.Addr != "" {
		host, port, err := net.SplitHostPort(opts.Addr)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", opts.Addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("nats listen address %q: bad port", opts.Addr)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as its default, 4222
		}
		so.Host, so.Port = host, p
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if opts.Logger != nil {
		srv.SetLoggerV2(opts.Logger, false, false, false)
	}
	go srv.Start()
	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		return nil, errors.New("nats server: not ready in time")
	}
	return &Server{srv: srv, dir: dir}, nil
}

// ClientURL is the URL clients dial; empty when the server does not listen.
func (s *Server) ClientURL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// Connect opens an in-process connection to the server.
func (s *Server) Connect() (*natsgo.Conn, error) {
	return natsgo.Connect("", natsgo.InProcessServer(s.srv), natsgo.Name("boxoffice"), natsgo.MaxReconnects(-1))
}

// Shutdown stops the server and waits until it has.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Connect dials an external NATS cluster; urls are its servers, any of which will do.
func Connect(urls []string) (*natsgo.Conn, error) {
	var list []string
	for _, u := range urls {
		if u = strings.TrimSpace(u); u != "" {
			list = append(list, u)
		}
	}
	if len(list) == 0 {
		return nil, errors.New("nats: no server URL")
	}
	// Reconnect forever: the relay and consumers wait out an outage rather than exit.
	return natsgo.Connect(strings.Join(list, ","), natsgo.Name("boxoffice"), natsgo.MaxReconnects(-1))
}

// StreamOptions configures EnsureStream.
type StreamOptions struct {
	// Replicas is the stream's replication factor; 0 means 1 (the embedded server). A 3-node
	// cluster wants 3.
	Replicas int
	// GapWait is the relay's (see Relay.GapWait), which the duplicate window must outlast.
	GapWait time.Duration
	// SyncLag is the relay's (see Relay.SyncLag), which the duplicate window must outlast too.
	SyncLag time.Duration
	// MaxAge is how long the events stream keeps a message (JetStream's MaxAge, counted from when
	// the stream stored it); 0 keeps messages until the disk or an operator removes them. It is
	// deleted then whether or not every consumer has applied it: a consumer that is further
	// behind, or still retrying the message, never gets it — not applied, not dead-lettered. So it
	// must exceed the longest retry schedule, with its jitter, plus how far a consumer may fall
	// behind (CheckMaxAge). It must also be at least the duplicate window, which JetStream
	// requires: the relay's republish after a restart is recognised only while the first copy's
	// id is remembered.
	MaxAge time.Duration
}

// CheckMaxAge says why maxAge is not a safe MaxAge for the events stream of a relay with gapWait
// and syncLag whose consumers retry along the schedules given, or nil when it is (0, no limit,
// always is). A message is retried along its schedule, each pause up to 20 % longer (jitter),
// before it is dead-lettered; one deleted by age before then is lost without a dead letter.
func CheckMaxAge(maxAge, gapWait, syncLag time.Duration, schedules ...[]time.Duration) error {
	if maxAge == 0 {
		return nil
	}
	if maxAge < 0 {
		return fmt.Errorf("max age %v: want 0 (no limit) or a positive duration", maxAge)
	}
	if w := DuplicateWindow(gapWait, syncLag); maxAge < w {
		return fmt.Errorf("max age %v is shorter than the relay's duplicate window %v", maxAge, w)
	}
	for _, sched := range schedules {
		var span time.Duration
		for _, d := range sched {
			span += d
		}
		if need := span + span/5; maxAge <= need {
			return fmt.Errorf("max age %v would delete messages still being retried: a retry schedule spans up to %v with jitter",
				maxAge, need.Round(time.Second))
		}
	}
	return nil
}

// EnsureStream creates the events stream and the dead-letter stream (DLQStreamName), or updates
// them to this configuration.
func EnsureStream(ctx context.Context, js jetstream.JetStream, opts StreamOptions) (jetstream.Stream, error) {
	replicas := opts.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	if err := CheckMaxAge(opts.MaxAge, opts.GapWait, opts.SyncLag); err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       StreamName,
		Subjects:   []string{SubjectPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Duplicates: DuplicateWindow(opts.GapWait, opts.SyncLag),
		// Several servers on one cluster each update the stream at start: the last one's
		// MaxAge holds, so they must be given the same.
		MaxAge:   opts.MaxAge,
		Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	// The consumers dead-letter into it; created here so that no consumer runs without it.
	if _, err := ensureDLQStream(ctx, js, replicas); err != nil {
		return nil, err
	}
	return st, nil
}
