package bench

import (
	"strings"
	"testing"
	"time"
)

// TestTargets checks that each target is judged from its own row and baseline: met exactly when
// the figure is on the right side of the bound, and never met when what it needs was not run.
func TestTargets(t *testing.T) {
	noop := &Result{Name: "noop", Throughput: 10000}
	pg := &Result{Name: "pg", Throughput: 100}
	const def, defPG, many, soldOut = "atomic on sqlite", "atomic on postgres", "atomic on postgres, 16 shows", "atomic on sqlite, sold out"
	fast := &Result{Name: def, Throughput: 6000, P99: 9 * time.Millisecond, PeakRSS: 90 << 20, Sold: TargetTickets}
	okay := &Result{Name: def, Throughput: 3500, P99: 20 * time.Millisecond, PeakRSS: 150 << 20, Sold: TargetTickets}
	slow := &Result{Name: def, Throughput: 1000, P99: 70 * time.Millisecond, PeakRSS: 450 << 20, Sold: 5000}
	small := &Result{Name: def, Throughput: 3500, P99: 20 * time.Millisecond, PeakRSS: 60 << 20, Sold: 5000}
	pgFast, pgSlow := &Result{Name: defPG, Throughput: 1500}, &Result{Name: defPG, Throughput: 200}
	actorBest := &Result{Name: "actor on postgres", Throughput: 250} // best of the slow ones
	manyFast, manySlow := &Result{Name: many, Throughput: 1600}, &Result{Name: many, Throughput: 150}
	manyOK := &Result{Name: many, Throughput: 360}
	manyBelowOne := &Result{Name: many, Throughput: 1400} // ≥ 2× FOR UPDATE, but slower than one show
	soFast, soSlow := &Result{Name: soldOut, Throughput: 9000}, &Result{Name: soldOut, Throughput: 2000}

	const aim, met, no, unknown = "met, and its aim", "met", "not met", "not measured"
	status := func(rep *Report) []string {
		var out []string
		for _, tg := range rep.Targets() {
			out = append(out, tg.Status)
		}
		return out
	}
	rep := func(rows ...*Result) *Report {
		return &Report{Noop: noop, PGLock: pg, Rows: rows, Default: def, DefaultPG: defPG, ManyShowsPG: many, SoldOut: soldOut}
	}
	for _, tc := range []struct {
		name string
		rep  *Report
		want []string // noop share, best pg, many shows pg, p99, sold out, RSS
	}{
		{"all aims", rep(fast, pgFast, manyFast, soFast), []string{aim, aim, aim, aim, aim, aim}},
		{"musts only", rep(okay, &Result{Name: defPG, Throughput: 350}, manyOK, &Result{Name: soldOut, Throughput: 6000}), []string{met, met, met, met, met, met}},
		{"none met", rep(slow, pgSlow, actorBest, manySlow, soSlow), []string{no, no, no, no, no, no}},
		{"many shows slower than one", rep(okay, pgFast, manyBelowOne, soFast), []string{met, aim, no, met, aim, met}},
		{"rss of a small run", rep(small, pgFast, manyFast, soFast), []string{met, aim, aim, met, aim, unknown}},
		{"no pg", &Report{Noop: noop, Rows: []*Result{fast, soFast}, Default: def, DefaultPG: defPG, ManyShowsPG: many, SoldOut: soldOut},
			[]string{aim, unknown, unknown, aim, aim, aim}},
		{"no rows", rep(), []string{unknown, unknown, unknown, unknown, unknown, unknown}},
		// The refusals' own rate judges the sold-out row when it was measured, however the
		// purchases before them slowed the whole row.
		{"refusals fast, row slow", rep(okay, pgFast, manyFast, &Result{Name: soldOut, Throughput: 2000, SoldOutRate: 9000}), []string{met, aim, aim, met, aim, met}},
		{"refusals slow, row fast", rep(okay, pgFast, manyFast, &Result{Name: soldOut, Throughput: 9000, SoldOutRate: 2000}), []string{met, aim, aim, met, no, met}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status(tc.rep); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("statuses = %q, want %q", got, tc.want)
			}
		})
	}
	if got := rep(slow, pgSlow, actorBest).bestPG(); got != actorBest {
		t.Errorf("best postgres row = %v, want the actor row", got)
	}

	var md strings.Builder
	rep(slow, pgSlow, manySlow, soSlow).Markdown(&md)
	if !strings.Contains(md.String(), "### Speed targets") || strings.Count(md.String(), "| not met |") != 6 {
		t.Errorf("report lacks the targets table:\n%s", md.String())
	}
}
