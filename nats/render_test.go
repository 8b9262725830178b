package nats

import (
	"bytes"
	"html/template"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"boxoffice"
)

// templateHTML is the HTML part as html/template wrote it before writeHTML replaced it: the
// reference writeHTML must match byte for byte, so that its hand-written escaping is exactly the
// template's contextual escaping for where each value stands.
var templateHTML = template.Must(template.New("receipt").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Subject}}</title>
</head>
<body style="margin:0;padding:16px;font-family:Helvetica,Arial,sans-serif;color:#1a1a1a;line-height:1.4">
{{if .Cancelled -}}
<h1 style="font-size:20px;margin:0 0 12px">Your order was cancelled</h1>
<p>Your order {{.OrderID}} was cancelled, and the payment of {{.Amount}} is refunded.</p>
{{- else -}}
<h1 style="font-size:20px;margin:0 0 12px">Your tickets for {{.Show}}</h1>
<p>Thank you for your order {{.OrderID}}. Here are your tickets.</p>
{{- end}}
<table role="presentation" style="border-collapse:collapse;margin:12px 0">
<tr><th scope="row" style="text-align:left;padding:2px 16px 2px 0">Show</th><td>{{.Show}}</td></tr>
{{- if .Starts}}
<tr><th scope="row" style="text-align:left;padding:2px 16px 2px 0">Starts</th><td><time datetime="{{.StartsISO}}">{{.Starts}}</time></td></tr>
{{- end}}
<tr><th scope="row" style="text-align:left;padding:2px 16px 2px 0">Tier</th><td>{{.Tier}}</td></tr>
<tr><th scope="row" style="text-align:left;padding:2px 16px 2px 0">Tickets</th><td>{{.Quantity}}</td></tr>
<tr><th scope="row" style="text-align:left;padding:2px 16px 2px 0">{{if .Cancelled}}Refunded{{else}}Paid{{end}}</th><td>{{.Amount}}</td></tr>
<tr><th scope="row" style="text-align:left;padding:2px 16px 2px 0">Order</th><td>{{.OrderID}}</td></tr>
</table>
{{- if .Tickets}}
<h2 style="font-size:16px;margin:16px 0 8px">{{if .Cancelled}}These tickets are no longer valid{{else}}Your tickets; each code admits one person{{end}}</h2>
<ol>
{{- range .Tickets}}
<li><code style="font-size:18px;letter-spacing:1px{{if $.Cancelled}};text-decoration:line-through{{end}}">{{.}}</code></li>
{{- end}}
</ol>
{{- end}}
</body>
</html>
`))

// awkward are values that need escaping or encoding somewhere: markup, quotes, the characters
// html/template escapes beyond the usual five (+, NUL), non-ASCII text, "=" and spaces that
// quoted-printable must encode, and a value long enough to need soft line breaks.
var awkward = []string{
	"", "plain", `Große Nacht <b>"Bühne" & 東京</b>`, "it's + that", "a\x00b", "x = y", "trailing space ",
	"tab\there\t", strings.Repeat("long-name ", 12), strings.Repeat("é", 50), "=3D already", "line\nbreak",
	"\r\nCRLF\r", "emoji 🎟️ ticket",
}

func pick(r *rand.Rand) string { return awkward[r.IntN(len(awkward))] }

// randomReceipt is a receipt of awkward values, cancelled or not, with or without a start and
// tickets.
func randomReceipt(r *rand.Rand) *receipt {
	rc := &receipt{
		Subject: pick(r), Cancelled: r.IntN(2) == 0, OrderID: pick(r), Show: pick(r), Tier: pick(r),
		Quantity: r.IntN(12), Amount: pick(r),
	}
	if r.IntN(3) > 0 {
		rc.Starts, rc.StartsISO = pick(r), pick(r)
	}
	for range r.IntN(4) {
		rc.Tickets = append(rc.Tickets, pick(r))
	}
	return rc
}

// TestWriteHTMLIsTheTemplates: the hand-written HTML part is byte for byte what html/template
// made of the same receipt, for values that need every kind of escaping.
func TestWriteHTMLIsTheTemplates(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		rc := randomReceipt(r)
		var want strings.Builder
		if err := templateHTML.Execute(&want, rc); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		rc.writeHTML(&got)
		if got.String() != want.String() {
			t.Fatalf("receipt %d %+v:\nwriteHTML:\n%s\ntemplate:\n%s", i, rc, got.String(), want.String())
		}
	}
}

// qpReference is s as mime/quotedprintable's Writer encodes it.
func qpReference(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}

// TestQuotedPrintableIsTheLibrarys: writeQP's fast path for plain lines produces what
// mime/quotedprintable's Writer does, for text of plain, long, encoded and oddly broken lines,
// and for the real receipts' parts.
func TestQuotedPrintableIsTheLibrarys(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var inputs []string
	for range 3000 {
		var s strings.Builder
		for range r.IntN(8) {
			s.WriteString(pick(r))
			s.WriteString([]string{"\n", "\r\n", "", " ", "\r", strings.Repeat("a", r.IntN(90))}[r.IntN(6)])
		}
		inputs = append(inputs, s.String())
	}
	for i := range 80 {
		inputs = append(inputs, strings.Repeat("b", i)+"\n"+strings.Repeat("c", 150-i))
	}
	for range 200 {
		rc := randomReceipt(r)
		var text, html bytes.Buffer
		rc.writeText(&text)
		rc.writeHTML(&html)
		inputs = append(inputs, text.String(), html.String())
	}
	var scratch []byte
	for _, s := range inputs {
		var b bytes.Buffer
		scratch = writeQP(&b, []byte(s), scratch)
		if want := qpReference(s); b.String() != want {
			t.Fatalf("writeQP(%q)\n= %q\nwant %q", s, b.String(), want)
		}
	}
}

// BenchmarkRender is one receipt's rendering, the email consumer's CPU per order besides its file.
func BenchmarkRender(b *testing.B) {
	o := mailOrder("ord_01jbench0000000000000000", "buyer@example.com")
	ev := boxoffice.NewOrderEvent(&o, receiptShow)
	now := time.Now()
	m := &Message{ID: boxoffice.NewID(boxoffice.PrefixEvent, now), Type: boxoffice.EventOrderConfirmed, Subject: o.ID, CreatedAt: now}
	e := &Email{}
	b.ReportAllocs()
	for b.Loop() {
		e.render(m, ev)
	}
}
