// Package pgtest starts a real PostgreSQL server for the tests of one test binary, from the
// binaries installed on the machine, and hands each test a fresh, empty database on it.
//
// The server starts on the first Start of the process and serves every test after it: starting
// one takes about a second, creating a database a few milliseconds. It listens on a free port of
// 127.0.0.1 only, keeps its data and its unix socket in a temporary directory, and is stopped when
// the tests end — by Main, by a signal, or, should the test binary die without running either, by
// the kernel (the server gets SIGQUIT when its parent goes) and by the next run, which removes
// what a dead run left behind.
//
// Where PostgreSQL is not installed, Start skips the test, unless BOXOFFICE_REQUIRE_SERVICES=1
// (as CI sets it), where it fails: a missing install must not pass for a green run.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv is the environment variable that turns a missing PostgreSQL install from a skip into
// a failure when it is "1".
const RequireEnv = "BOXOFFICE_REQUIRE_SERVICES"

// dirPrefix names the temporary directories of servers, so that a later run can find those of a
// run that died.
const dirPrefix = "boxoffice-pgtest-"

// ownerFile, in a server's directory, holds the pid of the test process that owns the server.
const ownerFile = "owner.pid"

// errNoBinaries is the failure to find PostgreSQL's binaries; Start skips on it.
var errNoBinaries = errors.New("PostgreSQL binaries (initdb, postgres) not found: looked in `pg_config --bindir` and /usr/lib/postgresql/*/bin")

var (
	mu       sync.Mutex
	once     sync.Once
	srv      *server
	startErr error
	dbSeq    atomic.Int64
)

// Start returns the URL of a new, empty database on the process's PostgreSQL server, starting the
// server on first use. The database is dropped when t ends; close what uses it in a cleanup
// registered after Start (cleanups run last first). Use Main in the package's TestMain so that the
// server stops when the tests end.
func Start(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		s, err := start()
		mu.Lock()
		srv, startErr = s, err
		mu.Unlock()
	})
	mu.Lock()
	s, err := srv, startErr
	mu.Unlock()
	if errors.Is(err, errNoBinaries) {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("pgtest: %v; %s=1 requires them (install Debian's postgresql package)", err, RequireEnv)
		}
		t.Skipf("pgtest: %v; skipping (set %s=1 to fail instead)", err, RequireEnv)
	}
	if err != nil {
		t.Fatalf("pgtest: start PostgreSQL: %v", err)
	}
	name := "test_" + strconv.FormatInt(dbSeq.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.admin(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends connections a test left open, so that they cannot keep the database.
		if err := s.admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil && !s.isStopped() {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s.url(name)
}

// Main runs the tests of m, stops the server and exits with the tests' code. Call it from the
// TestMain of every package that uses Start:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the server, if one runs, and removes its files; Start fails afterwards. Main calls
// it; a TestMain of its own calls it after m.Run. A Stop while another is in progress (a signal's)
// waits for that one to finish, so that the process does not exit with the server half stopped.
func Stop() {
	mu.Lock()
	s := srv
	if startErr == nil {
		startErr = errors.New("the server was stopped")
	}
	mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// server is one running PostgreSQL.
type server struct {
	dir    string // temporary: data/, the unix socket, the log, owner.pid
	port   int
	proc   *os.Process
	exited chan struct{} // closed when the postmaster has exited
	sigs   chan os.Signal

	mu       sync.Mutex // guards conn and stopped
	conn     *pgx.Conn  // to the postgres database, for CREATE and DROP DATABASE
	stopped  bool
	stopOnce sync.Once
}

func (s *server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

func (s *server) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// admin runs one statement on the admin connection, connecting first if need be. CREATE and DROP
// DATABASE cannot run in a transaction and so are sent as simple queries (Exec without arguments).
func (s *server) admin(ctx context.Context, sql string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("server stopped")
	}
	if s.conn == nil || s.conn.IsClosed() {
		c, err := pgx.Connect(ctx, s.url("postgres"))
		if err != nil {
			return fmt.Errorf("connect to the admin database: %w", err)
		}
		s.conn = c
	}
	if _, err := s.conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// binDir finds the directory of initdb and postgres: pg_config's, else the newest Debian one.
func binDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); has(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first: 9.6 < 10 < 15 numerically, not as strings.
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	return "", errNoBinaries
}

// start creates a data directory and starts a server on it.
func start() (*server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	// PostgreSQL refuses to run as root; root runs it as the postgres user, which must then own
	// the directory and be able to reach it (root's own TMPDIR may be private to root).
	var cred *syscall.Credential
	base := os.TempDir()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL must run as the postgres user: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		base = "/tmp"
	}
	removeStale(base)

	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create server directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	// The owner's pid goes in first, so that a concurrent removeStale never takes a live run's
	// directory for a dead one's.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, fmt.Errorf("write owner pid: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("give the server directory to postgres: %w", err)
		}
	}
	data := filepath.Join(dir, "data")

	// --no-sync and trust: the cluster lives for one test run on loopback.
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "--no-sync", "--auth=trust",
		"--username=postgres", "--encoding=UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir // the postgres user may not be allowed into the current directory
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	// A free port is only free until someone takes it: try again on another if the server
	// could not bind.
	for attempt := 1; ; attempt++ {
		s, err := launch(bin, dir, data, cred)
		if err == nil {
			ok = true
			return s, nil
		}
		if attempt == 3 || !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
}

var errAddrInUse = errors.New("address in use")

// launch starts the postmaster on a free port and waits until it accepts connections.
func launch(bin, dir, data string, cred *syscall.Credential) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		// Durability is not under test here, and a crash loses nothing of value: without
		// fsync the server commits at memory speed, which keeps the stampede tests quick.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		// Stampede tests open a pool per store and many stores per process.
		"-c", "max_connections=300",
		// Tests that provoke deadlocks find out sooner; it changes when, not whether.
		"-c", "deadlock_timeout=100ms",
		"-c", "log_min_messages=warning",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// Should this process die without stopping the server (a test timeout's panic, a
		// SIGKILL), the kernel sends the server SIGQUIT, PostgreSQL's immediate shutdown.
		Pdeathsig: syscall.SIGQUIT,
		// Its own process group: a Ctrl-C in the terminal reaches the test binary, which stops
		// the server in order, rather than the server directly.
		Setpgid: true,
	}
	s := &server{dir: dir, port: port, exited: make(chan struct{})}

	// Pdeathsig fires when the thread that started the child exits, not only the process, so
	// the child starts on a thread locked to a goroutine that lives as long as the server.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return // the thread ends with the goroutine; there is no child to signal
		}
		s.proc = cmd.Process
		started <- nil
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.url("postgres"))
		if err == nil {
			s.conn = c
			break
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(logPath)
			if bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("already in use")) {
				return nil, errAddrInUse
			}
			return nil, fmt.Errorf("postgres exited at start:\n%s", tail(log))
		case <-ctx.Done():
			s.stop()
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres did not accept connections within a minute: %v\n%s", err, tail(log))
		case <-time.After(20 * time.Millisecond):
		}
	}

	// Interrupted tests never reach Main's Stop: stop the server, then die of the signal as
	// the process would have without this handler.
	s.sigs = make(chan os.Signal, 1)
	signal.Notify(s.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig, ok := <-s.sigs
		if !ok {
			return
		}
		Stop()
		signal.Reset(sig)
		_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
	}()
	return s, nil
}

// stop shuts the server down (SIGQUIT: immediate, nothing of it is kept), waits for it and
// removes its directory. Every call returns only once that is done.
func (s *server) stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		if s.conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.conn.Close(ctx)
			cancel()
		}
		s.mu.Unlock()
		if s.sigs != nil {
			signal.Stop(s.sigs)
			close(s.sigs)
		}
		if s.proc != nil {
			_ = s.proc.Signal(syscall.SIGQUIT)
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				_ = s.proc.Kill()
				<-s.exited
			}
		}
		_ = os.RemoveAll(s.dir)
	})
}

// freePort returns a port of 127.0.0.1 that nothing listened on a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// removeStale stops the servers and removes the directories of runs whose test process is gone
// (killed before it could clean up). A directory without an owner yet is left alone for a
// minute: its run may be starting.
func removeStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			if fi, serr := os.Stat(dir); serr != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		} else if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && alive(pid) {
			continue
		}
		if pid := postmasterPID(dir); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			for i := 0; i < 100 && alive(pid); i++ {
				time.Sleep(50 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = os.RemoveAll(dir)
	}
}

// postmasterPID returns the pid in the data directory's postmaster.pid if that process is alive
// and is the postgres of that directory (a pid may have been reused by now), else 0.
func postmasterPID(dir string) int {
	data := filepath.Join(dir, "data")
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(data)) {
		return 0
	}
	return pid
}

// alive reports whether a process with pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// tail returns the last lines of a log, enough to show why a server did not start.
func tail(log []byte) string {
	lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
