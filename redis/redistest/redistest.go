// Package redistest starts throwaway redis-server processes for tests: each on a free loopback
// port, without persistence, in the test's temp dir, stopped when the test ends.
//
// A machine without redis-server skips those tests, unless BOXOFFICE_REQUIRE_SERVICES=1 (set by
// scripts/test once the binary is installed), where a missing or broken server fails them.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"boxoffice/internal/syncbuf"
)

// Server is one redis-server process started by a test.
type Server struct {
	// URL is the server's redis:// URL; Addr its host:port.
	URL, Addr string

	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd  // nil while stopped
	exited chan error // cmd's Wait result (Wait may be called once, by the goroutine start made)
}

// Start starts a redis-server and returns its redis:// URL; it stops with the test.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).URL
}

// StartN starts n independent redis-servers, as a Redlock needs; they stop with the test.
func StartN(t testing.TB, n int) []*Server {
	t.Helper()
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = StartServer(t)
	}
	return servers
}

// URLs returns the servers' URLs.
func URLs(servers []*Server) []string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL
	}
	return urls
}

// StartServer starts a redis-server and returns a handle to stop, kill or restart it; it stops
// with the test.
func StartServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: binary(t), dir: t.TempDir()}
	var err error
	// The port is free when picked but could be taken before the server binds it: try again.
	for range 5 {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.URL = "redis://" + s.Addr
	t.Cleanup(s.Kill)
	return s
}

// binary finds redis-server on PATH or in /usr/bin, or skips (fails, if services are required).
func binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if st, err := os.Stat("/usr/bin/redis-server"); err == nil && st.Mode()&0o111 != 0 {
		return "/usr/bin/redis-server"
	}
	const msg = "redistest: redis-server not found on PATH or at /usr/bin/redis-server (Debian: apt-get install redis-server)"
	if os.Getenv("BOXOFFICE_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg + "; BOXOFFICE_REQUIRE_SERVICES=1 forbids skipping")
	}
	t.Skip(msg)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the server on s.port and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// No RDB snapshots and no AOF: a restart loses everything, which tests of lost state rely on,
	// and nothing is written outside the temp dir.
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--logfile", "", "--loglevel", "warning")
	orphanGuard(cmd)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server on port %d exited: %v\n%s", s.port, err, out)
		default:
		}
		if ping(addr) == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d not ready after 10s\n%s", s.port, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// ping sends a PING in the RESP protocol and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 5s) and waits for it. Stopping a
// stopped server does nothing.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

// Kill kills the server at once (SIGKILL), as a crash would, and waits for it.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// Restart starts a stopped server again on the same port, empty: it kept nothing on disk. A
// running server is stopped first.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	// The old process's port can linger briefly; retry for a while.
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart: %v", err)
}
