package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"boxoffice/internal/checkfor"
	"boxoffice/internal/syncbuf"
	"boxoffice/postgres/pgtest"
)

// binary is the boxoffice command built once for all tests, so they run the real server as a
// process: real port, real signals, real kill -9.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "boxoffice-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "boxoffice")
	args := []string{"build", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build boxoffice:", err)
		os.Exit(1)
	}
	code := m.Run()
	pgtest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// adminKey is the servers' admin key: --admin-key refuses one shorter than 32 characters.
const adminKey = "test-admin-key-0123456789abcdefghij"

// server is a running `boxoffice serve` process.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	URL  string
	Dir  string
	logs *syncbuf.Buffer
	done chan error
}

// urlRE finds the listening line of serve and payments-sim, not other lines that carry a URL.
var urlRE = regexp.MustCompile(`msg="[a-z ]+ serving" url=(http://127\.0\.0\.1:\d+)`)

// startServer runs `boxoffice serve` on a free loopback port over dir and waits until it listens.
func startServer(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	s := startProcess(t, "serve", append([]string{"--addr", "127.0.0.1:0", "--data-dir", dir, "--admin-key", adminKey}, args...)...)
	s.Dir = dir
	return s
}

// startProcess runs a subcommand of the binary that logs `url=…` once it listens (serve,
// payments-sim) and waits for that line; the process is killed when the test ends.
func startProcess(t *testing.T, sub string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{sub}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, logs: &syncbuf.Buffer{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.logs, line)
			if m := urlRE.FindStringSubmatch(line); m != nil && !sent {
				urlc <- m[1]
				sent = true
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() { s.kill() })
	select {
	case s.URL = <-urlc:
	case err := <-s.done:
		t.Fatalf("%s exited before listening: %v\n%s", sub, err, s.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start\n%s", sub, s.logs)
	}
	return s
}

// kill sends SIGKILL, as a crash would, and waits for the process to be gone.
func (s *server) kill() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
	}
}

// stop sends SIGTERM and returns the exit error.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return err
	case <-time.After(60 * time.Second):
		s.t.Fatal("server did not stop on SIGTERM")
		return nil
	}
}

// client talks to a server with one API key; every call is bounded in time.
type client struct {
	t    *testing.T
	base string
	key  string
	hc   *http.Client
}

func (s *server) client(key string) *client {
	return &client{t: s.t, base: s.URL, key: key, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}}
}

// reply is an HTTP answer with its body read.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("%d %s: %v", r.Status, r.Body, err)
	}
	return m
}

func (r *reply) code() string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(r.Body, &p)
	return p.Code
}

// do sends a request; body is JSON-encoded unless it is a string or []byte; headers come in pairs.
func (c *client) do(method, path string, body any, headers ...string) (*reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Add(headers[i], headers[i+1])
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// must is do that fails the test on a transport error or an unexpected status.
func (c *client) must(want int, method, path string, body any, headers ...string) *reply {
	c.t.Helper()
	r, err := c.do(method, path, body, headers...)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		c.t.Fatalf("%s %s: got %d %s, want %d", method, path, r.Status, r.Body, want)
	}
	return r
}

func (c *client) post(want int, path, key string, body any) *reply {
	c.t.Helper()
	return c.must(want, "POST", path, body, "Idempotency-Key", key)
}

// newClientKey makes a client-role key through the admin API.
func (s *server) newClientKey(t *testing.T) string {
	t.Helper()
	r := s.client(adminKey).post(201, "/v1/api-keys", fmt.Sprintf("mk-%d", time.Now().UnixNano()), map[string]string{"role": "client"})
	return r.json(t)["key"].(string)
}

func showBody(capacity, ttl int) map[string]any {
	return map[string]any{
		"name": "Night at the Opera", "starts_at": "2027-03-01T19:30:00Z", "hold_ttl_seconds": ttl,
		"tiers": []map[string]any{{"id": "ga", "name": "General admission", "capacity": capacity, "price": map[string]any{"amount": 4500, "currency": "EUR"}}},
	}
}

// runCLI runs the binary with args and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// eventually polls cond, bounded, instead of sleeping a guessed while.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	checkfor.Until(t, 30*time.Second, 50*time.Millisecond, what, cond)
}
