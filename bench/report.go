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
	// row most targets are read from; Actor names the actor strategy's PostgreSQL row.
	Default, Actor string
}

// The product's speed targets (one hot show, 64 connections, durable commits).
const (
	TargetNoopShare  = 0.5  // the default on SQLite reaches this share of the no-op handler's requests/s
	TargetPGLock     = 40.0 // the default on SQLite against the raw FOR UPDATE baseline's orders/s
	TargetP99        = 10 * time.Millisecond
	TargetRSS        = 200 << 20 // server peak RSS for a TargetTickets sale
	TargetTickets    = 1_000_000
	TargetActorVsPG  = 10.0 // the actor strategy on PostgreSQL against the FOR UPDATE baseline
	statusMet        = "met"
	statusNotMet     = "not met"
	statusUnmeasured = "not measured"
)

// Target is one speed target and where a comparison found it.
type Target struct {
	Goal     string
	Measured string
	Status   string // "met", "not met" or "not measured"
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

// Targets reads the report against the speed targets. A target whose row or baseline was not
// run (no --pg, a failed row) is "not measured", never met.
func (rep *Report) Targets() []Target {
	judge := func(ok bool) string {
		if ok {
			return statusMet
		}
		return statusNotMet
	}
	def, actor := rep.row(rep.Default), rep.row(rep.Actor)
	missing := func(what string) Target {
		return Target{Measured: "no " + what + " in this run", Status: statusUnmeasured}
	}
	var out []Target
	add := func(goal string, t Target) {
		t.Goal = goal
		out = append(out, t)
	}
	if def == nil || rep.Noop == nil || rep.Noop.Throughput == 0 {
		add(fmt.Sprintf("%s ≥ %.0f%% of the no-op handler's requests/s", rep.Default, TargetNoopShare*100), missing("default row or no-op baseline"))
	} else {
		x := def.Throughput / rep.Noop.Throughput
		add(fmt.Sprintf("%s ≥ %.0f%% of the no-op handler's requests/s", rep.Default, TargetNoopShare*100),
			Target{Measured: fmt.Sprintf("%.1f%% (%.0f of %.0f/s)", x*100, def.Throughput, rep.Noop.Throughput), Status: judge(x >= TargetNoopShare)})
	}
	// timesPGLock is the target of row name reaching need × the FOR UPDATE baseline.
	timesPGLock := func(name string, r *Result, need float64) {
		goal := fmt.Sprintf("%s ≥ %.0f× the PostgreSQL FOR UPDATE baseline", name, need)
		if r == nil || rep.PGLock == nil || rep.PGLock.Throughput == 0 {
			add(goal, missing(name+" row or FOR UPDATE baseline (--pg)"))
			return
		}
		x := r.Throughput / rep.PGLock.Throughput
		add(goal, Target{Measured: fmt.Sprintf("%.2f× (%.0f vs %.0f/s)", x, r.Throughput, rep.PGLock.Throughput), Status: judge(x >= need)})
	}
	timesPGLock(rep.Default, def, TargetPGLock)
	if def == nil {
		add(fmt.Sprintf("%s p99 < %v", rep.Default, TargetP99), missing("default row"))
	} else {
		add(fmt.Sprintf("%s p99 < %v", rep.Default, TargetP99),
			Target{Measured: ms(def.P99) + " ms", Status: judge(def.P99 < TargetP99)})
	}
	rssGoal := fmt.Sprintf("server peak RSS < %d MB for a %d-ticket sale", TargetRSS>>20, TargetTickets)
	if def == nil || def.PeakRSS == 0 {
		add(rssGoal, missing("peak RSS of the default row"))
	} else {
		t := Target{Measured: fmt.Sprintf("%.0f MB after %d tickets", float64(def.PeakRSS)/(1<<20), def.Sold)}
		switch {
		case def.PeakRSS >= TargetRSS:
			// Over the bound already with fewer tickets: more would not bring it under.
			t.Status = statusNotMet
		case def.Sold < TargetTickets:
			t.Measured += fmt.Sprintf("; run `boxoffice bench --requests %d --duration 30m` for the full sale", TargetTickets)
			t.Status = statusUnmeasured
		default:
			t.Status = statusMet
		}
		add(rssGoal, t)
	}
	timesPGLock(rep.Actor, actor, TargetActorVsPG)
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
	fmt.Fprintln(w, "\n### Speed targets\n\n| target | measured | status |\n|---|---|---|")
	for _, t := range rep.Targets() {
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.Goal, t.Measured, t.Status)
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
