package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	bonats "boxoffice/nats"
	"boxoffice/nats/natstest"
)

// clusterE2EWait bounds each wait of the cluster test: an election after a SIGKILL takes seconds,
// and an event whose publish or ack the dead node swallowed is retried after the relay's ack
// timeout (30 s) or the consumer's AckWait (5 s).
const clusterE2EWait = 90 * time.Second

// TestClusterReceiptsExactlyOnce runs `boxoffice serve --nats url1,url2,url3` against a 3-node
// JetStream cluster, buys tickets over HTTP from several clients, SIGKILLs the node that leads
// the events stream mid-sale, buys more with the node down, brings it back, and cancels one
// order: every order ends with exactly one receipt, the cancelled one also with one notice, and
// the stream was created with 3 replicas (--nats-replicas' auto for three URLs).
func TestClusterReceiptsExactlyOnce(t *testing.T) {
	cluster := natstest.Start(t, 3)
	dir := t.TempDir()
	s := startServer(t, dir, "--nats", strings.Join(cluster.URLs(), ","))
	s.client(adminKey).must(201, "PUT", "/v1/shows/cluster", showBody(100000, 60))
	cl := s.client(s.newClientKey(t))

	nc, err := bonats.Connect(cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// streamInfo waits out an election for the stream's info, which names its leader.
	streamInfo := func() *jetstream.StreamInfo {
		t.Helper()
		deadline := time.Now().Add(clusterE2EWait)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := js.Stream(ctx, bonats.StreamName)
			var info *jetstream.StreamInfo
			if err == nil {
				info, err = st.Info(ctx)
			}
			cancel()
			if err == nil && info.Cluster != nil && cluster.Index(info.Cluster.Leader) >= 0 {
				return info
			}
			if time.Now().After(deadline) {
				t.Fatalf("no stream info with a leader after %v: %v", clusterE2EWait, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if r := streamInfo().Config.Replicas; r != 3 {
		t.Errorf("the events stream has %d replicas, want 3 (auto for three --nats URLs)", r)
	}

	// Buyers run until stopped; sold counts the purchases answered 201.
	var sold atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := cl.do("POST", "/v1/purchases", map[string]any{"show_id": "cluster", "tier_id": "ga", "quantity": 1,
					"buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}},
					"Idempotency-Key", fmt.Sprintf("cluster-%d-%d", w, i))
				if err == nil && r.Status == 201 {
					sold.Add(1)
				}
			}
		})
	}
	stopBuying := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopBuying()
	waitSold := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(clusterE2EWait)
		for sold.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d purchases after %v, want %d", sold.Load(), clusterE2EWait, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	waitSold(30)
	leader := cluster.Index(streamInfo().Cluster.Leader)
	cluster.Kill(leader)
	t.Logf("killed the stream leader %s after %d purchases", cluster.Name(leader), sold.Load())
	// Sales do not depend on the bus: they go on at once, and their events wait in the outbox.
	waitSold(sold.Load() + 30)
	cluster.Restart(leader)
	waitSold(sold.Load() + 10)
	stopBuying()

	orders := listOrders(t, cl, "cluster")
	var cancelled string
	for id, st := range orders {
		if st == "confirmed" {
			cancelled = id
			break
		}
	}
	if cancelled == "" {
		t.Fatalf("no confirmed order among %d", len(orders))
	}
	cl.must(200, "POST", "/v1/orders/"+cancelled+"/cancel", nil, "Idempotency-Key", "cluster-cancel")
	orders[cancelled] = "cancelled"

	deadline := time.Now().Add(clusterE2EWait)
	for {
		receipts, notices := mailbox(t, dir)
		if len(receipts) == len(orders) && notices[cancelled] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d orders have a receipt of %d, the cancelled one %d notices\n%s",
				clusterE2EWait, len(receipts), len(orders), notices[cancelled], s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d orders", len(orders))
	checkMailbox(t, dir, orders, cancelled)
	if err := s.stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, s.logs)
	}
}

// serveRefusal runs serve with args (and env, NAME=value, when set) on a new data dir, expecting it
// to refuse them and exit; it returns the exit code and the output, and fails the test if serve
// is still running after 30 s.
func serveRefusal(t *testing.T, args []string, env string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, args...)...)
	cmd.Env = os.Environ()
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	done := make(chan struct{})
	var out []byte
	go func() { out, _ = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("serve %v %s did not refuse its settings: it ran\n%s", args, env, out)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestNATSReplicasFlag: --nats-replicas (and BOXOFFICE_NATS_REPLICAS) outside 0..5, or above 1
// on the single-node embedded server, is refused before anything starts; 0 picks the replicas
// from the URL list.
func TestNATSReplicasFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"--nats-replicas", "6", "--nats", "nats://127.0.0.1:1"}, want: "--nats-replicas 6"},
		{args: []string{"--nats-replicas", "-1", "--nats", "nats://127.0.0.1:1"}, want: "--nats-replicas -1"},
		{args: []string{"--nats-replicas", "3"}, want: "embedded server is one node"},
		{env: "BOXOFFICE_NATS_REPLICAS=9", args: []string{"--nats", "nats://127.0.0.1:1"}, want: "--nats-replicas 9"},
	} {
		code, out := serveRefusal(t, tc.args, tc.env)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("serve %v %s: exit %d, output %q; want a failure naming %q", tc.args, tc.env, code, out, tc.want)
		}
	}

	for _, tc := range []struct {
		nats     string
		replicas int
		want     int
	}{
		{"embedded", 0, 1},
		{"nats://a:4222", 0, 1},
		{"nats://a:4222,nats://b:4222", 0, 2},
		{"nats://a:4222, nats://b:4222 ,nats://c:4222", 0, 3},
		{"nats://a:4222,nats://b:4222,nats://c:4222,nats://d:4222,nats://e:4222", 0, 3},
		{"nats://a:4222", 5, 5},
	} {
		f := serveFlags{nats: tc.nats, natsReplicas: tc.replicas}
		if got := f.streamReplicas(); got != tc.want {
			t.Errorf("--nats %q --nats-replicas %d: %d replicas, want %d", tc.nats, tc.replicas, got, tc.want)
		}
	}
}
