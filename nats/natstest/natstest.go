// Package natstest starts a throwaway JetStream cluster of real nats-server processes for a test,
// so that tests can kill and restart its nodes as a crash would.
//
// The nats-server binary is built from the module the go.mod already requires (its root package
// is the server's main), once per version: it is cached under the user's cache directory and
// shared by every test binary and every later run. The nodes listen on free ports of 127.0.0.1
// only, keep their JetStream storage in the test's temp dir, and are killed when the test ends —
// by a cleanup or, should the test binary die without running it (a -timeout panic, a SIGKILL),
// by the kernel (each node gets SIGKILL when its parent goes).
//
// Where there is no Go toolchain to build the server with, Start skips the test, unless
// BOXOFFICE_REQUIRE_SERVICES=1 (as CI sets it), where it fails: a missing build must not pass for
// a green run.
package natstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RequireEnv is the environment variable that turns a missing Go toolchain from a skip into a
// failure when it is "1".
const RequireEnv = "BOXOFFICE_REQUIRE_SERVICES"

// serverModule is the module whose root package is nats-server's main.
const serverModule = "github.com/nats-io/nats-server/v2"

// Bounds on every wait, generous for a loaded 2-core machine: none is expected to be reached.
const (
	buildTimeout = 5 * time.Minute  // go list and a cold build of nats-server
	lockTimeout  = 6 * time.Minute  // another process's build of the same binary
	readyTimeout = 60 * time.Second // a cluster forming, or a restarted node catching up
	exitTimeout  = 10 * time.Second // a SIGKILLed process being reaped
)

// errNoToolchain is the failure to find the go command; Start skips on it.
var errNoToolchain = errors.New("the go command is not on PATH, so nats-server cannot be built")

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Cluster is a running JetStream cluster of nats-server processes, its nodes numbered from 0.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	nodes []*node
}

// node is one nats-server process: its ports and store stay the same across restarts.
type node struct {
	name    string // server_name, as stream and consumer infos name their leader
	conf    string // config file
	logPath string
	client  int
	route   int
	monitor int // HTTP monitoring, for /healthz

	mu     sync.Mutex
	proc   *os.Process   // nil while killed
	exited chan struct{} // closed when proc has exited
}

// Start builds nats-server if need be and starts an n-node JetStream cluster, returning once
// JetStream has a meta leader and can place a stream with a replica on every node (at most 5,
// JetStream's limit). The nodes are killed when t ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster of %d nodes", n)
	}
	bin := binary(t)
	c := &Cluster{t: t, bin: bin, dir: t.TempDir()}
	// Registered after TempDir, so it runs before the directory is removed: a node still
	// writing its store would make the removal fail.
	t.Cleanup(c.cleanup)

	// A free port is only free until someone takes it: pick them again if a node could not bind.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = c.launch(n); err == nil {
			break
		}
		c.killAll()
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	if err := c.waitReady(n); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return c
}

// URLs returns the nats:// URLs of every node, for a client that should fail over among them.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.URL(i)
	}
	return urls
}

// URL returns node i's nats:// URL.
func (c *Cluster) URL(i int) string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.nodes[i].client))
}

// Name returns node i's server name, as JetStream names the leaders and replicas it reports.
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Index returns the number of the node named name (see Name), or -1 when none is.
func (c *Cluster) Index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// Kill kills node i at once (SIGKILL), as a crash would, and waits until it is gone. Killing a
// killed node does nothing.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if err := c.nodes[i].kill(); err != nil {
		c.t.Fatalf("natstest: kill %s: %v", c.nodes[i].name, err)
	}
}

// Restart starts node i again, on the same ports and the same store, killing it first if it
// runs, and returns once it is healthy: it has rejoined the cluster and caught up with its
// streams and consumers.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if err := n.kill(); err != nil {
		c.t.Fatalf("natstest: kill %s: %v", n.name, err)
	}
	var err error
	// The killed process's ports are released with it, but another process may have taken one
	// since; there is no other port to move to (the other nodes route to this one), so retry.
	for attempt := 0; attempt < 20; attempt++ {
		if err = n.start(c.bin); !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("natstest: restart %s: %v", n.name, err)
	}
	if err := n.waitHealthy(time.Now().Add(readyTimeout)); err != nil {
		c.t.Fatalf("natstest: restart %s: %v", n.name, err)
	}
}

// launch writes the nodes' configs on newly picked ports and starts every node.
func (c *Cluster) launch(n int) error {
	ports, err := freePorts(3 * n)
	if err != nil {
		return err
	}
	c.nodes = make([]*node, n)
	for i := range c.nodes {
		c.nodes[i] = &node{
			name:   "n" + strconv.Itoa(i),
			client: ports[3*i], route: ports[3*i+1], monitor: ports[3*i+2],
		}
	}
	for i, nd := range c.nodes {
		nd.conf = filepath.Join(c.dir, nd.name+".conf")
		nd.logPath = filepath.Join(c.dir, nd.name+".log")
		// A failed attempt's log and store would mislead this one.
		_ = os.Remove(nd.logPath)
		_ = os.RemoveAll(filepath.Join(c.dir, nd.name))
		var routes []string
		for j, other := range c.nodes {
			if j != i {
				routes = append(routes, strconv.Quote("nats://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(other.route))))
			}
		}
		conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %s
}
cluster {
  name: natstest
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, strconv.Quote(nd.name), nd.client, nd.monitor, strconv.Quote(filepath.Join(c.dir, nd.name)), nd.route,
			strings.Join(routes, ", "))
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", nd.conf, err)
		}
	}
	for _, nd := range c.nodes {
		if err := nd.start(c.bin); err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits until every node is healthy and a stream replicated on min(n, 5) nodes can be
// created, which needs a meta leader that knows the peers.
func (c *Cluster) waitReady(n int) error {
	deadline := time.Now().Add(readyTimeout)
	for _, nd := range c.nodes {
		if err := nd.waitHealthy(deadline); err != nil {
			return err
		}
	}
	nc, err := natsgo.Connect(strings.Join(c.URLs(), ","), natsgo.Name("natstest"), natsgo.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	const probe = "NATSTEST_READY"
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: probe, Subjects: []string{"natstest.ready"}, Replicas: min(n, 5), Storage: jetstream.MemoryStorage,
		})
		if err == nil {
			err = js.DeleteStream(ctx, probe)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no stream could be placed on the cluster within %v: %w%s", readyTimeout, err, c.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanup kills every node and, when the test failed, logs the end of their logs.
func (c *Cluster) cleanup() {
	c.killAll()
	if c.t.Failed() {
		c.t.Logf("natstest: node logs:%s", c.logs())
	}
}

func (c *Cluster) killAll() {
	for _, nd := range c.nodes {
		if err := nd.kill(); err != nil {
			c.t.Errorf("natstest: kill %s: %v", nd.name, err)
		}
	}
}

// logs returns the last lines of every node's log.
func (c *Cluster) logs() string {
	var b strings.Builder
	for _, nd := range c.nodes {
		log, _ := os.ReadFile(nd.logPath)
		fmt.Fprintf(&b, "\n--- %s (%s)\n%s", nd.name, nd.logPath, tail(log))
	}
	return b.String()
}

var errAddrInUse = errors.New("address in use")

// start runs the node's process and waits until its client port accepts connections.
func (n *node) start(bin string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("%s is running", n.name)
	}
	// Appended to across restarts, so the log tells the node's whole story.
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Should the test binary die without its cleanups, the kernel kills the node.
		Pdeathsig: syscall.SIGKILL,
		// Its own process group: a Ctrl-C in the terminal reaches the test binary only, whose
		// death then takes the nodes along.
		Setpgid: true,
	}
	exited := make(chan struct{})
	started := make(chan error, 1)
	// Pdeathsig fires when the thread that started the child exits, not only the process, so
	// the child starts on a thread locked to a goroutine that lives as long as the child.
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return // the thread ends with the goroutine; there is no child to signal
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	n.proc, n.exited = cmd.Process, exited

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.client))
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-exited:
			n.proc, n.exited = nil, nil
			log, _ := os.ReadFile(n.logPath)
			if bytes.Contains(log, []byte("address already in use")) {
				return fmt.Errorf("%s: %w", n.name, errAddrInUse)
			}
			return fmt.Errorf("%s exited at start:\n%s", n.name, tail(log))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			n.proc, n.exited = nil, nil
			log, _ := os.ReadFile(n.logPath)
			return fmt.Errorf("%s did not accept connections within %v:\n%s", n.name, readyTimeout, tail(log))
		}
	}
}

// kill SIGKILLs the node's process, if it runs, and waits until it is reaped.
func (n *node) kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	_ = n.proc.Signal(syscall.SIGKILL)
	select {
	case <-n.exited:
	case <-time.After(exitTimeout):
		return fmt.Errorf("pid %d still there %v after SIGKILL", n.proc.Pid, exitTimeout)
	}
	n.proc, n.exited = nil, nil
	return nil
}

// waitHealthy polls the node's /healthz until it reports ok: JetStream is enabled, in contact
// with a meta leader, and the node's streams and consumers are current.
func (n *node) waitHealthy(deadline time.Time) error {
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.monitor)) + "/healthz"
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status + " " + strings.TrimSpace(body.String())
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(n.logPath)
			return fmt.Errorf("%s not healthy in time: %s\n%s", n.name, last, tail(log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns count distinct ports of 127.0.0.1 that nothing listened on a moment ago; the
// listeners are held together so that no two of them are the same.
func freePorts(count int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, count)
	for range count {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// binary returns the path of the nats-server binary, building it on the process's first call;
// it skips t (fails it, if services are required) when there is no toolchain to build with.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { binPath, buildErr = build() })
	if errors.Is(buildErr, errNoToolchain) {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("natstest: %v; %s=1 requires it", buildErr, RequireEnv)
		}
		t.Skipf("natstest: %v; skipping (set %s=1 to fail instead)", buildErr, RequireEnv)
	}
	if buildErr != nil {
		t.Fatalf("natstest: build nats-server: %v", buildErr)
	}
	return binPath
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// build builds nats-server at the version go.mod requires into the cache, unless a build of that
// version is there already, and returns its path. Concurrent test binaries (go test ./... runs
// packages in parallel) take turns under a lock file, so one builds and the others reuse it; the
// binary is built under a temporary name and renamed into place, so no one ever runs half of it.
func build() (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", errNoToolchain
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	// The test runs in its package's directory, inside the module: go list answers for its go.mod.
	out, err := exec.CommandContext(ctx, goCmd, "list", "-m",
		"-f", "{{.Version}}{{with .Replace}} {{.Path}} {{.Version}}{{end}}", serverModule).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w%s", serverModule, err, stderrOf(err))
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return "", fmt.Errorf("go list -m %s: no version", serverModule)
	}
	// A replacement by a local directory has no version: its source may have changed since the
	// cached build, so it is built every time.
	// (go list prints "<version> <dir>" for one, "<version> <module> <version>" for a module.)
	local := len(fields) == 2
	key := unsafeChars.ReplaceAllString(strings.Join(fields, "_"), "_")

	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "boxoffice-natstest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "nats-server-"+key+"-"+runtime.GOOS+"-"+runtime.GOARCH)

	unlock, err := lockFile(filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && !local {
		return path, nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	defer os.Remove(tmp) // gone after the rename; left only by a failed build
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", tmp, serverModule)
	if combined, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", serverModule, err, combined)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// lockFile takes an exclusive lock on path, waiting at most lockTimeout for another process to
// release it, and returns its release. The kernel releases it should the holder die.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stderrOf returns the stderr an *exec.ExitError captured, for an error message.
func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return "\n" + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// tail returns the last lines of a log, enough to show why a node failed.
func tail(log []byte) string {
	lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
