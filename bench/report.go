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
