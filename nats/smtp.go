package nats

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"
)

// DefaultFrom is the sender of the emails when neither the --smtp URL nor its user names one.
const DefaultFrom = "boxoffice <tickets@boxoffice.invalid>"

// smtpTimeout bounds one whole delivery (dial, greeting, STARTTLS, AUTH and the transaction), so
// that a stuck server makes the attempt fail and be retried on the consumer's schedule. It may
// exceed the consumer's AckWait: the runner reports progress while the attempt runs, so JetStream
// does not hand the message to another server meanwhile.
const smtpTimeout = 20 * time.Second

// SMTPConfig says where and how the email consumer sends mail: a parsed --smtp URL.
//
// The URL forms are
//
//	smtp://[user:pass@]host[:port][?from=…&insecure=1]   port 587, STARTTLS when the server offers it
//	smtps://[user:pass@]host[:port][?from=…]             port 465, TLS from the first byte
//
// STARTTLS is opportunistic so that a relay on the same machine without TLS works, but a server
// that offers it must then present a certificate valid for host: a failed handshake is an error,
// never a quiet fallback to plain text.
//
// With a user, the client authenticates with PLAIN or LOGIN (whichever the server offers; failing
// both, the strongest other mechanism it offers). The password crosses the wire in the clear only
// to a loopback host (the traffic never leaves the machine) or when the URL says insecure=1; to any
// other host without TLS the attempt fails instead of sending it.
//
// from= sets the sender (an RFC 5322 address, "Name <addr>" or "addr"); without it a user that is
// an email address is the sender, as most providers require, and otherwise DefaultFrom.
//
// The password is kept unexported and String prints the URL redacted, so that logging or printing
// a config never shows it.
type SMTPConfig struct {
	// Host is the server's name or IP address.
	Host string
	// Port is the server's port: the URL's, else 587 for smtp:// and 465 for smtps://.
	Port int
	// ImplicitTLS is set for smtps://: the connection is TLS from its first byte.
	ImplicitTLS bool
	// Username, when set, makes the client authenticate.
	Username string
	// From is the sender, formatted for a header.
	From string
	// Insecure allows AUTH over an unencrypted connection to a host that is not loopback.
	Insecure bool

	password string
	redacted string
	// tlsConfig, when set (by tests), replaces the system roots and the default TLS settings.
	tlsConfig *tls.Config
	// dialAddr, when set (by tests), is dialled instead of Host:Port, so that a test server on
	// loopback can stand for a host that is not.
	dialAddr string
}

// ParseSMTP parses and checks an --smtp URL. Its errors never contain the password, so that they
// can be printed as they are.
func ParseSMTP(raw string) (*SMTPConfig, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only what is wrong with it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a URL (%v); want smtp://[user:pass@]host[:port] or smtps://…", err)
	}
	c := &SMTPConfig{redacted: u.Redacted()}
	switch u.Scheme {
	case "smtp":
		c.Port = 587
	case "smtps":
		c.Port = 465
		c.ImplicitTLS = true
	case "":
		return nil, errors.New("no scheme; want smtp://[user:pass@]host[:port] or smtps://…")
	default:
		return nil, fmt.Errorf("scheme %q: want smtp:// (STARTTLS when offered) or smtps:// (implicit TLS)", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%s: no host; want %s://[user:pass@]host[:port]", c.redacted, u.Scheme)
	}
	c.Host = u.Hostname()
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s: port %q is not in 1-65535", c.redacted, p)
		}
		c.Port = n
	}
	if u.Path != "" && u.Path != "/" || u.Fragment != "" {
		return nil, fmt.Errorf("%s: a path or fragment means nothing here; want %s://[user:pass@]host[:port]", c.redacted, u.Scheme)
	}
	if u.User != nil {
		c.Username = u.User.Username()
		pass, ok := u.User.Password()
		switch {
		case c.Username == "":
			return nil, fmt.Errorf("%s: a password without a user", c.redacted)
		case !ok || pass == "":
			return nil, fmt.Errorf("%s: user %q has no password", c.redacted, c.Username)
		}
		c.password = pass
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%s: query: %v", c.redacted, err)
	}
	for key, vals := range q {
		// An unknown key is most likely a typo of a known one: refuse it rather than ignore it.
		if key != "from" && key != "insecure" {
			return nil, fmt.Errorf("%s: unknown parameter %q (known: from, insecure)", c.redacted, key)
		}
		if len(vals) != 1 {
			return nil, fmt.Errorf("%s: parameter %q given %d times", c.redacted, key, len(vals))
		}
	}
	switch v := q.Get("insecure"); v {
	case "", "0", "false":
	case "1", "true":
		if c.ImplicitTLS {
			return nil, fmt.Errorf("%s: insecure has no meaning with smtps://, which is always TLS", c.redacted)
		}
		c.Insecure = true
	default:
		return nil, fmt.Errorf("%s: insecure=%q: want 1 or 0", c.redacted, v)
	}
	switch from := q.Get("from"); {
	case from != "":
		a, err := mail.ParseAddress(from)
		if err != nil {
			return nil, fmt.Errorf("%s: from=%q is not an email address: %v", c.redacted, from, err)
		}
		c.From = a.String()
	case strings.Contains(c.Username, "@"):
		if a, err := mail.ParseAddress(c.Username); err == nil {
			c.From = (&mail.Address{Name: "boxoffice", Address: a.Address}).String()
		}
	}
	if c.From == "" {
		c.From = DefaultFrom
	}
	return c, nil
}

// String is the URL with its password redacted.
func (c *SMTPConfig) String() string { return c.redacted }

// GoString is String, so that %#v does not print the password either.
func (c *SMTPConfig) GoString() string { return c.redacted }

// authInClear says whether the password may go over a connection without TLS.
func (c *SMTPConfig) authInClear() bool {
	if c.Insecure || strings.EqualFold(c.Host, "localhost") {
		return true
	}
	ip := net.ParseIP(c.Host)
	return ip != nil && ip.IsLoopback()
}

func (c *SMTPConfig) tls() *tls.Config {
	if c.tlsConfig != nil {
		return c.tlsConfig
	}
	return &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
}

// SMTPError is a delivery that failed: the step that failed and, when the server refused, its
// reply code.
type SMTPError struct {
	// Server is the host:port the delivery went to.
	Server string
	// Step is "connect" (dial, greeting, STARTTLS, AUTH), "sender", "recipient" or "data".
	Step string
	// Code is the server's reply code, 0 when it gave none (a network error, say).
	Code int
	// Err is the cause.
	Err error

	badAddress bool
}

// Error describes the failure without the password, which no step ever includes.
func (e *SMTPError) Error() string {
	return "smtp " + e.Server + " " + e.Step + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *SMTPError) Unwrap() error { return e.Err }

// Permanent says that sending the same message again will fail the same way: the server refused
// the recipient or the content with a 5xx, or the recipient is no address. A refused connect, AUTH
// or sender is not permanent even with a 5xx: it fails every message alike, fixing the
// configuration fixes it, and the messages should then go out.
func (e *SMTPError) Permanent() bool {
	return e.badAddress || (e.Step == "recipient" || e.Step == "data") && e.Code >= 500
}

// fail is the SMTPError of a delivery to c that failed at step.
func (c *SMTPConfig) fail(step string, err error) *SMTPError {
	se := &SMTPError{Server: net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), Step: step, Err: err}
	var te *textproto.Error
	if errors.As(err, &te) {
		se.Code = te.Code
	}
	return se
}

// send delivers msg, as rendered, from the sender from to the recipient to. It returns nil only
// once the server has answered 250 to the end of DATA: from then on the server owns the message,
// and the caller may record it as sent.
func (c *SMTPConfig) send(ctx context.Context, from, to string, msg []byte) error {
	sender, err := mail.ParseAddress(from)
	if err != nil {
		return c.fail("sender", fmt.Errorf("%q is not an address: %w", from, err))
	}
	rcpt, err := mail.ParseAddress(to)
	if err != nil {
		se := c.fail("recipient", fmt.Errorf("%q is not an address: %w", to, err))
		se.badAddress = true
		return se
	}
	ctx, cancel := context.WithTimeout(ctx, smtpTimeout)
	defer cancel()

	// Own the dial, so that the connection can be closed whatever go-mail has made of it, and so
	// that ending ctx (a shutdown) interrupts a session stuck in a read, which go-mail's own
	// deadlines would only end after smtpTimeout.
	var (
		mu   sync.Mutex
		conn net.Conn
	)
	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	if c.dialAddr != "" {
		addr = c.dialAddr
	}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		var nc net.Conn
		var err error
		if c.ImplicitTLS {
			nc, err = (&tls.Dialer{NetDialer: &d, Config: c.tls()}).DialContext(ctx, network, addr)
		} else {
			nc, err = d.DialContext(ctx, network, addr)
		}
		if err == nil {
			mu.Lock()
			conn = nc
			mu.Unlock()
		}
		return nc, err
	}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			_ = conn.SetDeadline(time.Now())
		}
	})
	defer stop()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			_ = conn.Close()
		}
	}()

	opts := []gomail.Option{
		gomail.WithPort(c.Port), gomail.WithTimeout(smtpTimeout), gomail.WithDialContextFunc(dial),
		gomail.WithTLSConfig(c.tls()),
	}
	if c.ImplicitTLS {
		opts = append(opts, gomail.WithSSL()) // the dial does the TLS; this only skips STARTTLS
	} else {
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	if c.Username != "" {
		mechs := []gomail.SMTPAuthType{gomail.SMTPAuthPlain, gomail.SMTPAuthLogin}
		if c.authInClear() {
			mechs = []gomail.SMTPAuthType{gomail.SMTPAuthPlainNoEnc, gomail.SMTPAuthLoginNoEnc}
		}
		opts = append(opts, gomail.WithOpportunisticSMTPAuth(mechs...),
			gomail.WithUsername(c.Username), gomail.WithPassword(c.password))
	}
	// A client per delivery: go-mail's client keeps per-connection state, and a receipt per order
	// is no rate that a kept-open connection would pay for.
	client, err := gomail.NewClient(c.Host, opts...)
	if err != nil {
		return c.fail("connect", err)
	}
	sc, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		if errors.Is(err, gosmtp.ErrUnencrypted) {
			err = fmt.Errorf("%w: %s offers no TLS, and the password goes in the clear only to a loopback host or with ?insecure=1 (or use smtps://)", err, c.Host)
		}
		return c.fail("connect", err)
	}
	// The envelope takes the bare <address>; the display name is for the From header only.
	if err := sc.Mail((&mail.Address{Address: sender.Address}).String()); err != nil {
		return c.fail("sender", err)
	}
	if err := sc.Rcpt((&mail.Address{Address: rcpt.Address}).String()); err != nil {
		return c.fail("recipient", err)
	}
	w, err := sc.Data()
	if err != nil {
		return c.fail("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return c.fail("data", err)
	}
	// Close ends DATA and reads the server's answer: 250 means accepted, and only then is the
	// message sent.
	if err := w.Close(); err != nil {
		return c.fail("data", err)
	}
	// The message is the server's now: a failed QUIT changes nothing about that.
	_ = sc.Quit()
	return nil
}
