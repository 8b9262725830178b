package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
	"boxoffice/internal/checkfor"
)

func mailFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestEmailExactlyOnceUnderRedelivery crashes the consumer after its inbox commit and before the
// ack (so JetStream redelivers), publishes an event a second time under another message id (a
// duplicate the window did not catch), and restarts the consumer: there is one .eml per event.
func TestEmailExactlyOnceUnderRedelivery(t *testing.T) {
	e := newEnv(t)
	mail := filepath.Join(e.dir, "mail")
	var confirmed []*boxoffice.Event
	for i := 0; i < 6; i++ {
		o := boxoffice.Order{
			ID: "ord_" + string(rune('a'+i)), Status: boxoffice.OrderConfirmed, ShowID: "show1", TierID: "ga",
			Quantity: 2, Amount: boxoffice.Money{Amount: 5000, Currency: "EUR"}, Buyer: boxoffice.Buyer{Email: "b@example.com"},
			Tickets: []boxoffice.Ticket{{Code: "T1"}, {Code: "T2"}},
		}
		e.appendEvent(t, boxoffice.EventHoldCreated, "hld_"+o.ID, nil) // not for email
		confirmed = append(confirmed, e.appendEvent(t, boxoffice.EventOrderConfirmed, o.ID, o))
	}
	cancelled := e.appendEvent(t, boxoffice.EventOrderCancelled, "ord_a", boxoffice.Order{ID: "ord_a", Status: boxoffice.OrderCancelled})
	relay := &Relay{Store: e.store, JS: e.js}
	stopRelay := run(relay.Run)
	defer stopRelay()

	// First run: crash before acking the third email.
	var n atomic.Int32
	em := &Email{Store: e.store, JS: e.js, Dir: mail, AckWait: 300 * time.Millisecond, beforeAck: func(*Message) error {
		if n.Add(1) == 3 {
			return errCrash
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := em.Run(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("email returned %v, want the simulated crash", err)
	}

	// A duplicate that escaped the dedup window: the same event again under a new message id.
	body, _ := json.Marshal(Message{ID: confirmed[0].ID, Type: confirmed[0].Type, Subject: confirmed[0].Subject,
		Seq: confirmed[0].Seq, Position: confirmed[0].Position, CreatedAt: confirmed[0].CreatedAt, Data: confirmed[0].Data})
	msg := natsgo.NewMsg(SubjectPrefix + boxoffice.EventOrderConfirmed)
	msg.Data = body
	if _, err := e.js.PublishMsg(ctx, msg, jetstream.WithMsgID("redelivery-"+confirmed[0].ID)); err != nil {
		t.Fatal(err)
	}

	// One worker: when the first run did not get to the original, it and the duplicate are
	// applied in stream order (or in one batch, which applies one copy). With several workers
	// the two could be checked side by side, before either is recorded, and both write the same
	// file: still one file, but neither counted as skipped (runs under load saw a count of 1).
	em = &Email{Store: e.store, JS: e.js, Dir: mail, AckWait: 300 * time.Millisecond, Workers: 1}
	stop := run(em.Run)
	defer stop()
	want := len(confirmed) + 1
	// The wait reads the consumer under a context of its own: ctx's deadline counts from before
	// the first run, and a slow first run (a loaded CI machine) would otherwise leave every read
	// below failing on it, whatever the consumer did.
	waitCtx, waitCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer waitCancel()
	cons, err := e.js.Consumer(waitCtx, StreamName, EmailConsumer)
	if err != nil {
		t.Fatal(err)
	}
	// A failure names the consumer's last state, so that one seen once in CI can be read.
	checkfor.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		info, err := cons.Info(waitCtx)
		if err != nil {
			return fmt.Errorf("consumer info: %w", err)
		}
		if files := len(mailFiles(t, mail)); info.NumPending != 0 || info.NumAckPending != 0 || files != want {
			return fmt.Errorf("waiting until every email message is acked: %d pending, %d ack pending, %d redelivered, %d pulls waiting, %d of %d files, %d skipped",
				info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, files, want, func() int64 { _, s := em.Stats(); return s }())
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The crashed one comes back (its inbox row committed) and so does the duplicate.
	if _, skipped := em.Stats(); skipped < 2 {
		t.Errorf("the restarted consumer skipped %d redelivered events, want at least 2", skipped)
	}

	files := mailFiles(t, mail)
	if len(files) != want {
		t.Fatalf("%d .eml files, want %d: %v", len(files), want, files)
	}
	for _, ev := range append(confirmed, cancelled) {
		b, err := os.ReadFile(filepath.Join(mail, ev.ID+".eml"))
		if err != nil {
			t.Fatalf("no email for %s: %v", ev.ID, err)
		}
		if ev.Type == boxoffice.EventOrderConfirmed && !strings.Contains(string(b), "T2") {
			t.Errorf("receipt %s lacks the tickets:\n%s", ev.ID, b)
		}
		if ev.Type == boxoffice.EventOrderCancelled && !strings.Contains(string(b), "cancelled") {
			t.Errorf("notice %s is no cancellation:\n%s", ev.ID, b)
		}
		var has bool
		_ = e.store.View(ctx, func(tx boxoffice.Tx) error {
			has, err = tx.InboxHas(ctx, EmailConsumer, ev.ID)
			return err
		})
		if !has {
			t.Errorf("inbox lacks %s", ev.ID)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(mail, ".tmp-*")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}

// mailPart is one decoded part of a rendered email.
type mailPart struct {
	contentType, encoding, body string
}

// parseReceipt parses a rendered email as a mail client would: its headers, and the parts of its
// multipart/alternative body, each decoded from its transfer encoding. It fails the test on a
// byte that is not 7-bit, a bare LF or a line longer than RFC 5322's 78 characters, which is what
// quoted-printable promises a relay.
func parseReceipt(t *testing.T, eml []byte) (mail.Header, string, []mailPart) {
	t.Helper()
	for i, line := range strings.Split(string(eml), "\r\n") {
		if len(line) > 78 || strings.Contains(line, "\n") {
			t.Errorf("line %d is over 78 characters or has a bare LF: %q", i+1, line)
		}
		for _, c := range []byte(line) {
			if c >= 0x80 {
				t.Fatalf("line %d has an 8-bit byte: %q", i+1, line)
			}
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(eml))
	if err != nil {
		t.Fatalf("the email does not parse: %v\n%s", err, eml)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" || params["boundary"] == "" || msg.Header.Get("MIME-Version") != "1.0" {
		t.Fatalf("Content-Type %q (%v), MIME-Version %q; want multipart/alternative with a boundary",
			msg.Header.Get("Content-Type"), err, msg.Header.Get("MIME-Version"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []mailPart
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", len(parts)+1, err)
		}
		raw, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		part := mailPart{contentType: p.Header.Get("Content-Type"), encoding: p.Header.Get("Content-Transfer-Encoding")}
		body := raw
		if part.encoding == "quoted-printable" {
			if body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw))); err != nil {
				t.Fatalf("part %d is not valid quoted-printable: %v", len(parts)+1, err)
			}
		}
		part.body = string(body)
		parts = append(parts, part)
	}
	return msg.Header, params["boundary"], parts
}

// receiptShow is a show whose name needs escaping in HTML and encoding in a 7-bit message.
var receiptShow = &boxoffice.Show{
	ID: "show1", Name: `Große Nacht <b>"Bühne" & 東京</b>`, StartsAt: time.Date(2026, 3, 14, 19, 30, 0, 0, time.UTC),
	Tiers: []boxoffice.Tier{{ID: "ga", Name: "Parkett & Rang"}},
}

// TestReceiptIsMultipartAndNamesTheShow renders a receipt and a cancellation notice as a mail
// client reads them: a plain-text and an HTML part, both quoted-printable, each naming the show,
// its start and the tier (not their ids) and listing the tickets, the HTML with every value
// escaped. Two renderings of one event, by two consumers, are the same bytes.
func TestReceiptIsMultipartAndNamesTheShow(t *testing.T) {
	o := mailOrder("ord_r1", "buyer@example.com")
	o.Tickets[0].Seat = "S-A-12" // a seated tier's ticket names its seat
	const start = "Saturday 14 March 2026, 19:30 UTC"
	for _, typ := range []string{boxoffice.EventOrderConfirmed, boxoffice.EventOrderCancelled} {
		t.Run(typ, func(t *testing.T) {
			if typ == boxoffice.EventOrderCancelled {
				o.Status = boxoffice.OrderCancelled
			}
			m := mailMessage(t, typ, boxoffice.Order{})
			ev := boxoffice.NewOrderEvent(&o, receiptShow)
			eml := (&Email{From: "Box Office <tickets@example.com>"}).render(m, ev)
			if again := (&Email{From: "Box Office <tickets@example.com>"}).render(m, ev); !bytes.Equal(eml, again) {
				t.Fatalf("two renderings differ:\n%s\n---\n%s", eml, again)
			}
			h, boundary, parts := parseReceipt(t, eml)
			if boundary != mimeBoundary(m.ID) {
				t.Errorf("boundary %q, want the one derived from the event id", boundary)
			}
			if h.Get("Message-ID") != "<"+m.ID+"@boxoffice>" || h.Get("To") != "buyer@example.com" {
				t.Errorf("headers %v", h)
			}
			if len(parts) != 2 || parts[0].contentType != "text/plain; charset=utf-8" || parts[1].contentType != "text/html; charset=utf-8" {
				t.Fatalf("parts %+v; want text/plain then text/html", parts)
			}
			text, html := parts[0].body, parts[1].body
			for _, p := range parts {
				if p.encoding != "quoted-printable" {
					t.Errorf("%s is %q, want quoted-printable", p.contentType, p.encoding)
				}
				if strings.Contains(p.body, "show1") {
					t.Errorf("%s names the show by its id:\n%s", p.contentType, p.body)
				}
				for _, tk := range o.Tickets {
					if !strings.Contains(p.body, tk.Code) {
						t.Errorf("%s lacks ticket %s:\n%s", p.contentType, tk.Code, p.body)
					}
				}
				if !strings.Contains(p.body, "seat S-A-12") {
					t.Errorf("%s lacks the seat of the seated ticket:\n%s", p.contentType, p.body)
				}
			}
			for _, want := range []string{receiptShow.Name, start, "Parkett & Rang", "50.00 EUR", o.ID} {
				if !strings.Contains(text, want) {
					t.Errorf("text lacks %q:\n%s", want, text)
				}
			}
			for _, want := range []string{
				`Große Nacht &lt;b&gt;&#34;Bühne&#34; &amp; 東京&lt;/b&gt;`, "Parkett &amp; Rang",
				`<time datetime="2026-03-14T19:30:00Z">` + start + `</time>`, "50.00 EUR",
			} {
				if !strings.Contains(html, want) {
					t.Errorf("HTML lacks %q:\n%s", want, html)
				}
			}
			if strings.Contains(html, "<b>") {
				t.Errorf("the show's name went into the HTML unescaped:\n%s", html)
			}
			cancelled := strings.Contains(text, "was cancelled") && strings.Contains(text, "no longer valid") &&
				strings.Contains(html, "was cancelled") && strings.Contains(html, "no longer valid")
			if cancelled != (typ == boxoffice.EventOrderCancelled) {
				t.Errorf("%s: cancellation wording %v\n%s\n%s", typ, cancelled, text, html)
			}
		})
	}
}

// TestReceiptOfAnEventWithoutNames: an event committed before events named the show (or whose show
// was gone) still makes a receipt, by the ids.
func TestReceiptOfAnEventWithoutNames(t *testing.T) {
	o := mailOrder("ord_old", "buyer@example.com")
	m := mailMessage(t, boxoffice.EventOrderConfirmed, o)
	var ev boxoffice.OrderEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	_, _, parts := parseReceipt(t, (&Email{}).render(m, &ev))
	if len(parts) != 2 {
		t.Fatalf("%d parts", len(parts))
	}
	for _, p := range parts {
		if !strings.Contains(p.body, "show1") || !strings.Contains(p.body, "T2-ord_old") || strings.Contains(p.body, "Starts") {
			t.Errorf("%s does not fall back to the ids:\n%s", p.contentType, p.body)
		}
	}
}
