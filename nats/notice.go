package nats

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"path/filepath"
	"time"

	"boxoffice"
)

// SendNotice sends a plain-text email to to at once, the way the receipts go (over SMTP when
// e.SMTP is set, else as an .eml file under e.Dir), but outside the event stream: a message that
// belongs to no order event and to no feed or webhook, such as the sign-in code the buyer's page
// sends (a code in an event would reach every webhook subscribed to it). It is not retried and
// not deduplicated: the caller answers its own user with the error, and asking again sends a new
// message. Its file is named ntc_<random>.eml, apart from the receipts' evt_<event id>.eml.
func (e *Email) SendNotice(ctx context.Context, to, subject, text string) error {
	if !boxoffice.ValidEmail(to) {
		return fmt.Errorf("notice to %q: not an email address", to)
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id) // crypto/rand.Read never fails (it crashes the program instead)
	name := "ntc_" + hex.EncodeToString(id)
	var b bytes.Buffer
	e.writeHeader(&b, to, mime.QEncoding.Encode("utf-8", headerSafe(subject)), time.Now(), name)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qw := quotedprintable.NewWriter(&b)
	_, _ = qw.Write([]byte(text))
	_ = qw.Close() // writes to a bytes.Buffer, which does not fail
	switch {
	case e.SMTP != nil:
		return e.SMTP.send(ctx, e.sender(), to, b.Bytes())
	case e.Dir == "":
		return errors.New("notice: no mail directory and no SMTP server")
	}
	return writeFileAtomic(filepath.Join(e.Dir, name+".eml"), b.Bytes())
}
