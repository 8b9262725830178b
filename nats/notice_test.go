package nats

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readNotice parses an email and returns its Subject, To and decoded text.
func readNotice(t *testing.T, data []byte) (subject, to, text string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the notice does not parse: %v\n%s", err, data)
	}
	if ct := msg.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subject, err = dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	// Quoted-printable text ends its lines in CRLF, and SMTP's DATA adds one at the end.
	return subject, msg.Header.Get("To"), strings.TrimRight(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
}

// TestSendNotice: a notice is written at once as its own .eml file (named apart from the
// receipts), or sent over SMTP; its text and subject survive any characters; an address that is
// not one, or a header line smuggled into the subject, gets nowhere.
func TestSendNotice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	text := "Your code is 123456.\nIt is good for 10 minutes. Grüße — " + strings.Repeat("x", 100)

	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		em := &Email{Dir: dir}
		if err := em.SendNotice(ctx, "ann@example.com", "Your code: 123456\r\nBcc: eve@example.com", text); err != nil {
			t.Fatal(err)
		}
		files, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil || len(files) != 1 || !strings.HasPrefix(filepath.Base(files[0]), "ntc_") || filepath.Ext(files[0]) != ".eml" {
			t.Fatalf("mail directory holds %v (%v), want one ntc_*.eml", files, err)
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		subject, to, got := readNotice(t, data)
		if to != "ann@example.com" || subject != "Your code: 123456Bcc: eve@example.com" || got != text {
			t.Fatalf("To %q, Subject %q, text %q", to, subject, got)
		}
		if err := em.SendNotice(ctx, "not an address", "s", "t"); err == nil {
			t.Fatal("a notice to a non-address was sent")
		}
	})

	t.Run("smtp", func(t *testing.T) {
		ms := startMailServer(t, plainText, nil, nil)
		em := &Email{Dir: t.TempDir(), SMTP: smtpConfig(t, "smtp://"+ms.addr)}
		if err := em.SendNotice(ctx, "bob@example.com", "Your code: 654321", text); err != nil {
			t.Fatal(err)
		}
		msgs := ms.messages()
		if len(msgs) != 1 || len(msgs[0].to) != 1 || msgs[0].to[0] != "bob@example.com" {
			t.Fatalf("the SMTP server got %+v", msgs)
		}
		if subject, _, got := readNotice(t, msgs[0].data); subject != "Your code: 654321" || got != text {
			t.Fatalf("Subject %q, text %q", subject, got)
		}
		ms.down.Store(true)
		if err := em.SendNotice(ctx, "bob@example.com", "s", "t"); err == nil {
			t.Fatal("SendNotice succeeded with the SMTP server down")
		}
	})
}
