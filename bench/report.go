package bench

import (
	"fmt"
	"html"
	"io"
	"strings"
	"time"
)

// Report is a comparison: every measured run, read against the baselines of the same run.
type Report struct {
	Title    string
	Setup    string // what every row did: buyers, purchases, mode, machine
	Noop     *Result
	PGLock   *Result // nil when no PostgreSQL was given
	Rows     []*Result
	Failures []string // runs that could not be measured, with why
	// Default names the row of the default strategy on SQLite (e.g. "atomic on sqlite"), the
	// row most targets are read from; DefaultPG the default's one-show PostgreSQL row.
	Default, DefaultPG string
	// ManyShowsPG names the default's PostgreSQL row on ManyShows shows, and SoldOut the row of
	// a stampede whose capacity is far below its requests (nearly every answer a refusal).
	ManyShowsPG, SoldOut string
}

// The product's speed targets (64 connections, durable commits), each a bound that must hold and
// an aim beyond it.
const (
	TargetNoopShare, AimNoopShare       = 0.3, 0.5  // the default on SQLite, one hot show, × the no-op handler
	TargetBestPG, AimBestPG             = 3.0, 10.0 // the best strategy on PostgreSQL, one hot show, × FOR UPDATE
	TargetManyShowsPG, AimManyShowsPG   = 2.0, 5.0  // the default on PostgreSQL over ManyShows shows, × FOR UPDATE
	TargetP99, AimP99                   = 25 * time.Millisecond, 10 * time.Millisecond
	TargetSoldOutShare, AimSoldOutShare = 0.5, 0.8             // refusals of a sold-out stampede, × the no-op handler
	TargetRSS, AimRSS                   = 200 << 20, 100 << 20 // server peak RSS for a TargetTickets sale
	TargetTickets                       = 1_000_000
	// ManyShows is how many shows the many-shows rows spread their buyers over.
	ManyShows        = 16
	statusMet        = "met"
	statusAimMet     = "met, and its aim"
	statusNotMet     = "not met"
	statusUnmeasured = "not measured"
)

// Target is one speed target and where a comparison found it.
type Target struct {
	Goal     string
	Must     string // the bound that must hold
	Aim      string // the aim beyond it
	Measured string
	Status   string // "met", "met, and its aim", "not met" or "not measured"
}

// row returns the row named name, nil when it is not in the report.
func (rep *Report) row(name string) *Result {
	for _, r := range rep.Rows {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// bestPG is the fastest one-show PostgreSQL row: every "<strategy> on postgres" row.
func (rep *Report) bestPG() *Result {
	var best *Result
	for _, r := range rep.Rows {
		if strings.HasSuffix(r.Name, " on postgres") && (best == nil || r.Throughput > best.Throughput) {
			best = r
		}
	}
	return best
}

// Targets reads the report against the speed targets. A target whose row or baseline was not
// run (no --pg, a failed row) is "not measured", never met.
func (rep *Report) Targets() []Target {
	var out []Target
	// judge adds a target measured as x against a must and an aim, where more is better (or less,
	// when lower is set).
	judge := func(goal, must, aim, measured string, x, need, want float64, lower bool) {
		t := Target{Goal: goal, Must: must, Aim: aim, Measured: measured, Status: statusNotMet}
		meets := func(bound float64) bool { return (!lower && x >= bound) || (lower && x <= bound) }
		switch {
		case meets(want):
			t.Status = statusAimMet
		case meets(need):
			t.Status = statusMet
		}
		out = append(out, t)
	}
	missing := func(goal, must, aim, what string) {
		out = append(out, Target{Goal: goal, Must: must, Aim: aim, Measured: "no " + what + " in this run", Status: statusUnmeasured})
	}
	times := func(x float64) string { return fmt.Sprintf("%.2g×", x) }
	// share is a target of row r against base (no-op handler or FOR UPDATE baseline).
	share := func(goal string, r, base *Result, baseName, what string, need, want float64) {
		if r == nil || base == nil || base.Throughput == 0 {
			missing(goal, "≥ "+times(need), times(want), what)
			return
		}
		x := r.Throughput / base.Throughput
		judge(goal, "≥ "+times(need), times(want), fmt.Sprintf("%.2f× (%.0f vs %.0f/s %s)", x, r.Throughput, base.Throughput, baseName), x, need, want, false)
	}
	def := rep.row(rep.Default)
	share(rep.Default+", one hot show, × no-op handler", def, rep.Noop, "no-op", "default row or no-op baseline", TargetNoopShare, AimNoopShare)
	best := rep.bestPG()
	bestGoal := "best strategy on postgres, one hot show, × FOR UPDATE baseline"
	if best != nil {
		bestGoal += " (" + best.Name + ")"
	}
	share(bestGoal, best, rep.PGLock, "FOR UPDATE", "postgres row or FOR UPDATE baseline (--pg)", TargetBestPG, AimBestPG)

	manyGoal := fmt.Sprintf("%s, × FOR UPDATE baseline, and not slower than one show", rep.ManyShowsPG)
	many, one := rep.row(rep.ManyShowsPG), rep.row(rep.DefaultPG)
	if many == nil || one == nil || rep.PGLock == nil || rep.PGLock.Throughput == 0 {
		missing(manyGoal, "≥ "+times(TargetManyShowsPG), times(AimManyShowsPG), "many-shows or one-show postgres row or FOR UPDATE baseline (--pg)")
	} else {
		x := many.Throughput / rep.PGLock.Throughput
		measured := fmt.Sprintf("%.2f× (%.0f vs %.0f/s FOR UPDATE; one show %.0f/s)", x, many.Throughput, rep.PGLock.Throughput, one.Throughput)
		if many.Throughput < one.Throughput {
			x = 0 // slower than one show fails the target whatever the ratio
		}
		judge(manyGoal, "≥ "+times(TargetManyShowsPG), times(AimManyShowsPG), measured, x, TargetManyShowsPG, AimManyShowsPG, false)
	}

	p99Goal := rep.Default + ", p99 at the run's buyers"
	if def == nil {
		missing(p99Goal, "≤ "+ms(TargetP99)+" ms", ms(AimP99)+" ms", "default row")
	} else {
		judge(p99Goal, "≤ "+ms(TargetP99)+" ms", ms(AimP99)+" ms", ms(def.P99)+" ms", float64(def.P99), float64(TargetP99), float64(AimP99), true)
	}
	// The refusals' rate is the answers after the last ticket sold; the row's throughput also
	// counts the purchases that sold the tickets, a twentieth of its requests but a good part
	// of a short row's time.
	soGoal := rep.SoldOut + ", refusals × no-op handler"
	if so := rep.row(rep.SoldOut); so == nil || so.SoldOutRate == 0 || rep.Noop == nil || rep.Noop.Throughput == 0 {
		share(soGoal, so, rep.Noop, "no-op", "sold-out row or no-op baseline", TargetSoldOutShare, AimSoldOutShare)
	} else {
		x := so.SoldOutRate / rep.Noop.Throughput
		judge(soGoal, "≥ "+times(TargetSoldOutShare), times(AimSoldOutShare),
			fmt.Sprintf("%.2f× (%.0f refusals/s after the last sale vs %.0f/s no-op; the row overall %.0f/s)", x, so.SoldOutRate, rep.Noop.Throughput, so.Throughput),
			x, TargetSoldOutShare, AimSoldOutShare, false)
	}

	rssGoal := fmt.Sprintf("server peak RSS, a %d-ticket sale", TargetTickets)
	mb := func(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
	switch {
	case def == nil || def.PeakRSS == 0:
		missing(rssGoal, "≤ "+mb(TargetRSS), mb(AimRSS), "peak RSS of the default row")
	case def.PeakRSS <= TargetRSS && def.Sold < TargetTickets:
		// A small run under the bound says nothing about a 1,000,000-ticket sale.
		out = append(out, Target{Goal: rssGoal, Must: "≤ " + mb(TargetRSS), Aim: mb(AimRSS),
			Measured: fmt.Sprintf("%.0f MB after %d tickets; run `boxoffice bench --requests %d --duration 30m` for the full sale", float64(def.PeakRSS)/(1<<20), def.Sold, TargetTickets),
			Status:   statusUnmeasured})
	default:
		// Over the bound already with fewer tickets: more would not bring it under.
		judge(rssGoal, "≤ "+mb(TargetRSS), mb(AimRSS), fmt.Sprintf("%.0f MB after %d tickets", float64(def.PeakRSS)/(1<<20), def.Sold),
			float64(def.PeakRSS), TargetRSS, AimRSS, true)
	}
	return out
}

func ratio(r, base *Result) string {
	if base == nil || base.Throughput == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r.Throughput/base.Throughput)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// Markdown writes the comparison table. Absolute numbers move between runs on a shared machine,
// so the ratios to the no-op baseline (the transport limit here) lead.
func (rep *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "## %s\n\n%s\n\n", rep.Title, rep.Setup)
	fmt.Fprintln(w, "| run | × no-op handler | × PostgreSQL FOR UPDATE | purchases/s | p50 ms | p99 ms | p99.9 ms | server peak RSS | verify |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
	all := append([]*Result{}, rep.Rows...)
	if rep.PGLock != nil {
		all = append(all, rep.PGLock)
	}
	all = append(all, rep.Noop)
	for _, r := range all {
		if r == nil {
			continue
		}
		rss := "–"
		if r.PeakRSS > 0 {
			rss = fmt.Sprintf("%.0f MB", float64(r.PeakRSS)/(1<<20))
		}
		verify := r.Verify
		if verify == "" {
			verify = "–"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n", r.Name, ratio(r, rep.Noop), ratio(r, rep.PGLock),
			r.Throughput, ms(r.P50), ms(r.P99), ms(r.P999), rss, verify)
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "\nnot measured: %s\n", f)
	}
	fmt.Fprintln(w, "\n### Speed targets\n\n| target | must | aim | measured | status |\n|---|---|---|---|---|")
	for _, t := range rep.Targets() {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", t.Goal, t.Must, t.Aim, t.Measured, t.Status)
	}
}

// SVG writes a horizontal bar chart of purchases/s, one bar per run, baselines included.
func (rep *Report) SVG(w io.Writer) {
	all := append([]*Result{}, rep.Rows...)
	if rep.PGLock != nil {
		all = append(all, rep.PGLock)
	}
	if rep.Noop != nil {
		all = append(all, rep.Noop)
	}
	top := 1.0
	for _, r := range all {
		top = max(top, r.Throughput)
	}
	const left, width, barH, gap = 300, 520, 22, 8
	height := 60 + len(all)*(barH+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+width+120, height)
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(rep.Title))
	fmt.Fprintf(&b, `<text x="10" y="40" fill="#555">purchases per second (longer is faster)</text>`+"\n")
	for i, r := range all {
		y := 55 + i*(barH+gap)
		wBar := int(float64(width) * r.Throughput / top)
		color := "#3b7dd8"
		if r == rep.Noop || r == rep.PGLock {
			color = "#999999"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH-6, html.EscapeString(r.Name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, max(wBar, 1), barH, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%.0f/s</text>`+"\n", left+max(wBar, 1)+6, y+barH-6, r.Throughput)
	}
	b.WriteString("</svg>\n")
	_, _ = io.WriteString(w, b.String())
}
