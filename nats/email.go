package nats

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// EmailConsumer is the durable consumer name, and the inbox's consumer key, of the email effect.
const EmailConsumer = "email"

// Email sends the ticket receipt for order.confirmed and a notice for order.cancelled: over SMTP
// when SMTP is set, else written as .eml files under Dir. Both carry the same rendered bytes.
//
// Exactly once: a message is skipped when the inbox has its event id; otherwise the file is
// written under the event id (temp file + rename, so a redelivery after a crash rewrites the same
// file and never leaves a torn one), the event id goes into the inbox, and only after that commit
// is the message acked. A crash at any point leaves either no file, or the one file with or
// without its inbox row, and the redelivery converges on one file and one row. Files go in
// batches (applyBatch): every file of a batch is on disk before any of their inbox rows commits,
// so the same holds for each. Over SMTP the
// inbox row is written only after the server accepted the message (250 after DATA), so a failed
// send records nothing and is retried; see apply for the one window that can send twice.
//
// One failing email does not hold back the others: the consumer lets EmailMaxAckPending messages
// be in flight or waiting for their retry, so while a receipt waits out its back-off (a refused
// address, a mailbox over quota) the ones behind it go out; and each server sends Workers emails
// at once, or writes Workers batches of files at once. What must stay in order is one order's
// two emails: a cancellation notice never goes out before its order's receipt. apply checks that
// with the store (see receiptFirst): a cancellation whose receipt has not gone out yet fails with
// a retryable error and waits along the schedule like any failure; if the receipt is finally
// dead-lettered, so is the cancellation, and a replay in the dead letters' order sends them in
// order. This is the per-key ordering of a partitioned log without a partition per order.
//
// Several servers may run an Email each on one store, one JetStream and one Dir (a shared
// --mail-dir): they pull from the same durable consumer, so several emails are sent at once, one
// per server, and receiptFirst keeps one order's emails in order across servers as it does on one.
// A server that dies mid-message loses it to another after AckWait (short, see DefaultAckWait),
// and the file the other writes has the same name and the same bytes, so whichever of them wrote
// it, there is one receipt.
type Email struct {
	// Store holds the inbox.
	Store boxoffice.Store
	// JS reads the stream (EnsureStream).
	JS jetstream.JetStream
	// Dir is where the .eml files go: <data-dir>/mail, or a directory several servers share.
	Dir string
	// From is the sender address; empty means SMTP's sender, or DefaultFrom without SMTP.
	From string
	// SMTP, when set, is the server the emails are sent to instead of being written under Dir.
	SMTP *SMTPConfig
	// AckWait is how long JetStream waits for an ack or a progress report before it hands the
	// message to another subscriber; 0 means DefaultAckWait. The runner reports progress while
	// an email is written or sent, so this bounds how long a dead server holds a message, not
	// how long sending one may take.
	AckWait time.Duration
	// Backoff is the retry schedule of a failed email (see the runner): the pause before each
	// retry; after the last one the message is dead-lettered. Empty means about 16 hours in 10
	// steps from 1 s; tests shorten it.
	Backoff []time.Duration
	// Logger, when set, gets what was sent and what failed.
	Logger *slog.Logger
	// Workers is how many emails this server writes or sends at once; 0 means
	// DefaultEmailWorkers. Emails of different orders go in any order; one order's stay in order
	// (see receiptFirst).
	Workers int
	// InboxTTL is how long the store keeps a consumer's record of an applied event (the sale's
	// InboxTTL); 0 means DefaultEventsMaxAge, which is its default. receiptFirst trusts a missing
	// record only within it.
	InboxTTL time.Duration

	// beforeAck, in tests, runs after the inbox commit and before the ack; an error ends Run
	// there, as a crash would.
	beforeAck func(m *Message) error
	// beforeWrite, in tests, runs when apply has found the inbox without the event, before the
	// email is written or sent; its error is apply's.
	beforeWrite func(ctx context.Context, m *Message) error

	// batch bounds how many emails a worker writes at once; 0 means DefaultConsumerBatch.
	batch            int
	written, skipped atomic.Int64
}

// Stats returns how many emails the consumer wrote or sent and how many redelivered events it
// skipped because its inbox had them.
func (e *Email) Stats() (written, skipped int64) { return e.written.Load(), e.skipped.Load() }

var safeID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// Run consumes until ctx ends, and returns nil then. The fetch, inbox check, ack, retry and
// dead-letter logic is the runner's, shared with the webhook consumers; apply is the effect.
func (e *Email) Run(ctx context.Context) error {
	if err := os.MkdirAll(e.Dir, 0o700); err != nil {
		return err
	}
	removeStaleTemps(e.Dir)
	return e.runner().loopN(ctx, e.workers(), e.consumer)
}

// DefaultEmailWorkers is how many emails one server sends at once over SMTP, or how many batches of
// files it writes at once. Each waits mostly on a disk or an SMTP server, so a few side by side go
// several times as fast as one; more than a few only take CPU from the sale.
const DefaultEmailWorkers = 4

func (e *Email) workers() int {
	if e.Workers > 0 {
		return e.Workers
	}
	return DefaultEmailWorkers
}

// consumer creates the durable email consumer, or updates it to this configuration.
func (e *Email) consumer(ctx context.Context) (jetstream.Consumer, error) {
	return e.JS.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:        EmailConsumer,
		FilterSubjects: []string{SubjectPrefix + boxoffice.EventOrderConfirmed, SubjectPrefix + boxoffice.EventOrderCancelled},
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        e.ackWait(),
		MaxAckPending:  EmailMaxAckPending,
	})
}

// EmailMaxAckPending is how many emails may be in flight or waiting for a retry at once, over
// every server. It is what lets the emails behind a failing one go out; past it, the consumer
// waits for a retry to come due. A bound rather than unlimited, so that an SMTP server that
// refuses everything does not make every server fetch the whole stream into retries at once.
const EmailMaxAckPending = 256

// runner is the email consumer's loop around apply, for Run and for a dead letter's replay.
func (e *Email) runner() *runner {
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := e.Backoff
	if len(backoff) == 0 {
		backoff = DefaultEmailBackoff
	}
	r := &runner{
		store: e.Store, js: e.JS, name: EmailConsumer, backoff: backoff, handle: e.apply, log: log,
		beforeAck: e.beforeAck, onSkip: func() { e.skipped.Add(1) }, ackWait: e.ackWait(),
	}
	if e.SMTP == nil {
		// Files batch; an SMTP server takes one message at a time anyway, and a batch would
		// only widen the window in which a crash sends an email twice (see apply).
		r.batch, r.batchSize = e.applyBatch, e.batch
	}
	return r
}

func (e *Email) ackWait() time.Duration {
	if e.AckWait > 0 {
		return e.AckWait
	}
	return DefaultAckWait
}

// staleTempAge is how old a temp file in the mail dir must be before Run removes it. A writer
// holds its temp file for the time of one write and fsync; in a directory several servers share,
// a younger one may be another live server's receipt between its write and its rename, and
// removing it would fail that write for nothing.
const staleTempAge = 10 * time.Minute

// removeStaleTemps removes the temp files a crash between creating one and renaming it left in
// dir: the redelivered event writes its email again, so they are garbage.
func removeStaleTemps(dir string) {
	tmps, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if err != nil {
		return
	}
	for _, tmp := range tmps {
		if fi, err := os.Lstat(tmp); err == nil && time.Since(fi.ModTime()) > staleTempAge {
			_ = os.Remove(tmp)
		}
	}
}

// apply writes or sends the message's email unless the inbox says it was, then records it.
//
// Over SMTP the record follows the server's 250 to the end of DATA, and a failed send (server
// down, 4xx, 5xx) returns the error with nothing recorded, so the consumer retries it later. A
// crash or a failed inbox commit between that 250 and the commit, or a 250 lost on the wire,
// sends the email again on the redelivery: no SMTP client can close that window, as the server
// and the inbox share no transaction. The copy carries the same Message-ID, <event id@boxoffice>,
// which lets mail systems recognise it as the same message.
//
// The inbox is read here unless the runner has just read it (m.inboxChecked): one read
// transaction a receipt fewer on the consumer's path, while apply called on its own still
// applies a message once.
func (e *Email) apply(ctx context.Context, m *Message) error {
	var done bool
	var err error
	if !m.inboxChecked {
		err = e.Store.View(ctx, func(tx boxoffice.Tx) error {
			var err error
			done, err = tx.InboxHas(ctx, EmailConsumer, m.ID)
			return err
		})
	}
	if err != nil {
		return err
	}
	if done {
		e.skipped.Add(1)
		return nil
	}
	body, ev, err := e.prepare(ctx, m)
	if err != nil {
		return err
	}
	if e.SMTP != nil {
		err = e.SMTP.send(ctx, e.sender(), ev.Buyer.Email, body)
		if se, ok := errors.AsType[*SMTPError](err); ok && se.Permanent() {
			// A refused recipient stays refused: dead-letter it now rather than hold every
			// email behind it through the whole retry schedule.
			err = Permanent(err)
		}
	} else {
		err = writeFileAtomic(filepath.Join(e.Dir, m.ID+".eml"), body)
	}
	if err != nil {
		return err
	}
	e.written.Add(1)
	err = e.Store.Update(ctx, func(tx boxoffice.Tx) error {
		return tx.InsertInboxEvent(ctx, EmailConsumer, m.ID, time.Now())
	})
	if boxoffice.ErrorCode(err) == boxoffice.ECONFLICT {
		// A redelivery raced us here; the file, or the Message-ID, is the same either way.
		return nil
	}
	return err
}

// prepare renders m's email, once the order of one order's emails allows it (receiptFirst).
func (e *Email) prepare(ctx context.Context, m *Message) ([]byte, *boxoffice.OrderEvent, error) {
	if e.beforeWrite != nil {
		if err := e.beforeWrite(ctx, m); err != nil {
			return nil, nil, err
		}
	}
	var ev boxoffice.OrderEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return nil, nil, fmt.Errorf("decode order of event %s: %w", m.ID, err)
	}
	if m.Type == boxoffice.EventOrderCancelled {
		if err := e.receiptFirst(ctx, m); err != nil {
			return nil, nil, err
		}
	}
	return e.render(m, &ev), &ev, nil
}

// applyBatch is apply for a batch of messages the runner has checked against the inbox, when
// the emails are files: it writes every file (each fsync'd, the directory once for all), then
// records every one written in the inbox in one transaction. An email that fails fails alone;
// a failed commit fails every email of the batch, whose files a retry writes again, the same.
// A cancellation whose receipt is in the same batch waits for its retry (receiptFirst reads the
// inbox, which records the receipt only at the end of the batch).
func (e *Email) applyBatch(ctx context.Context, ms []*Message) []error {
	errs := make([]error, len(ms))
	var files []mailFile
	var at []int
	for i, m := range ms {
		body, _, err := e.prepare(ctx, m)
		if err != nil {
			errs[i] = err
			continue
		}
		files, at = append(files, mailFile{path: filepath.Join(e.Dir, m.ID+".eml"), data: body}), append(at, i)
	}
	var written []int
	for j, err := range writeFilesAtomic(e.Dir, files) {
		if err != nil {
			errs[at[j]] = err
			continue
		}
		written = append(written, at[j])
	}
	if len(written) == 0 {
		return errs
	}
	e.written.Add(int64(len(written)))
	now := time.Now()
	ids := make([]string, len(written))
	for j, i := range written {
		ids[j] = ms[i].ID
	}
	// An event recorded already is left as it is: a redelivery that raced us here wrote the same
	// file.
	err := e.Store.Update(ctx, func(tx boxoffice.Tx) error {
		return tx.InsertInboxEvents(ctx, EmailConsumer, ids, now)
	})
	if err != nil {
		for _, i := range written {
			errs[i] = err
		}
	}
	return errs
}

// WaitingForReceiptError is the failure of a cancellation notice whose order's receipt has not
// gone out yet: it is retried along the schedule like any failure, so that the notice never
// reaches the buyer before the receipt.
type WaitingForReceiptError struct {
	// OrderID is the order, and ReceiptEventID the order.confirmed event whose email is awaited.
	OrderID, ReceiptEventID string
}

// Error implements error.
func (e *WaitingForReceiptError) Error() string {
	return fmt.Sprintf("waiting for the receipt of order %s (event %s) to go out first", e.OrderID, e.ReceiptEventID)
}

// orderEventsRead bounds receiptFirst's read of an order's events: an order has a handful (its
// confirmation, a failed payment, a cancellation), and the receipt comes before the cancellation.
const orderEventsRead = 32

// receiptFirst returns a WaitingForReceiptError when the cancellation m follows an order.confirmed
// event of its order whose email has not been applied. The inbox says it was; a missing inbox row
// is trusted only while the row, had it been written, could not yet have been swept (InboxTTL
// after the confirmation): past that, the receipt went out or was dead-lettered long ago.
func (e *Email) receiptFirst(ctx context.Context, m *Message) error {
	ttl := cmp.Or(e.InboxTTL, DefaultEventsMaxAge)
	var waiting *WaitingForReceiptError
	err := e.Store.View(ctx, func(tx boxoffice.Tx) error {
		waiting = nil
		events, err := tx.EventsOfSubject(ctx, m.Subject, orderEventsRead)
		if err != nil {
			return err
		}
		for _, ev := range events {
			if ev.Seq >= m.Seq || ev.Type != boxoffice.EventOrderConfirmed || time.Since(ev.CreatedAt) > ttl {
				continue
			}
			sent, err := tx.InboxHas(ctx, EmailConsumer, ev.ID)
			if err != nil {
				return err
			}
			if !sent {
				waiting = &WaitingForReceiptError{OrderID: m.Subject, ReceiptEventID: ev.ID}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the order's receipt: %w", err)
	}
	if waiting != nil {
		return waiting
	}
	return nil
}

// render builds the email: headers, then a multipart/alternative body of a plain-text part and
// an HTML part, both quoted-printable. It depends on the message and the sender only (the show's
// name and start come in the event, see boxoffice.OrderEvent; the boundary is derived from the
// event id), so that a rewrite after a redelivery, on this server or another one configured with
// the same sender, produces the same bytes.
func (e *Email) render(m *Message, ev *boxoffice.OrderEvent) []byte {
	r := newReceipt(m, ev)
	rb := renderBufs.Get().(*renderBuf)
	defer renderBufs.Put(rb)
	b := &rb.email
	b.Reset()
	// The event id makes the Message-ID stable across redeliveries, so a mail system that sees
	// the same email twice can tell.
	e.writeHeader(b, ev.Buyer.Email, mime.QEncoding.Encode("utf-8", r.Subject), m.CreatedAt, m.ID)
	fmt.Fprintf(b, "X-Boxoffice-Event: %s %s\r\n", m.Type, m.ID)

	// The parts go straight after the headers: a multipart.Writer writes nothing before its
	// first part.
	mw := multipart.NewWriter(b)
	if err := mw.SetBoundary(mimeBoundary(m.ID)); err != nil {
		panic(err) // mimeBoundary makes a valid boundary of any id
	}
	fmt.Fprintf(b, "MIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n",
		mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	// Plain text first: multipart/alternative lists the parts from plainest to richest, and a
	// client shows the last one it can.
	rb.part.Reset()
	r.writeText(&rb.part)
	rb.qp = writeQPPart(mw, "text/plain; charset=utf-8", rb.part.Bytes(), rb.qp)
	rb.part.Reset()
	r.writeHTML(&rb.part)
	rb.qp = writeQPPart(mw, "text/html; charset=utf-8", rb.part.Bytes(), rb.qp)
	_ = mw.Close() // writes to a bytes.Buffer, which does not fail
	return bytes.Clone(b.Bytes())
}

// renderBuf is the scratch space of one rendering, kept for the next: built in fresh buffers, a
// 2.5 KiB receipt cost 17 KiB of allocations, a fifth of all the server allocated during a sale,
// and the collector's work grows with that.
type renderBuf struct {
	email, part bytes.Buffer
	qp          []byte
}

var renderBufs = sync.Pool{New: func() any { return new(renderBuf) }}

// mimeBoundary is the multipart boundary of the email of event id: derived from it, so the same
// on every rendering. It starts with "=_", which quoted-printable text can never contain ("=" is
// always followed by two hex digits or a line break there), so no part can end the body early,
// whatever the show's name or the buyer's address holds.
func mimeBoundary(id string) string {
	sum := sha256.Sum256([]byte("boxoffice-mime-boundary:" + id))
	// 12 bytes keep the Content-Type header line under 78 characters; the "=_" already makes
	// the boundary unique against the parts, the hash only makes it differ between emails.
	return "=_" + hex.EncodeToString(sum[:12])
}

// writeQPPart adds a part of content type ct holding s, quoted-printable: lines stay under 78
// characters and 8-bit text (a show's name in any script) passes any mail relay, which 8bit
// does not promise. scratch is space for the encoding, returned for the next part.
func writeQPPart(mw *multipart.Writer, ct string, s, scratch []byte) []byte {
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", ct)
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	pw, err := mw.CreatePart(h)
	if err != nil {
		panic(err) // writes to a bytes.Buffer, which does not fail
	}
	return writeQP(pw, s, scratch)
}

// qpLineMax is the longest encoded line, the soft break's "=" included (RFC 2045 §6.7).
const qpLineMax = 76

// writeQP writes s to w quoted-printable, exactly as mime/quotedprintable's Writer does
// (TestQuotedPrintableIsTheLibrarys): text bytes and the spaces between words as they are, "="
// and 8-bit bytes as =XX, a space or tab ending a line encoded, \n, \r and \r\n as CRLF, and a
// soft line break ("=" CRLF) where an encoded line would pass 76 characters. The Writer went
// through an interface call and a bounds-checked buffer for every few bytes, and encoded the
// receipts' two parts in half their rendering time; this builds the encoding in one buffer,
// scratch's space, and returns it for the next call.
func writeQP(w io.Writer, s, scratch []byte) []byte {
	out := slices.Grow(scratch[:0], len(s)+len(s)/8+64)
	lineStart := 0 // where the current encoded line starts in out
	cr := false    // the last byte was a \r, already turned into CRLF
	breakLine := func() {
		out = append(out, "=\r\n"...)
		lineStart = len(out)
	}
	encode := func(b byte) {
		if qpLineMax-1-(len(out)-lineStart) < 3 {
			breakLine()
		}
		out = append(out, '=', "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&0x0f])
	}
	// endLine encodes a space or tab that would end the line, then ends it.
	endLine := func() {
		if n := len(out); n > lineStart && (out[n-1] == ' ' || out[n-1] == '\t') {
			b := out[n-1]
			out = out[:n-1]
			encode(b)
		}
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == '\n' || b == '\r':
			if cr && b == '\n' {
				cr = false
				continue
			}
			cr = b == '\r'
			endLine()
			out = append(out, '\r', '\n')
			lineStart = len(out)
		case b >= '!' && b <= '~' && b != '=' || b == ' ' || b == '\t':
			if len(out)-lineStart == qpLineMax-1 {
				breakLine()
			}
			out = append(out, b)
			cr = false
		default:
			encode(b)
		}
	}
	endLine()
	_, _ = w.Write(out)
	return out
}

// receipt is what a receipt or a cancellation notice says, for both of its parts.
type receipt struct {
	Subject   string
	Cancelled bool
	OrderID   string
	// Show is the show's name, or its id on an event committed before names were in events.
	Show string
	// Starts is when the show starts, for people; StartsISO the same for machines (the HTML
	// part's <time>). Both are empty when the event does not say.
	Starts, StartsISO string
	// Tier is the tier's name, or its id.
	Tier     string
	Quantity int
	Amount   string
	Tickets  []string
}

// startsLayout is how a receipt writes a show's start. Shows have no time zone of their own
// (SPEC: times are UTC), so the receipt says UTC rather than guess the venue's.
const startsLayout = "Monday 2 January 2006, 15:04 UTC"

// newReceipt is what the email about ev says.
func newReceipt(m *Message, ev *boxoffice.OrderEvent) *receipt {
	r := &receipt{
		Cancelled: m.Type == boxoffice.EventOrderCancelled, OrderID: ev.ID,
		Show: cmp.Or(ev.ShowName, ev.ShowID), Tier: cmp.Or(ev.TierName, ev.TierID),
		Quantity: ev.Quantity, Amount: money(ev.Amount),
	}
	if !ev.ShowStartsAt.IsZero() {
		r.Starts = ev.ShowStartsAt.UTC().Format(startsLayout)
		r.StartsISO = ev.ShowStartsAt.UTC().Format(time.RFC3339)
	}
	for _, t := range ev.Tickets {
		if t.Seat != "" {
			r.Tickets = append(r.Tickets, t.Code+" (seat "+t.Seat+")")
			continue
		}
		r.Tickets = append(r.Tickets, t.Code)
	}
	// The subjects stay as they were: mail filters and the end-to-end tests find receipts by them.
	if r.Cancelled {
		r.Subject = "Your order " + ev.ID + " was cancelled"
	} else {
		r.Subject = "Your tickets, order " + ev.ID
	}
	return r
}

// writeText writes the plain-text part. Its lines end in \n; the quoted-printable writer makes
// them CRLF.
func (r *receipt) writeText(w *bytes.Buffer) {
	if r.Cancelled {
		fmt.Fprintf(w, "Your order %s was cancelled, and the payment of %s is refunded.\n\n", r.OrderID, r.Amount)
	} else {
		fmt.Fprintf(w, "Thank you for your order %s. Here are your tickets.\n\n", r.OrderID)
	}
	row := func(k, v string) { fmt.Fprintf(w, "%-9s %s\n", k+":", v) }
	row("Show", r.Show)
	if r.Starts != "" {
		row("Starts", r.Starts)
	}
	row("Tier", r.Tier)
	row("Tickets", strconv.Itoa(r.Quantity))
	if r.Cancelled {
		row("Refunded", r.Amount)
	} else {
		row("Paid", r.Amount)
	}
	row("Order", r.OrderID)
	if len(r.Tickets) == 0 {
		return
	}
	if r.Cancelled {
		w.WriteString("\nThese tickets are no longer valid:\n\n")
	} else {
		w.WriteString("\nYour tickets; each code admits one person:\n\n")
	}
	for i, c := range r.Tickets {
		fmt.Fprintf(w, "  %d. %s\n", i+1, c)
	}
}

// writeHTML writes the HTML part. Every value is escaped for where it stands (text, the title, a
// double-quoted attribute; all take the same escaping), so a show's name or a buyer's address
// cannot add markup. Styles are inline, as mail clients drop <style> elements and never load
// anything remote. It writes what an html/template of the same markup did, byte for byte
// (TestWriteHTMLIsTheTemplates keeps that template as the reference): executing the template
// walked its tree and escaped through reflection, a third of a receipt's rendering.
func (r *receipt) writeHTML(w *bytes.Buffer) {
	const row = `<tr><th scope="row" style="text-align:left;padding:2px 16px 2px 0">`
	put := func(parts ...string) {
		for _, p := range parts {
			w.WriteString(p)
		}
	}
	esc := htmlEscaper.Replace
	put("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
		"<title>", esc(r.Subject), "</title>\n</head>\n",
		"<body style=\"margin:0;padding:16px;font-family:Helvetica,Arial,sans-serif;color:#1a1a1a;line-height:1.4\">\n")
	if r.Cancelled {
		put(`<h1 style="font-size:20px;margin:0 0 12px">Your order was cancelled</h1>`, "\n",
			"<p>Your order ", esc(r.OrderID), " was cancelled, and the payment of ", esc(r.Amount), " is refunded.</p>")
	} else {
		put(`<h1 style="font-size:20px;margin:0 0 12px">Your tickets for `, esc(r.Show), "</h1>\n",
			"<p>Thank you for your order ", esc(r.OrderID), ". Here are your tickets.</p>")
	}
	put("\n", `<table role="presentation" style="border-collapse:collapse;margin:12px 0">`, "\n",
		row, "Show</th><td>", esc(r.Show), "</td></tr>")
	if r.Starts != "" {
		put("\n", row, `Starts</th><td><time datetime="`, esc(r.StartsISO), `">`, esc(r.Starts), "</time></td></tr>")
	}
	paid := "Paid"
	if r.Cancelled {
		paid = "Refunded"
	}
	put("\n", row, "Tier</th><td>", esc(r.Tier), "</td></tr>\n",
		row, "Tickets</th><td>", strconv.Itoa(r.Quantity), "</td></tr>\n",
		row, paid, "</th><td>", esc(r.Amount), "</td></tr>\n",
		row, "Order</th><td>", esc(r.OrderID), "</td></tr>\n</table>")
	if len(r.Tickets) > 0 {
		heading, strike := "Your tickets; each code admits one person", ""
		if r.Cancelled {
			heading, strike = "These tickets are no longer valid", ";text-decoration:line-through"
		}
		put("\n", `<h2 style="font-size:16px;margin:16px 0 8px">`, heading, "</h2>\n<ol>")
		for _, t := range r.Tickets {
			put("\n", `<li><code style="font-size:18px;letter-spacing:1px`, strike, `">`, esc(t), "</code></li>")
		}
		put("\n</ol>")
	}
	put("\n</body>\n</html>\n")
}

// htmlEscaper is html/template's escaping of a value in text, RCDATA (the title) and quoted
// attributes: the five characters of markup, "+" (against UTF-7 sniffing) and NUL.
var htmlEscaper = strings.NewReplacer("\x00", "\uFFFD", `"`, "&#34;", "&", "&amp;", "'", "&#39;", "+", "&#43;", "<", "&lt;", ">", "&gt;")

// sender is the From of the emails, which is also the SMTP envelope's sender.
func (e *Email) sender() string {
	switch {
	case e.From != "":
		return e.From
	case e.SMTP != nil:
		return e.SMTP.From
	}
	return DefaultFrom
}

func money(m boxoffice.Money) string {
	return fmt.Sprintf("%d.%02d %s", m.Amount/100, m.Amount%100, m.Currency)
}

// writeHeader writes the header lines every email has: From (the sender), To, the Subject as
// given (already encoded), the Date, and the Message-ID <id@boxoffice>.
func (e *Email) writeHeader(b *bytes.Buffer, to, subject string, date time.Time, id string) {
	fmt.Fprintf(b, "From: %s\r\n", headerSafe(e.sender()))
	fmt.Fprintf(b, "To: %s\r\n", headerSafe(to))
	fmt.Fprintf(b, "Subject: %s\r\n", subject)
	fmt.Fprintf(b, "Date: %s\r\n", date.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(b, "Message-ID: <%s@boxoffice>\r\n", id)
}

// headerSafe drops line breaks, so that a buyer's address cannot add header lines.
func headerSafe(s string) string { return lineBreaks.Replace(s) }

// lineBreaks is built once: a Replacer builds its tables on first use, which had cost every
// receipt more than the replacing (1.6% of the server's CPU in a sale's profile).
var lineBreaks = strings.NewReplacer("\r", "", "\n", "")

// writeFileAtomic writes path by a synced temp file put in its place (linked, or renamed over it),
// then syncs the directory, so the file is either absent or complete and stays after a crash.
func writeFileAtomic(path string, data []byte) error {
	return writeFilesAtomic(filepath.Dir(path), []mailFile{{path: path, data: data}})[0]
}

// mailFile is a file for writeFilesAtomic to write.
type mailFile struct {
	path string
	data []byte
}

// writeFilesAtomic writes each file under dir as writeFileAtomic does, with two syncs for the
// whole batch rather than two fsyncs a file: every file's data is written to a file without a name
// yet (newTemp), made durable at once (syncData), each is given its name (place), and one fsync of
// dir makes the names durable; the answers are given only then. A file's name never points at
// data not on disk, as with a file's own fsync before its rename. It returns one error per file;
// a failed sync is the error of every file it covers.
//
// On this machine's disk an fsync costs about 100 µs of CPU, and with two a receipt the email
// consumer took a fifth of the server's CPU while it sold.
func writeFilesAtomic(dir string, files []mailFile) []error {
	errs := make([]error, len(files))
	tmps := make([]*tempFile, len(files))
	defer func() {
		for _, t := range tmps {
			if t != nil {
				t.discard()
			}
		}
	}()
	var open []*os.File
	for i, f := range files {
		t, err := newTemp(dir)
		if err != nil {
			errs[i] = fmt.Errorf("write %s: %w", f.path, err)
			continue
		}
		tmps[i] = t
		if _, err := t.f.Write(f.data); err != nil {
			errs[i] = fmt.Errorf("write %s: %w", f.path, err)
			continue
		}
		open = append(open, t.f)
	}
	if len(open) == 0 {
		return errs
	}
	if err := syncData(dir, open); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("write %s: %w", files[i].path, err)
			}
		}
		return errs
	}
	placed := false
	for i, t := range tmps {
		if t == nil || errs[i] != nil {
			continue
		}
		if err := t.place(files[i].path, files[i].data); err != nil {
			errs[i] = fmt.Errorf("write %s: %w", files[i].path, err)
			continue // the deferred cleanup removes what is left of it
		}
		tmps[i] = nil
		placed = true
	}
	if !placed {
		return errs
	}
	err := syncDir(dir)
	for i := range errs {
		if errs[i] == nil && err != nil {
			errs[i] = err
		}
	}
	return errs
}

// tempFile is a file whose data is being written before it gets its name: a named temp file
// (".tmp-*", renamed into place), or on Linux an unnamed one (O_TMPFILE, linked into place).
type tempFile struct {
	f       *os.File
	unnamed bool
}

// newNamedTemp creates a named temp file in dir.
func newNamedTemp(dir string) (*tempFile, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return nil, err
	}
	return &tempFile{f: f}, nil
}

// placeNamed renames a named temp file to path, over any file there.
func (t *tempFile) placeNamed(path string) error {
	if err := t.f.Close(); err != nil {
		return err
	}
	return os.Rename(t.f.Name(), path)
}

// discard closes t and removes its name, if it has one.
func (t *tempFile) discard() {
	_ = t.f.Close()
	if !t.unnamed {
		_ = os.Remove(t.f.Name())
	}
}

// syncDir fsyncs the directory dir, which makes the names given in it (links, renames) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
