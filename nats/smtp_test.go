package nats

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/mail"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// receivedMail is one message the test server accepted (answered 250 after DATA).
type receivedMail struct {
	from string
	to   []string
	data []byte
	tls  bool
}

// header returns the value of the message's header key.
func (r receivedMail) header(t *testing.T, key string) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(r.data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, r.data)
	}
	return msg.Header.Get(key)
}

// mailServer is a real SMTP server (go-smtp) on 127.0.0.1:0 that keeps what it accepted and can
// be made to fail.
type mailServer struct {
	addr string

	// user and pass, when user is set, are the only credentials AUTH PLAIN accepts, and MAIL needs
	// a successful AUTH first.
	user, pass string
	// down, while set, closes every connection before the greeting, as a server that is not there.
	down atomic.Bool
	// failData is how many DATA commands get 451 before they are accepted again.
	failData atomic.Int32
	// rejectRcpt is a recipient that gets 550.
	rejectRcpt string

	mu        sync.Mutex
	msgs      []receivedMail
	authFails int
}

type tlsMode int

const (
	plainText tlsMode = iota
	startTLS
	implicitTLS
)

// startMailServer serves SMTP until the test ends; with a TLS mode it presents cert.
func startMailServer(t *testing.T, mode tlsMode, cert *tls.Certificate, configure func(*mailServer)) *mailServer {
	t.Helper()
	ms := &mailServer{}
	if configure != nil {
		configure(ms)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = ln.Addr().String()
	var l net.Listener = &downListener{Listener: ln, down: &ms.down}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{ms: ms, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	switch mode {
	case plainText:
		// Only plain-text AUTH tests the client's own rule; the server's would hide it.
		srv.AllowInsecureAuth = true
	case startTLS:
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	case implicitTLS:
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{*cert}})
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ms
}

func (ms *mailServer) messages() []receivedMail {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]receivedMail(nil), ms.msgs...)
}

func (ms *mailServer) count() int { return len(ms.messages()) }

// downListener closes the connections it accepts while down is set.
type downListener struct {
	net.Listener
	down *atomic.Bool
}

func (l *downListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.down.Load() {
			return c, err
		}
		_ = c.Close()
	}
}

type mailSession struct {
	ms     *mailServer
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if s.ms.user == "" || user != s.ms.user || pass != s.ms.pass {
			s.ms.mu.Lock()
			s.ms.authFails++
			s.ms.mu.Unlock()
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.ms.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.ms.rejectRcpt {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.ms.failData.Load() > 0 {
		s.ms.failData.Add(-1)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.ms.mu.Lock()
	s.ms.msgs = append(s.ms.msgs, receivedMail{from: s.from, to: append([]string(nil), s.to...), data: b, tls: isTLS})
	s.ms.mu.Unlock()
	return nil
}

func (s *mailSession) Reset()        { s.from, s.to = "", nil }
func (s *mailSession) Logout() error { return nil }

// smtpTestCert is a self-signed certificate for 127.0.0.1, localhost and mail.example, and a pool
// that trusts it.
func smtpTestCert(t *testing.T) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "boxoffice test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost", "mail.example"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// smtpConfig parses raw, failing the test on an error.
func smtpConfig(t *testing.T, raw string) *SMTPConfig {
	t.Helper()
	c, err := ParseSMTP(raw)
	if err != nil {
		t.Fatalf("ParseSMTP(%q): %v", raw, err)
	}
	return c
}

// mailMessage is an order event as the email consumer receives it.
func mailMessage(t *testing.T, typ string, o boxoffice.Order) *Message {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &Message{ID: boxoffice.NewID(boxoffice.PrefixEvent, now), Type: typ, Subject: o.ID, CreatedAt: now, Data: b}
}

func mailOrder(id, buyer string) boxoffice.Order {
	return boxoffice.Order{
		ID: id, Status: boxoffice.OrderConfirmed, ShowID: "show1", TierID: "ga", Quantity: 2,
		Amount: boxoffice.Money{Amount: 5000, Currency: "EUR"}, Buyer: boxoffice.Buyer{Email: buyer},
		Tickets: []boxoffice.Ticket{{Code: "T1-" + id}, {Code: "T2-" + id}},
	}
}

func emailInboxHas(t *testing.T, store boxoffice.Store, id string) bool {
	t.Helper()
	var has bool
	if err := store.View(context.Background(), func(tx boxoffice.Tx) error {
		var err error
		has, err = tx.InboxHas(context.Background(), EmailConsumer, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return has
}

// TestEmailSMTPExactlyOnce runs the relay and the email consumer against a real SMTP server: N
// receipts and notices arrive as N messages, each to its buyer with its subject and the event's
// Message-ID, byte for byte what the .eml would hold. Then the consumer's durable state is
// deleted (every ack lost) and a duplicate published, and the restarted consumer, finding every
// id in its inbox, sends nothing more.
func TestEmailSMTPExactlyOnce(t *testing.T) {
	e := newEnv(t)
	ms := startMailServer(t, plainText, nil, nil)
	cfg := smtpConfig(t, "smtp://"+ms.addr+"?from=Box+Office+<tickets@example.com>")
	mailDir := filepath.Join(e.dir, "mail")

	type sent struct {
		ev    *boxoffice.Event
		buyer string
		subj  string
	}
	var want []sent
	for i := range 5 {
		o := mailOrder(fmt.Sprintf("ord_%c", 'a'+i), fmt.Sprintf("buyer%d@example.com", i))
		want = append(want, sent{e.appendEvent(t, boxoffice.EventOrderConfirmed, o.ID, o), o.Buyer.Email, "Your tickets, order " + o.ID})
		if i%2 == 0 {
			o.Status = boxoffice.OrderCancelled
			want = append(want, sent{e.appendEvent(t, boxoffice.EventOrderCancelled, o.ID, o), o.Buyer.Email, "Your order " + o.ID + " was cancelled"})
		}
	}
	e.appendEvent(t, boxoffice.EventHoldCreated, "hld_x", nil) // not for email
	stopRelay := run((&Relay{Store: e.store, JS: e.js}).Run)
	defer stopRelay()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drained := func() bool {
		cons, err := e.js.Consumer(ctx, StreamName, EmailConsumer)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}

	em := &Email{Store: e.store, JS: e.js, Dir: mailDir, SMTP: cfg, AckWait: time.Second}
	stop := run(em.Run)
	eventually(t, "every event is sent and acked", func() bool { return ms.count() == len(want) && drained() })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	got := ms.messages()
	if len(got) != len(want) {
		t.Fatalf("the server received %d messages, want %d", len(got), len(want))
	}
	byID := map[string]receivedMail{}
	for _, r := range got {
		byID[r.header(t, "Message-ID")] = r
	}
	for _, w := range want {
		r, ok := byID["<"+w.ev.ID+"@boxoffice>"]
		if !ok {
			t.Errorf("no message with Message-ID <%s@boxoffice>", w.ev.ID)
			continue
		}
		if len(r.to) != 1 || r.to[0] != w.buyer {
			t.Errorf("%s went to %v, want [%s]", w.ev.ID, r.to, w.buyer)
		}
		if r.from != "tickets@example.com" {
			t.Errorf("%s has envelope sender %q, want tickets@example.com", w.ev.ID, r.from)
		}
		if got := r.header(t, "Subject"); got != w.subj {
			t.Errorf("%s has subject %q, want %q", w.ev.ID, got, w.subj)
		}
		if got := r.header(t, "To"); got != w.buyer {
			t.Errorf("%s has To %q, want %q", w.ev.ID, got, w.buyer)
		}
		var o boxoffice.OrderEvent
		if err := json.Unmarshal(w.ev.Data, &o); err != nil {
			t.Fatal(err)
		}
		m := &Message{ID: w.ev.ID, Type: w.ev.Type, CreatedAt: w.ev.CreatedAt, Data: w.ev.Data}
		if eml := (&Email{From: cfg.From}).render(m, &o); !bytes.Equal(r.data, eml) {
			t.Errorf("%s: SMTP sent other bytes than the .eml would hold:\n%s\n---\n%s", w.ev.ID, r.data, eml)
		}
		if !emailInboxHas(t, e.store, w.ev.ID) {
			t.Errorf("inbox lacks %s", w.ev.ID)
		}
	}
	if files := mailFiles(t, mailDir); len(files) != 0 {
		t.Errorf("with --smtp, .eml files were written too: %v", files)
	}

	// Every ack lost: the durable consumer is gone and JetStream delivers the whole stream again,
	// plus a duplicate of the first event that escaped the dedup window.
	if err := e.js.DeleteConsumer(ctx, StreamName, EmailConsumer); err != nil {
		t.Fatal(err)
	}
	dup, err := json.Marshal(Message{ID: want[0].ev.ID, Type: want[0].ev.Type, Subject: want[0].ev.Subject,
		CreatedAt: want[0].ev.CreatedAt, Data: want[0].ev.Data})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, SubjectPrefix+want[0].ev.Type, dup, jetstream.WithMsgID("dup-"+want[0].ev.ID)); err != nil {
		t.Fatal(err)
	}
	em = &Email{Store: e.store, JS: e.js, Dir: mailDir, SMTP: cfg, AckWait: time.Second}
	stop = run(em.Run)
	eventually(t, "the redelivered events are acked", func() bool {
		_, skipped := em.Stats()
		return skipped == int64(len(want)+1) && drained()
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := ms.count(); n != len(want) {
		t.Errorf("after the redelivery the server has %d messages, want still %d", n, len(want))
	}
}

// TestEmailSMTPApplyOnce applies one event several times and through failures, as redeliveries
// would: it is recorded only once the server accepted it, a failed send records nothing, and
// nothing is sent twice.
func TestEmailSMTPApplyOnce(t *testing.T) {
	e := newEnv(t)
	ms := startMailServer(t, plainText, nil, func(ms *mailServer) { ms.rejectRcpt = "gone@example.com" })
	em := &Email{Store: e.store, Dir: filepath.Join(e.dir, "mail"), SMTP: smtpConfig(t, "smtp://"+ms.addr)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("redelivery", func(t *testing.T) {
		m := mailMessage(t, boxoffice.EventOrderConfirmed, mailOrder("ord_r", "r@example.com"))
		for range 3 {
			if err := em.apply(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if n := ms.count(); n != 1 {
			t.Fatalf("three applies sent %d messages, want 1", n)
		}
		if r := ms.messages()[0]; r.from != "tickets@boxoffice.invalid" || r.header(t, "From") != DefaultFrom {
			t.Errorf("sender %q, From %q: want the default", r.from, r.header(t, "From"))
		}
	})

	t.Run("server down then up", func(t *testing.T) {
		before := ms.count()
		m := mailMessage(t, boxoffice.EventOrderCancelled, mailOrder("ord_d", "d@example.com"))
		ms.down.Store(true)
		defer ms.down.Store(false) // also when the subtest fails, for the ones after it
		for range 2 {
			if err := em.apply(ctx, m); err == nil {
				t.Fatal("apply succeeded with the server down")
			}
		}
		if emailInboxHas(t, e.store, m.ID) {
			t.Fatal("a failed send was recorded in the inbox")
		}
		ms.down.Store(false)
		for range 2 {
			if err := em.apply(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if n := ms.count() - before; n != 1 {
			t.Fatalf("the server received %d messages, want 1", n)
		}
		if !emailInboxHas(t, e.store, m.ID) {
			t.Fatal("the sent message is not in the inbox")
		}
	})

	t.Run("4xx then accepted", func(t *testing.T) {
		before := ms.count()
		m := mailMessage(t, boxoffice.EventOrderConfirmed, mailOrder("ord_t", "t@example.com"))
		ms.failData.Store(1)
		err := em.apply(ctx, m)
		var se *SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.Permanent() {
			t.Fatalf("apply returned %v, want a temporary SMTPError 451", err)
		}
		if _, ok := errors.AsType[*PermanentError](err); ok {
			t.Fatalf("apply marked a 451 permanent: %v", err)
		}
		if emailInboxHas(t, e.store, m.ID) {
			t.Fatal("a refused message was recorded in the inbox")
		}
		if err := em.apply(ctx, m); err != nil {
			t.Fatal(err)
		}
		if n := ms.count() - before; n != 1 {
			t.Fatalf("the server received %d messages, want 1", n)
		}
	})

	t.Run("bad recipient is permanent", func(t *testing.T) {
		before := ms.count()
		for _, buyer := range []string{"gone@example.com", "not an address"} {
			m := mailMessage(t, boxoffice.EventOrderConfirmed, mailOrder("ord_p", buyer))
			err := em.apply(ctx, m)
			var se *SMTPError
			if !errors.As(err, &se) || !se.Permanent() {
				t.Errorf("buyer %q: apply returned %v, want a permanent SMTPError", buyer, err)
			}
			// The runner dead-letters a PermanentError at once instead of retrying it for hours.
			if _, ok := errors.AsType[*PermanentError](err); !ok {
				t.Errorf("buyer %q: apply returned %v, want it marked Permanent for the runner", buyer, err)
			}
			if emailInboxHas(t, e.store, m.ID) {
				t.Errorf("buyer %q: a refused message was recorded in the inbox", buyer)
			}
		}
		if n := ms.count() - before; n != 0 {
			t.Fatalf("the server received %d messages, want 0", n)
		}
	})
}

// TestEmailSMTPAuth: the right user and password send; a wrong password fails without recording
// anything and without the password in the error.
func TestEmailSMTPAuth(t *testing.T) {
	e := newEnv(t)
	ms := startMailServer(t, plainText, nil, func(ms *mailServer) { ms.user, ms.pass = "tickets@example.com", "s3cret pass" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := mailMessage(t, boxoffice.EventOrderConfirmed, mailOrder("ord_a", "a@example.com"))

	bad := &Email{Store: e.store, SMTP: smtpConfig(t, "smtp://tickets%40example.com:wrong-guess@"+ms.addr)}
	err := bad.apply(ctx, m)
	if err == nil {
		t.Fatal("apply succeeded with a wrong password")
	}
	if strings.Contains(err.Error(), "wrong-guess") {
		t.Errorf("the error shows the password: %v", err)
	}
	if emailInboxHas(t, e.store, m.ID) || ms.count() != 0 {
		t.Fatal("a failed AUTH sent or recorded the message")
	}
	ms.mu.Lock()
	authFails := ms.authFails
	ms.mu.Unlock()
	if authFails == 0 {
		t.Fatal("the server saw no failed AUTH: the client did not try")
	}

	good := &Email{Store: e.store, SMTP: smtpConfig(t, "smtp://tickets%40example.com:s3cret%20pass@"+ms.addr)}
	if err := good.apply(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := good.apply(ctx, m); err != nil {
		t.Fatal(err)
	}
	got := ms.messages()
	if len(got) != 1 {
		t.Fatalf("the server received %d messages, want 1", len(got))
	}
	// A user that is an address is the sender, as providers that authenticate it require.
	if got[0].from != "tickets@example.com" {
		t.Errorf("envelope sender %q, want the user tickets@example.com", got[0].from)
	}
}

// TestEmailSMTPTLS sends over STARTTLS and over implicit TLS (smtps://), authenticating, and
// checks that the password is never sent in the clear to a host that is not loopback unless the
// URL says insecure=1.
func TestEmailSMTPTLS(t *testing.T) {
	cert, pool := smtpTestCert(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name    string
		mode    tlsMode
		url     string // %s is the server's port
		wantTLS bool
		wantErr string
	}{
		{name: "starttls", mode: startTLS, url: "smtp://u:p@mail.example:%s", wantTLS: true},
		{name: "smtps", mode: implicitTLS, url: "smtps://u:p@mail.example:%s", wantTLS: true},
		{name: "no TLS, remote host", mode: plainText, url: "smtp://u:p@mail.example:%s", wantErr: "insecure=1"},
		{name: "no TLS, insecure=1", mode: plainText, url: "smtp://u:p@mail.example:%s?insecure=1"},
		{name: "no TLS, loopback", mode: plainText, url: "smtp://u:p@127.0.0.1:%s"},
		{name: "smtps to a plain server", mode: plainText, url: "smtps://u:p@mail.example:%s", wantErr: "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ms := startMailServer(t, tc.mode, cert, func(ms *mailServer) { ms.user, ms.pass = "u", "p" })
			_, port, _ := net.SplitHostPort(ms.addr)
			cfg := smtpConfig(t, fmt.Sprintf(tc.url, port))
			cfg.dialAddr = ms.addr // mail.example stands for a remote host; the server is on loopback
			cfg.tlsConfig = &tls.Config{RootCAs: pool, ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
			em := &Email{Store: e.store, SMTP: cfg}
			m := mailMessage(t, boxoffice.EventOrderConfirmed, mailOrder("ord_s", "s@example.com"))
			err := em.apply(ctx, m)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("apply returned %v, want an error about %q", err, tc.wantErr)
				}
				if ms.count() != 0 || emailInboxHas(t, e.store, m.ID) {
					t.Fatal("a refused send reached the server or the inbox")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ms.messages()
			if len(got) != 1 || got[0].tls != tc.wantTLS {
				t.Fatalf("received %d messages (TLS %v), want 1 with TLS %v", len(got), len(got) == 1 && got[0].tls, tc.wantTLS)
			}
		})
	}
}

// TestParseSMTP covers the URL forms, their defaults and the refusals, and that no error or
// printed form shows the password.
func TestParseSMTP(t *testing.T) {
	for _, tc := range []struct {
		url      string
		host     string
		port     int
		tls      bool
		user     string
		from     string
		insecure bool
		inClear  bool
		wantErr  string
	}{
		{url: "smtp://mail.example.com", host: "mail.example.com", port: 587, from: DefaultFrom},
		{url: "smtp://mail.example.com:2525", host: "mail.example.com", port: 2525, from: DefaultFrom},
		{url: "smtps://mail.example.com", host: "mail.example.com", port: 465, tls: true, from: DefaultFrom},
		{url: "smtps://u:secret@mail.example.com:1465", host: "mail.example.com", port: 1465, tls: true, user: "u", from: DefaultFrom},
		{url: "SMTP://u:secret@127.0.0.1:25", host: "127.0.0.1", port: 25, user: "u", from: DefaultFrom, inClear: true},
		{url: "smtp://u:secret@localhost", host: "localhost", port: 587, user: "u", from: DefaultFrom, inClear: true},
		{url: "smtp://u:secret@[::1]:25", host: "::1", port: 25, user: "u", from: DefaultFrom, inClear: true},
		{url: "smtp://u:secret@relay.lan?insecure=1", host: "relay.lan", port: 587, user: "u", from: DefaultFrom, insecure: true, inClear: true},
		{url: "smtp://me%40shop.example:secret@smtp.example.com", host: "smtp.example.com", port: 587, user: "me@shop.example", from: `"boxoffice" <me@shop.example>`},
		{url: "smtp://me%40shop.example:secret@smtp.example.com/?from=Box%20Office%20%3Cbox@shop.example%3E", host: "smtp.example.com", port: 587, user: "me@shop.example", from: `"Box Office" <box@shop.example>`},
		{url: "smtp://h?from=box@shop.example", host: "h", port: 587, from: "<box@shop.example>"},

		{url: "", wantErr: "no scheme"},
		{url: "mail.example.com:25", wantErr: "scheme"},
		{url: "http://u:secret@mail.example.com", wantErr: `scheme "http"`},
		{url: "smtp://", wantErr: "no host"},
		{url: "smtp://u:secret@:25", wantErr: "no host"},
		{url: "smtp:mail.example.com", wantErr: "no host"},
		{url: "smtp://mail.example.com:0", wantErr: "port"},
		{url: "smtp://mail.example.com:70000", wantErr: "port"},
		{url: "smtp://mail.example.com:smtp", wantErr: "URL"},
		{url: "smtp://u@mail.example.com", wantErr: "no password"},
		{url: "smtp://:secret@mail.example.com", wantErr: "without a user"},
		{url: "smtp://mail.example.com/inbox", wantErr: "path"},
		{url: "smtp://mail.example.com?form=a@b.c", wantErr: `unknown parameter "form"`},
		{url: "smtp://mail.example.com?from=not-an-address", wantErr: "not an email address"},
		{url: "smtp://mail.example.com?insecure=yes", wantErr: "insecure"},
		{url: "smtps://mail.example.com?insecure=1", wantErr: "insecure"},
		{url: "smtp://u:sec ret@mail.example.com%", wantErr: "not a URL"},
	} {
		c, err := ParseSMTP(tc.url)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseSMTP(%q) = %v, want an error about %q", tc.url, err, tc.wantErr)
			}
			if s := fmt.Sprint(err); strings.Contains(s, "secret") || strings.Contains(s, "sec ret") {
				t.Errorf("ParseSMTP(%q): the error shows the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSMTP(%q): %v", tc.url, err)
			continue
		}
		if c.Host != tc.host || c.Port != tc.port || c.ImplicitTLS != tc.tls || c.Username != tc.user ||
			c.From != tc.from || c.Insecure != tc.insecure || c.authInClear() != tc.inClear {
			t.Errorf("ParseSMTP(%q) = host %q port %d tls %v user %q from %q insecure %v in-clear %v, want %q %d %v %q %q %v %v",
				tc.url, c.Host, c.Port, c.ImplicitTLS, c.Username, c.From, c.Insecure, c.authInClear(),
				tc.host, tc.port, tc.tls, tc.user, tc.from, tc.insecure, tc.inClear)
		}
		for _, printed := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
			if strings.Contains(printed, "secret") {
				t.Errorf("ParseSMTP(%q) prints the password: %s", tc.url, printed)
			}
		}
	}
}
