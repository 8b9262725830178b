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
	fast := &Result{Name: "atomic on sqlite", Throughput: 6000, P99: 9 * time.Millisecond, PeakRSS: 150 << 20, Sold: TargetTickets}
	slow := &Result{Name: "atomic on sqlite", Throughput: 1000, P99: 70 * time.Millisecond, PeakRSS: 450 << 20, Sold: 5000}
	actorFast := &Result{Name: "actor on postgres", Throughput: 1500}
	actorSlow := &Result{Name: "actor on postgres", Throughput: 500}
	small := &Result{Name: "atomic on sqlite", Throughput: 6000, P99: time.Millisecond, PeakRSS: 60 << 20, Sold: 5000}

	const met, no, unknown = "met", "not met", "not measured"
	status := func(rep *Report) []string {
		var out []string
		for _, tg := range rep.Targets() {
			out = append(out, tg.Status)
		}
		return out
	}
	rep := func(rows ...*Result) *Report {
		return &Report{Noop: noop, PGLock: pg, Rows: rows, Default: "atomic on sqlite", Actor: "actor on postgres"}
	}
	for _, tc := range []struct {
		name string
		rep  *Report
		want []string // noop share, × FOR UPDATE, p99, RSS, actor × FOR UPDATE
	}{
		{"all met", rep(fast, actorFast), []string{met, met, met, met, met}},
		{"none met", rep(slow, actorSlow), []string{no, no, no, no, no}},
		// A small run under the memory bound says nothing about a 1,000,000-ticket sale.
		{"rss of a small run", rep(small, actorFast), []string{met, met, met, unknown, met}},
		{"no pg", &Report{Noop: noop, Rows: []*Result{fast}, Default: "atomic on sqlite", Actor: "actor on postgres"},
			[]string{met, unknown, met, met, unknown}},
		{"no rows", rep(), []string{unknown, unknown, unknown, unknown, unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status(tc.rep); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("statuses = %q, want %q", got, tc.want)
			}
		})
	}

	var md strings.Builder
	rep(slow, actorSlow).Markdown(&md)
	if !strings.Contains(md.String(), "### Speed targets") || strings.Count(md.String(), "| not met |") != 5 {
		t.Errorf("report lacks the targets table:\n%s", md.String())
	}
}
