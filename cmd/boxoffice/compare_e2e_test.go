package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"boxoffice/postgres/pgtest"
)

// TestCompareLeavesNothingBehind runs a small `bench --compare` with PostgreSQL rows and checks
// what it leaves: the report, and neither a row's data dir (they are removed when the comparison
// ends, not row by row, so that no row pays for the one before's cleanup) nor a row's database
// (each is dropped once its row is measured, so that its autovacuum does not run beside the
// next rows).
func TestCompareLeavesNothingBehind(t *testing.T) {
	pg := pgtest.Start(t)
	tmp, out := t.TempDir(), t.TempDir()
	cmd := exec.Command(binary, "bench", "--compare", "--requests", "40", "--buyers", "4", "--duration", "2m",
		"--strategies", "actor", "--pg", pg, "--out", out)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench --compare: %v\n%s", err, output)
	}
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"actor on sqlite", "actor on postgres", "actor on postgres, 16 shows", "PostgreSQL SELECT … FOR UPDATE (baseline)"} {
		if !strings.Contains(string(report), "| "+row) {
			t.Errorf("the report has no row %q:\n%s", row, report)
		}
	}
	left, err := filepath.Glob(filepath.Join(tmp, "boxoffice-bench-*"))
	if err != nil || len(left) > 0 {
		t.Errorf("data dirs left behind: %v (%v)", left, err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'bench\_%'`)
	if err != nil {
		t.Fatal(err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(dbs) > 0 {
		t.Errorf("databases left behind: %v (%v)", dbs, err)
	}
}
