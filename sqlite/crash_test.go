package sqlite

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"boxoffice"
)

// crashEnv tells the test binary, started again by TestKilledAfterCommit, to be the process that
// commits and dies.
const crashEnv = "BOXOFFICE_SQLITE_CRASH_DB"

// TestKilledAfterCommit kills a process with SIGKILL right after Update returned, without
// Close, and finds the commit in the file: acknowledged means stored.
func TestKilledAfterCommit(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		ctx := context.Background()
		db, err := Open(ctx, path)
		if err != nil {
			os.Exit(3)
		}
		err = db.Update(ctx, func(tx boxoffice.Tx) error {
			if _, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 3, 0); err != nil || !ok {
				return err
			}
			return tx.InsertHold(ctx, testHold("hld_1", "a@x", base))
		})
		if err != nil {
			os.Exit(4)
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}

	path := filepath.Join(t.TempDir(), "box.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	putShow(t, db, testShow("gig", tier("ga", 10)))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledAfterCommit$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child process ended with %v, want killed by SIGKILL", err)
	}

	db, err = Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s := getShow(t, db, "gig"); s.Tiers[0].Held != 3 {
		t.Errorf("held after the crash = %d, want 3", s.Tiers[0].Held)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.GetHold(context.Background(), "hld_1")
		return err
	})
}
