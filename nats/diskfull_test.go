package nats

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"boxoffice/internal/checkfor"
)

// TestJetStreamRecoversFromAFullDisk puts the embedded server's files on a small tmpfs, fills
// it, and has orders confirmed: nats-server fails to store their events, keeps that write error
// on the stream and answers no publish after it. Once space is freed, the async side reloads
// JetStream, says it is not ready meanwhile, and every receipt is written. It needs to mount a
// file system (root); elsewhere it is skipped.
func TestJetStreamRecoversFromAFullDisk(t *testing.T) {
	disk := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small file system here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })
	e := newEnv(t)
	mail := t.TempDir()
	a, err := StartAsync(AsyncConfig{NATS: "embedded", DataDir: disk, MailDir: mail, Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	for range 1 << 12 {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	_ = f.Close()
	orders := e.confirmOrders(t, 3)
	checkfor.Until(t, 30*time.Second, 50*time.Millisecond, "JetStream to fail a write", func() bool {
		return a.storeFailed.Load() != 0 || !a.srv.srv.JetStreamEnabled()
	})
	if err := a.Ready(context.Background()); err == nil {
		t.Error("Ready while JetStream cannot write")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The relay waits 30 s for an ack the broken stream never sends, then publishes again.
	checkfor.Until(t, 90*time.Second, 100*time.Millisecond, "a receipt for every order", func() bool {
		return len(mailFiles(t, mail)) == len(orders)
	})
	checkfor.Until(t, 10*time.Second, 100*time.Millisecond, "Ready again", func() bool {
		return a.Ready(context.Background()) == nil
	})
}
