package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"boxoffice/internal/checkfor"
)

// smallDisk mounts a tmpfs of size bytes at a new directory for the test, or skips the test
// where this process may not mount (not root, no CAP_SYS_ADMIN): a full disk is what this test
// is about, and a file system of its own is the only honest way to fill one.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small file system here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the disk at dir is full, and returns a func that frees it.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	for range 1 << 16 { // at most 4 GiB: the tmpfs is far smaller
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	_ = f.Close()
	return func() {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDiskFull fills the data dir's disk mid-sale: purchases are refused with a retryable 503
// (not a 500, and not stored against their keys), /readyz says the store cannot commit, and once
// space is freed the same keys buy, receipts go out for every order, and verify passes.
func TestDiskFull(t *testing.T) {
	disk := smallDisk(t, "48m")
	dir := filepath.Join(disk, "data")
	s := startServer(t, dir)
	admin := s.client(adminKey)
	admin.must(201, "PUT", "/v1/shows/full", showBody(1000, 60))
	cl := s.client(s.newClientKey(t))
	buy := func(k string) *reply {
		r, err := cl.do("POST", "/v1/purchases", map[string]any{"show_id": "full", "tier_id": "ga", "quantity": 1,
			"buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}}, "Idempotency-Key", k)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 5 {
		if r := buy(fmt.Sprintf("before-%d", i)); r.Status != 201 {
			t.Fatalf("purchase before the disk fills: %d %s", r.Status, r.Body)
		}
	}
	free := fill(t, disk)
	refused := 0
	for i := range 5 {
		r := buy(fmt.Sprintf("full-%d", i))
		switch r.Status {
		case 201: // the WAL may still have had room for one
		case 503:
			refused++
			if r.code() != "overloaded" || r.Header.Get("Retry-After") == "" {
				t.Fatalf("refusal on a full disk: %d %s %v", r.Status, r.Body, r.Header)
			}
		default:
			t.Fatalf("purchase on a full disk: %d %s", r.Status, r.Body)
		}
	}
	if refused == 0 {
		t.Fatal("every purchase succeeded on a full disk")
	}
	eventually(t, "readyz to say the store does not commit", func() bool {
		r, err := admin.do("GET", "/readyz", nil)
		return err == nil && r.Status == 503 && strings.Contains(string(r.Body), "does not commit writes")
	})
	free()
	// Ready again needs the store's probe to commit and JetStream to take writes again, which on
	// a loaded machine has taken more than eventually's 30 s.
	last := ""
	checkfor.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		r, err := admin.do("GET", "/readyz", nil)
		switch {
		case err != nil:
			last = err.Error()
		case r.Status != 200:
			last = fmt.Sprintf("%d %s", r.Status, r.Body)
		default:
			return nil
		}
		return fmt.Errorf("readyz not ok again: %s\n%s", last, s.logs)
	})
	// The refused keys were not stored against: the same keys buy now.
	for i := range 5 {
		if r := buy(fmt.Sprintf("full-%d", i)); r.Status != 201 {
			t.Fatalf("retry after space came back: %d %s", r.Status, r.Body)
		}
	}
	orders := listOrders(t, cl, "full")
	if len(orders) != 10 {
		t.Fatalf("%d orders, want 10", len(orders))
	}
	allReceipts := func() bool { receipts, _ := mailbox(t, dir); return len(receipts) == len(orders) }
	// The relay waits 30 s for the ack a stream with a failed write never sends, then publishes
	// again once JetStream is reloaded: room for that, and a loaded machine.
	deadline := time.Now().Add(120 * time.Second)
	for !allReceipts() {
		if time.Now().After(deadline) {
			receipts, _ := mailbox(t, dir)
			t.Fatalf("%d receipts for %d orders after space came back\n%s", len(receipts), len(orders), s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, s.logs)
	}
	if code, out := runCLI(t, "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("verify: %d\n%s", code, out)
	}
}

// TestStartOnFullDisk: a server restarted on a full disk frees its disk-space reserve, says so,
// and starts: it answers reads, sells on the reserve's space, and verify passes. Without the
// reserve SQLite cannot open its shared-memory file and serve exits at start.
func TestStartOnFullDisk(t *testing.T) {
	disk := smallDisk(t, "64m")
	dir := filepath.Join(disk, "data")
	s := startServer(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "reserve")); err != nil {
		t.Fatalf("no disk-space reserve after a start: %v", err)
	}
	admin := s.client(adminKey)
	admin.must(201, "PUT", "/v1/shows/degraded", showBody(100, 60))
	key := s.newClientKey(t)
	purchase := map[string]any{"show_id": "degraded", "tier_id": "ga", "quantity": 1,
		"buyer": map[string]string{"email": "b@example.com"}, "payment": map[string]string{"token": "tok_ok"}}
	s.client(key).post(201, "/v1/purchases", "before", purchase)
	if err := s.stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, s.logs)
	}
	// The shared-memory file goes with a clean stop; the full disk has no room to make it again.
	_ = os.Remove(filepath.Join(dir, "boxoffice.db-shm"))
	fill(t, disk)

	s = startServer(t, dir)
	if !strings.Contains(s.logs.String(), "freed the 16 MiB disk-space reserve") {
		t.Fatalf("the start on a full disk does not say it runs on the reserve:\n%s", s.logs)
	}
	cl := s.client(key)
	if tier := cl.must(200, "GET", "/v1/shows/degraded", nil).json(t)["tiers"].([]any)[0].(map[string]any); tier["sold"] != 1.0 {
		t.Fatalf("tier after the start on a full disk: %v", tier)
	}
	cl.post(201, "/v1/purchases", "after", purchase)
	if err := s.stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, s.logs)
	}
	if code, out := runCLI(t, "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("verify: %d\n%s", code, out)
	}
}
