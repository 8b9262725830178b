package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"boxoffice"
	"boxoffice/bench"
	"boxoffice/cluster"
	"boxoffice/console"
	bohttp "boxoffice/http"
	"boxoffice/internal/keylimit"
	"boxoffice/inventory"
	bonats "boxoffice/nats"
	"boxoffice/postgres"
	"boxoffice/rpc"
	"boxoffice/sale"
	"boxoffice/shop"
	"boxoffice/sqlite"
	"boxoffice/waitroom"
)

// storeFlags are the flags that say where the data lives; serve and verify share them.
type storeFlags struct {
	dataDir string
	db      string
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "./boxoffice-data", "directory of the embedded store, the payment simulator's ledger and the admin key")
	fs.StringVar(&f.db, "db", "sqlite", `store: "sqlite" (a file under --data-dir) or a postgres:// URL`)
}

func (f *storeFlags) dbPath() string { return filepath.Join(f.dataDir, "boxoffice.db") }

func (f *storeFlags) ledgerPath() string { return filepath.Join(f.dataDir, "payments-ledger.jsonl") }

// open opens the store the flags name.
func (f *storeFlags) open(ctx context.Context) (boxoffice.Store, string, error) {
	switch {
	case f.db == "sqlite":
		st, err := sqlite.Open(ctx, f.dbPath())
		return st, "sqlite " + f.dbPath(), err
	case strings.HasPrefix(f.db, "postgres://"), strings.HasPrefix(f.db, "postgresql://"):
		st, err := postgres.Open(ctx, f.db)
		return st, "postgres " + redactURL(f.db), err
	default:
		return nil, "", fmt.Errorf(`--db: want "sqlite" or a postgres:// URL, got %q`, f.db)
	}
}

type serveFlags struct {
	storeFlags
	addr           string
	inventory      string
	nats           string
	natsReplicas   int
	redis          string
	smtp           string
	mailDir        string
	leaseTTL       time.Duration
	payments       string
	adminKey       string
	syncBudget     time.Duration
	idempotencyTTL time.Duration
	maxQuantity    int
	maxInFlight    int
	// rateLimit and rateBurst bound each API key's requests (--rate-limit, --rate-burst).
	rateLimit float64
	rateBurst int
	logLevel  string
	debugAddr string
	// debugAllowRemote lets --debug-addr listen beyond loopback.
	debugAllowRemote bool
	memoryLimit      byteSize
	// webhooksAllowPrivate lets webhook endpoints point at private and loopback addresses.
	webhooksAllowPrivate bool
	// shopTrustEmail signs buyers in on the buyer's page with the address as typed, no code.
	shopTrustEmail bool
	// shopCodesPerMinute bounds the sign-in codes the buyer's page mails (shop.Options).
	shopCodesPerMinute int
	// webhookRetries and emailRetries are the consumers' retry schedules.
	webhookRetries, emailRetries durationList
	// metricsAddr serves /metrics on a listener of its own instead of the API port.
	metricsAddr string
	// natsListen exposes the embedded NATS server to clients such as the nats CLI;
	// natsAllowRemote lets it listen beyond loopback.
	natsListen      string
	natsAllowRemote bool
	// eventsMaxAge is the events stream's retention (0: none).
	eventsMaxAge time.Duration
}

func serve(args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("boxoffice serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.storeFlags.register(fs)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on (port 0 picks a free one)")
	fs.StringVar(&f.inventory, "inventory", inventory.Default, "race-condition strategy: "+strings.Join(inventory.Names(moreStrategies(nil)), ", "))
	fs.StringVar(&f.nats, "nats", "embedded", `event bus: "embedded" or a nats:// URL list`)
	fs.IntVar(&f.natsReplicas, "nats-replicas", 0, "replicas of the events stream, 1 to 5; 0 (auto): 1 on the embedded server, min(3, number of --nats URLs) on a cluster")
	fs.StringVar(&f.redis, "redis", "", "Redis URL(s), comma-separated, for the redis-lock strategy (3 or more: Redlock)")
	fs.StringVar(&f.smtp, "smtp", "", "send email over SMTP: smtp://[user:pass@]host[:port] (STARTTLS when offered) or smtps://… (TLS); ?from=ADDR sets the sender, ?insecure=1 allows AUTH without TLS to a non-loopback host; unset writes .eml files under <data-dir>/mail/")
	fs.StringVar(&f.mailDir, "mail-dir", "", "write receipts as .eml files into this folder when --smtp is unset; several servers on one database point it at one shared folder (each receipt is a file named by its event id, written by rename, so a redelivery on any server rewrites the same file); unset: <data-dir>/mail")
	fs.DurationVar(&f.leaseTTL, "lease-ttl", cluster.DefaultTTL, "with several servers on one PostgreSQL: how long a server owns a show (and the background work) without renewing; a killed owner's shows answer 503 for about this long")
	fs.StringVar(&f.payments, "payments", "sim", `payment provider: "sim" (built-in simulator) or a Stripe-compatible base URL`)
	fs.StringVar(&f.adminKey, "admin-key", "", "admin API key(s), each at least 32 characters; a comma-separated list rotates: the first is current, the others are still accepted; unset: generated on first start into <data-dir>/admin.key")
	fs.DurationVar(&f.syncBudget, "payment-sync-budget", sale.DefaultSyncBudget, "how long confirm/purchase wait for a payment before answering 202")
	fs.DurationVar(&f.idempotencyTTL, "idempotency-ttl", sale.DefaultIdempotencyTTL, "how long idempotency keys are remembered (must exceed any client's retry window)")
	fs.IntVar(&f.maxQuantity, "max-quantity", sale.DefaultMaxQuantity, "most tickets in one hold")
	fs.IntVar(&f.maxInFlight, "max-in-flight", 1024, "requests served at once before shedding load with 503")
	fs.Float64Var(&f.rateLimit, "rate-limit", 0, "requests a second each API key may send, over REST and gRPC together, before 429 rate_limited (0: no limit; a sales channel's key carries all its buyers)")
	fs.IntVar(&f.rateBurst, "rate-burst", 0, "requests a key may send at once above --rate-limit (0: twice the rate)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	f.webhookRetries = bonats.DefaultWebhookBackoff
	f.emailRetries = bonats.DefaultEmailBackoff
	fs.Var(&f.webhookRetries, "webhook-retries", "pauses before each retry of a failed webhook delivery (comma-separated durations); each pause gets ±20% jitter (0.8 to 1.2 times it) and is lengthened to a receiver's Retry-After, up to 1h; one more failure after the last makes it a dead letter")
	fs.Var(&f.emailRetries, "email-retries", "pauses before each retry of a failed email (comma-separated durations); each pause gets ±20% jitter (0.8 to 1.2 times it); one more failure after the last makes it a dead letter")
	fs.IntVar(&f.shopCodesPerMinute, "shop-codes-per-minute", 600, "sign-in codes the buyer's page (/shop) mails a minute from this server, to all addresses together (in bursts of up to as many); more answer 429 rate_limited, so that typing addresses cannot make the shop mail a list")
	fs.BoolVar(&f.shopTrustEmail, "shop-trust-email", false, "sign buyers in on the buyer's page (/shop) with the address they type, without the code emailed to it (a demo or a test; anyone may then buy, and queue, as anyone)")
	fs.BoolVar(&f.webhooksAllowPrivate, "webhooks-allow-private", false, "allow webhook endpoints on private and loopback addresses (a partner on this network, a local test receiver)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9090 or :9090 for a scraper on another host) and no longer on --addr; unset: /metrics is on --addr")
	fs.StringVar(&f.natsListen, "nats-listen", "", "let clients such as the nats CLI reach the embedded NATS server on this loopback address (e.g. 127.0.0.1:4222); it has no authentication, so anyone who reaches it can read every event and delete the streams; unset: in-process only")
	fs.BoolVar(&f.natsAllowRemote, "nats-allow-remote", false, "let --nats-listen listen on an address other than loopback (unauthenticated: every event, buyers' addresses included, and the streams are open to whoever reaches it)")
	fs.DurationVar(&f.eventsMaxAge, "events-max-age", bonats.DefaultEventsMaxAge, "how long the events stream keeps a message (0: until deleted by hand); older ones are deleted whether or not every consumer has them, so a consumer further behind (an endpoint down or retrying longer) loses them without a dead letter: it must exceed the longest of --webhook-retries and --email-retries with their jitter (checked), and the longest outage to ride out; it is always above the relay's duplicate window (about 1 minute, 2 on PostgreSQL), within which a republish after a restart is dropped as a duplicate. Every server on one NATS cluster must be given the same. The store's outbox keeps every event regardless (GET /v1/feed)")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "serve Go's pprof profiles on this loopback address (e.g. 127.0.0.1:6060); unset: off")
	fs.BoolVar(&f.debugAllowRemote, "debug-allow-remote", false, "let --debug-addr listen on an address other than loopback (profiles show the server's memory, secrets included)")
	f.memoryLimit = defaultMemoryLimit
	fs.Var(&f.memoryLimit, "memory-limit", "soft limit of the Go heap (e.g. 128MiB, 1GiB; 0: none): the collector runs more often near it instead of letting the heap double; the GOMEMLIMIT environment variable, when set, wins")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	applyMemoryLimit(int64(f.memoryLimit))
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "--log-level: %v\n", err)
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := f.unsupported(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	keepFilesPrivate()
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return err
	}
	unlock, err := lockDataDir(f.dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := privateTree(f.dataDir); err != nil {
		return fmt.Errorf("make the data dir private: %w", err)
	}
	adminKey, previousAdminKeys, err := f.loadAdminKey(log)
	if err != nil {
		return err
	}
	// Listening before the store opens: the port is taken or not before anything starts, and a
	// server among several registers the address it really listens on (port 0 included).
	// Connections wait in the backlog until serving starts.
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	var metricsLn net.Listener // taken now too, so that a port in use stops the start
	if f.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", f.metricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		defer metricsLn.Close()
	}
	type opened struct {
		store boxoffice.Store
		where string
	}
	st, err := openReleasing(f.dataDir, f.db == "sqlite", log, func() (opened, error) {
		store, where, err := f.open(ctx)
		return opened{store, where}, err
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	store, where := st.store, st.where
	defer store.Close()
	keepReserve(f.dataDir, log)
	// Several servers may share a PostgreSQL database: this one registers, refuses to run beside
	// peers in a mode that cannot be shared, and owns shows by leases. Deferred before the
	// strategy, so that its leases end after the writers have stopped.
	var node *cluster.Node
	var router *cluster.Router
	if cs, ok := store.(boxoffice.ClusterStore); ok {
		node, err = cluster.Start(ctx, cluster.Config{Store: cs, Addr: ln.Addr().String(), Instance: f.instance(),
			NATS: f.natsMode(), Payments: f.paymentsMode(), Mail: f.mailMode(), Inventory: f.inventory, TTL: f.leaseTTL, Logger: log})
		if err != nil {
			return err
		}
		defer node.Close()
		router = cluster.NewRouter(node, f.syncBudget, f.maxInFlight)
	}
	invOpts := inventory.Options{Logger: log, More: moreStrategies(splitList(f.redis))}
	if node != nil {
		invOpts.Fence = node.Fence
	}
	inv, err := inventory.New(f.inventory, store, invOpts)
	if err != nil {
		return err
	}
	defer inv.Close()
	pay, err := f.openPayments(log)
	if err != nil {
		return fmt.Errorf("payments: %w", err)
	}
	defer pay.Close()

	saleCfg := sale.Config{
		Store: store, Inventory: inv, Payments: pay, Renderer: bohttp.Renderer{},
		SyncBudget: f.syncBudget, IdempotencyTTL: f.idempotencyTTL, MaxQuantity: f.maxQuantity,
		AdminKey: adminKey, PreviousAdminKeys: previousAdminKeys, ExclusiveStore: f.db == "sqlite", AllowPrivateWebhooks: f.webhooksAllowPrivate,
		Logger: log,
	}
	if node != nil {
		saleCfg.Router, saleCfg.Background = router, node.Leads
	}
	// Waiting rooms live in the store; every server joins, admits and checks admissions alike.
	// Automatic admission asks the sale how many tickets are left, so the rooms start after it.
	var rooms *waitroom.Service
	var svc *sale.Service
	if ws, ok := store.(boxoffice.WaitRoomStore); ok {
		if rooms, err = waitroom.New(ctx, waitroom.Config{Store: ws, Logger: log,
			Available: func(ctx context.Context, id string) (int, error) { return svc.TicketsLeft(ctx, id) }}); err != nil {
			return fmt.Errorf("waiting rooms: %w", err)
		}
		defer rooms.Close()
		saleCfg.Admission = rooms.Admitted
	}
	svc = sale.New(saleCfg)
	if err := svc.Start(ctx); err != nil {
		return fmt.Errorf("recover state: %w", err)
	}
	defer svc.Close()
	if rooms != nil {
		rooms.Start(true)
	}

	// One registry for both transports and the async side, so that one scrape of /metrics
	// (served by the REST handler, or on --metrics-addr) shows them all; the Go runtime and
	// process collectors are what bohttp adds to its own.
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registry.MustRegister(idempotencyCollectors(svc)...)
	if rooms != nil {
		registry.MustRegister(rooms.Collector())
	}
	if node != nil {
		registry.MustRegister(node.Collectors()...)
	}

	// The async side: JetStream, the outbox relay and the email consumer. Deferred after svc, so
	// it stops before the store closes and after HTTP has drained.
	gapWait := f.gapWait()
	var leader func() bool // one relay among several servers: the background lease's holder
	if node != nil {
		leader = node.Leads
	}
	async, err := bonats.StartAsync(bonats.AsyncConfig{NATS: f.nats, DataDir: f.dataDir, Store: store, GapWait: gapWait,
		Replicas: f.streamReplicas(), SMTP: f.smtp, MailDir: f.mailDir, Leader: leader, AllowPrivateWebhooks: f.webhooksAllowPrivate,
		Listen: f.natsListen, EventsMaxAge: f.eventsMaxAge, Registry: registry,
		Tuning: &bonats.AsyncTuning{WebhookBackoff: f.webhookRetries, EmailBackoff: f.emailRetries}, Logger: log})
	if err != nil {
		return fmt.Errorf("async side: %w", err)
	}
	defer async.Stop()
	if router != nil {
		if err := router.Attach(async.Conn(), svc); err != nil {
			return err
		}
		defer router.Detach()
	}
	log.Info("async side started", "nats", async.Where, "stream", bonats.StreamName, "email", async.Mail,
		"webhooks_allow_private", f.webhooksAllowPrivate, "events_max_age", f.eventsMaxAge)
	if u := async.ClientURL(); u != "" {
		log.Info("embedded NATS listening for clients such as the nats CLI", "nats_url", u)
	}

	// REST and the protobuf API (gRPC, gRPC-Web, Connect) share the port; HTTP/2 without TLS
	// (prior knowledge, as gRPC clients speak it) is on next to HTTP/1.1.
	burst := f.rateBurst
	if burst <= 0 {
		burst = int(math.Ceil(2 * f.rateLimit))
	}
	limit := keylimit.New(f.rateLimit, burst) // one budget per key over both transports
	clusterStatus := f.clusterStatus(node, ln.Addr().String())
	checkpoint := console.RelayCheckpoint(store, bonats.DefaultRelayName)
	relayPosition := func(ctx context.Context) (int64, error) {
		// The leading relay's own position is live; its stored checkpoint trails it by the
		// embedded server's sync lag, and a follower has only the checkpoint.
		if l := async.RelayLag(); l.Leading && l.RelayPosition > 0 {
			return l.RelayPosition, nil
		}
		return checkpoint(ctx)
	}
	conOpts := console.Options{DeadLetters: async, Cluster: clusterStatus, Logger: log,
		RelayPosition: relayPosition, Consumers: consoleConsumers(async)}
	if rooms != nil {
		conOpts.WaitRooms, conOpts.PauseWaitRoom = rooms.Rooms, rooms.Pause
	}
	con := console.New(svc, conOpts)
	defer con.Close()
	// The buyer's page sells as a channel of its own, in process; its cookies are signed with a
	// secret kept in the store, so that a buyer signed in on one server is on every server.
	// A buyer is signed in with a code emailed to the address they type (shop.Mailer), which is
	// what makes a waiting room's "one place per buyer" hold.
	shopOpts := shop.Options{Logger: log, CodesPerMinute: f.shopCodesPerMinute}
	if !f.shopTrustEmail {
		shopOpts.Mailer = async.Mailer()
	}
	if ws, ok := store.(boxoffice.WaitRoomStore); ok {
		shopOpts.Secrets = ws
	}
	buyers, err := shop.New(ctx, svc, shopWaitRoom(rooms), shopOpts)
	if err != nil {
		return fmt.Errorf("buyer's page: %w", err)
	}
	handler := rpc.Mount(rpc.NewHandler(svc, rpc.Options{Logger: log, MaxInFlight: f.maxInFlight, Registry: registry, RateLimit: limit,
		WaitRoom: httpWaitRoom(rooms)}),
		bohttp.NewHandler(svc, bohttp.Options{Logger: log, MaxInFlight: f.maxInFlight, Registry: registry, RateLimit: limit,
			NoMetrics: metricsLn != nil, DeadLetters: async, Ready: async.Ready, Cluster: clusterStatus, Console: con,
			Shop: buyers, WaitRoom: httpWaitRoom(rooms)}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		// The API's headers are a key, an Idempotency-Key and a content type: 32 KiB is ample,
		// and net/http's default (1 MiB) lets every connection hold a megabyte for nothing.
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// The console's live streams never end by themselves; Shutdown would wait for them. Nor do
	// the waiting room's ticket streams.
	srv.RegisterOnShutdown(con.Close)
	if rooms != nil {
		srv.RegisterOnShutdown(rooms.Close)
	}
	if f.debugAddr != "" {
		if err := serveDebug(f.debugAddr, log); err != nil {
			return err
		}
	}
	if metricsLn != nil {
		stopMetrics := serveMetrics(metricsLn, registry, log)
		defer stopMetrics()
	}
	log.Info("boxoffice serving", "url", "http://"+ln.Addr().String(), "console", "http://"+ln.Addr().String()+"/console",
		"shop", "http://"+ln.Addr().String()+"/shop/{show_id}",
		"data_dir", f.dataDir, "store", where,
		"inventory", inv.Name(), "payments", f.paymentsName(), "sync_budget", f.syncBudget)
	if err := serveUntilDone(ctx, srv, ln, log); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// unsupported rejects settings whose parts are not in this build, or that are malformed, before
// anything starts, rather than ignore them and leave an operator believing, say, that emails go
// over SMTP.
func (f *serveFlags) unsupported() error {
	if f.smtp != "" {
		// The error never contains the password: it can be printed as it is.
		if _, err := bonats.ParseSMTP(f.smtp); err != nil {
			return fmt.Errorf("--smtp: %w", err)
		}
	}
	switch {
	case f.nats != "embedded" && !isNATSURLList(f.nats):
		return fmt.Errorf(`--nats %q: want "embedded" or a comma-separated list of nats:// URLs`, f.nats)
	case f.natsReplicas < 0 || f.natsReplicas > 5:
		return fmt.Errorf("--nats-replicas %d: want 1 to 5 (JetStream's most), or 0 for auto", f.natsReplicas)
	case f.natsReplicas > 1 && f.nats == "embedded":
		// The embedded server is a single node: JetStream would refuse the stream at start.
		return fmt.Errorf("--nats-replicas %d needs a --nats cluster; the embedded server is one node", f.natsReplicas)
	case f.redis != "" && f.inventory != "redis-lock":
		return fmt.Errorf("--redis is used by the redis-lock strategy only; add --inventory redis-lock")
	case f.payments != "sim" && !isPaymentsURL(f.payments):
		return fmt.Errorf(`--payments %q: want "sim" (the built-in simulator) or a Stripe-compatible http(s) base URL`, f.payments)
	case f.rateLimit < 0 || f.rateBurst < 0 || math.IsNaN(f.rateLimit) || math.IsInf(f.rateLimit, 0):
		return fmt.Errorf("--rate-limit and --rate-burst must be 0 (no limit, twice the rate) or positive")
	case f.leaseTTL < 300*time.Millisecond:
		return fmt.Errorf("--lease-ttl %v: want at least 300ms (a heartbeat renews leases every third of it)", f.leaseTTL)
	case f.smtp != "" && f.mailDir != "":
		return fmt.Errorf("--mail-dir is where receipts go without --smtp; give one or the other")
	case f.syncBudget <= 0 || f.idempotencyTTL <= 0 || f.maxQuantity < 1 || f.maxInFlight < 1:
		return fmt.Errorf("--payment-sync-budget, --idempotency-ttl, --max-quantity and --max-in-flight must be positive")
	case f.shopCodesPerMinute < 1:
		return fmt.Errorf("--shop-codes-per-minute %d: want at least 1 (--shop-trust-email mails no codes at all)", f.shopCodesPerMinute)
	case f.natsListen != "" && f.nats != "embedded":
		return fmt.Errorf("--nats-listen exposes the embedded NATS server; with --nats %s, point the nats CLI at those URLs", redactURLList(f.nats))
	case f.natsListen != "" && !f.natsAllowRemote && !loopbackAddr(f.natsListen):
		// The embedded server has no authentication: whoever reaches it reads every event and
		// can delete the streams.
		return fmt.Errorf("--nats-listen %s: not a loopback address; the embedded NATS server has no authentication, so it listens on loopback only unless --nats-allow-remote", f.natsListen)
	case f.debugAddr != "" && !f.debugAllowRemote && !loopbackAddr(f.debugAddr):
		// A heap profile holds whatever is in memory: keys, buyers' addresses.
		return fmt.Errorf("--debug-addr %s: not a loopback address; profiles show the server's memory, so they are served on loopback only unless --debug-allow-remote", f.debugAddr)
	case f.idempotencyTTL < sale.MinIdempotencyTTL(f.syncBudget):
		// A key must outlive the request it guards and the client's retries of it; one that
		// expires while they are under way lets a retry make a second order and a second charge.
		return fmt.Errorf("--idempotency-ttl %v: want at least %v (a minute more than a request's lease, --payment-sync-budget + 10s); it must exceed any client's retry window",
			f.idempotencyTTL, sale.MinIdempotencyTTL(f.syncBudget))
	}
	if err := bonats.CheckMaxAge(f.eventsMaxAge, f.gapWait(), f.syncLag(), f.webhookRetries, f.emailRetries); err != nil {
		return fmt.Errorf("--events-max-age: %w", err)
	}
	_, _, err := parseAdminKeys(f.adminKey)
	return err
}

// gapWait is the relay's gap wait on the store --db names: PostgreSQL numbers events at insert,
// so a gap may be in flight; SQLite numbers them in commit order, so a gap is final.
func (f *serveFlags) gapWait() time.Duration {
	if f.db == "sqlite" {
		return 0
	}
	return bonats.DefaultGapWait
}

// syncLag is the relay's sync lag: the embedded server syncs on a timer, a cluster's ack is as
// durable as its replicas.
func (f *serveFlags) syncLag() time.Duration {
	if f.nats == "embedded" {
		return bonats.EmbeddedSyncLag
	}
	return 0
}

// redactURLList is a --nats URL list fit for an error message: no passwords.
func redactURLList(v string) string {
	urls := splitList(v)
	for i, u := range urls {
		urls[i] = redactURL(u)
	}
	return strings.Join(urls, ",")
}

// idempotencyCollectors are the sale's idempotency counters for Prometheus.
func idempotencyCollectors(svc *sale.Service) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "boxoffice_idempotency_replays_total",
			Help: "Requests answered with the stored answer of their Idempotency-Key (a retry), over REST and gRPC, counted by the server that answered.",
		}, func() float64 { r, _ := svc.IdempotencyStats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "boxoffice_idempotency_in_progress_total",
			Help: "Requests answered 409 (gRPC: aborted) because the first request with their Idempotency-Key was still being worked on.",
		}, func() float64 { _, n := svc.IdempotencyStats(); return float64(n) }),
	}
}

// serveMetrics serves reg's /metrics on ln (--metrics-addr) until the returned stop, which lets a
// scrape under way finish first.
func serveMetrics(ln net.Listener, reg *prometheus.Registry, log *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", bohttp.MetricsHandler(reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("metrics served", "metrics_url", "http://"+ln.Addr().String()+"/metrics")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics listener stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
}

// maxHeaderBytes bounds a request's header block (net/http answers 431 past it).
const maxHeaderBytes = 32 << 10

// loopbackAddr reports whether a host:port listens on loopback only ("localhost" included; an
// empty host is every interface).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && bench.LoopbackHost(host)
}

// minAdminKeyLen is the shortest admin key accepted: a key anyone could guess or brute-force
// guards nothing, and the generated ones are longer.
const minAdminKeyLen = 32

// parseAdminKeys splits --admin-key: the current key first, then the previous ones still accepted
// while clients move to the current one. Every key must be at least minAdminKeyLen characters;
// the error names the position of a short one, never the key, so it can be logged.
func parseAdminKeys(v string) (current string, previous []string, err error) {
	if v == "" {
		return "", nil, nil
	}
	for i, k := range strings.Split(v, ",") {
		k = strings.TrimSpace(k)
		if len(k) < minAdminKeyLen {
			return "", nil, fmt.Errorf("--admin-key: key %d of the list is %d characters; an admin key must be at least %d (too short to be secret)", i+1, len(k), minAdminKeyLen)
		}
		if i == 0 {
			current = k
		} else {
			previous = append(previous, k)
		}
	}
	return current, previous, nil
}

// streamReplicas is the events stream's replication factor: --nats-replicas, or when it is 0, 1 on
// the embedded server and on a single URL, else 3 (or 2 on two URLs), which survives the loss of
// a node. The URLs are only where to connect (a client learns the other nodes from the first), so
// a short list of a bigger cluster gets fewer replicas than it could have: set the flag there.
func (f *serveFlags) streamReplicas() int {
	if f.natsReplicas > 0 {
		return f.natsReplicas
	}
	if f.nats == "embedded" {
		return 1
	}
	return min(3, len(splitList(f.nats)))
}

// isNATSURLList says whether v is a comma-separated list of nats:// (or tls://) URLs.
func isNATSURLList(v string) bool {
	urls := splitList(v)
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "nats" && p.Scheme != "tls") || p.Host == "" {
			return false
		}
	}
	return len(urls) > 0
}

// loadAdminKey returns the admin key and the previous ones still accepted: the flag's, else the
// one in <data-dir>/admin.key, else a new one written there (mode 0600) and logged this once.
func (f *serveFlags) loadAdminKey(log *slog.Logger) (string, []string, error) {
	if f.adminKey != "" {
		return parseAdminKeys(f.adminKey)
	}
	path := filepath.Join(f.dataDir, "admin.key")
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", nil, err
	}
	key := "bo_admin_" + boxoffice.RandomString(40)
	if err := writeFileSync(path, []byte(key+"\n"), 0o600); err != nil {
		return "", nil, fmt.Errorf("write admin key: %w", err)
	}
	log.Info("generated the admin key; it is shown only this once and kept in "+path, "admin_key", key)
	return key, nil, nil
}

// writeFileSync writes a file with mode perm (also when it existed with a wider one) and syncs
// it, so a key that was logged is also on disk.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if err := fh.Chmod(perm); err != nil {
		fh.Close()
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// privateTree narrows what is under dir, dir included, to its owner: directories 0700, files 0600.
// Files an earlier version or another umask left readable by others (SQLite's were 0644) are
// private from this start on; symbolic links are left alone.
func privateTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Chmod(path, 0o700)
		case d.Type().IsRegular():
			return os.Chmod(path, 0o600)
		}
		return nil
	})
}

// lockDataDir takes an exclusive lock on the data dir, so two servers never share one SQLite store
// and the one that holds it may end leases left by a killed predecessor.
func lockDataDir(dir string) (func(), error) {
	fh, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		return nil, fmt.Errorf("data dir %s is in use by another boxoffice serve", dir)
	}
	return func() { fh.Close() }, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// serveDebug serves net/http/pprof on its own listener, never on the API port: profiles show
// internals and cost CPU, so they are for an operator who asked for them.
func serveDebug(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	log.Info("pprof profiles served", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}

// redactURL drops the password from a URL for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// serveUntilDone serves ln until ctx ends (SIGINT/SIGTERM), then drains: requests in flight are
// answered, for up to 30 seconds, before it returns. A failure to serve is returned at once.
func serveUntilDone(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// durationList is a flag of comma-separated durations, e.g. "5s,30s,2m".
type durationList []time.Duration

// String implements flag.Value.
func (d *durationList) String() string {
	parts := make([]string, len(*d))
	for i, v := range *d {
		parts[i] = v.String()
	}
	return strings.Join(parts, ",")
}

// Set implements flag.Value: a non-empty list of positive durations of at most a day each.
func (d *durationList) Set(v string) error {
	var out []time.Duration
	for _, s := range splitList(v) {
		p, err := time.ParseDuration(s)
		if err != nil || p <= 0 || p > 24*time.Hour {
			return fmt.Errorf("%q: want positive durations up to 24h, e.g. 5s,30s,2m", s)
		}
		out = append(out, p)
	}
	if len(out) == 0 || len(out) > 50 {
		return fmt.Errorf("want 1 to 50 durations, e.g. 5s,30s,2m")
	}
	*d = out
	return nil
}

// consoleConsumers adapts the async side's consumer list to the console's rows: the console
// does not import the bus.
func consoleConsumers(async *bonats.Async) func(context.Context) ([]console.Consumer, error) {
	return func(ctx context.Context) ([]console.Consumer, error) {
		list, err := async.Consumers(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]console.Consumer, len(list))
		for i, c := range list {
			out[i] = console.Consumer{Name: c.Name, Endpoint: c.Endpoint, Pending: c.Pending, AckPending: c.AckPending,
				Redelivered: c.Redelivered, DeadLetters: c.DeadLetters, LastError: c.LastError, LastErrorAt: c.LastErrorAt,
				Failing: c.Failing}
		}
		return out, nil
	}
}

// httpWaitRoom is rooms for the HTTP handler: a nil *waitroom.Service must be a nil interface,
// which leaves the routes out.
func httpWaitRoom(rooms *waitroom.Service) bohttp.WaitRoom {
	if rooms == nil {
		return nil
	}
	return rooms
}

// shopWaitRoom is rooms for the buyer's page: a nil *waitroom.Service must be a nil interface,
// which sells every show without a queue.
func shopWaitRoom(rooms *waitroom.Service) shop.WaitRoom {
	if rooms == nil {
		return nil
	}
	return rooms
}
