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
// next rows). The rows a target compares run next to each other, before the other strategies.
func TestCompareLeavesNothingBehind(t *testing.T) {
	pg := pgtest.Start(t)
	tmp, out := t.TempDir(), t.TempDir()
	cmd := exec.Command(binary, "bench", "--compare", "--requests", "40", "--buyers", "4", "--duration", "2m",
		"--strategies", "atomic,actor", "--pg", pg, "--out", out)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench --compare: %v\n%s", err, output)
	}
	var order []string
	for _, line := range strings.Split(string(output), "\n") {
		if row, ok := strings.CutPrefix(line, "bench: "); ok && !strings.HasPrefix(row, "no-op") {
			order = append(order, strings.SplitN(row, " (", 2)[0])
		}
	}
	want := []string{"actor on sqlite", "actor on sqlite, 16 shows", "actor on sqlite, sold out", "atomic on sqlite",
		"raw PostgreSQL SELECT … FOR UPDATE on one row", "actor on postgres", "actor on postgres, 16 shows", "atomic on postgres"}
	if got := strings.Join(order, " | "); !strings.Contains(got, strings.Join(want, " | ")) {
		t.Errorf("rows ran in the order\n  %s\nwant\n  %s", got, strings.Join(want, " | "))
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
