package payments

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"boxoffice"
)

// ChargeStatus is where a simulated charge is in its life.
type ChargeStatus string

// Charge states. A pending charge (tok_slow) becomes succeeded by itself; the other two are final.
const (
	ChargePending   ChargeStatus = "pending"
	ChargeSucceeded ChargeStatus = "succeeded"
	ChargeDeclined  ChargeStatus = "declined"
)

// ChargeRecord is one idempotency key's charge as the simulator remembers it, with its refund if
// any. It exists for audits (tests, boxoffice verify) that check money moved once per key.
type ChargeRecord struct {
	Key         string          `json:"key"`
	ID          string          `json:"id"`
	Amount      boxoffice.Money `json:"amount"`
	Token       string          `json:"token"`
	Description string          `json:"description,omitempty"`
	Status      ChargeStatus    `json:"status"`
	Message     string          `json:"message,omitempty"` // why it was declined
	CreatedAt   time.Time       `json:"created_at"`
	// Metadata is what the caller attached to the charge (Stripe's metadata[…] parameters), kept
	// so that an answer, a replay and a listing show it as Stripe would.
	Metadata     map[string]string `json:"metadata,omitempty"`
	Refunded     bool              `json:"refunded"`
	RefundID     string            `json:"refund_id,omitempty"`
	RefundKey    string            `json:"refund_key,omitempty"`
	RefundAmount boxoffice.Money   `json:"refund_amount,omitzero"`
	// RefundCreatedAt is when the refund was made: Stripe's "created" of the refund, the same in
	// the first answer, every replay and every later read, because it is the ledger line's time.
	RefundCreatedAt time.Time         `json:"refund_created_at,omitzero"`
	RefundMetadata  map[string]string `json:"refund_metadata,omitempty"`
}

// Ledger operations, one JSON line each.
const (
	opCharge = "charge" // a charge was created: succeeded, declined or pending
	opSettle = "settle" // a pending charge succeeded
	opRefund = "refund" // a succeeded charge was refunded
)

// ledgerLine is one state change. The same lines drive the live state and the replay, so a
// restarted simulator cannot disagree with the one that wrote the file.
type ledgerLine struct {
	Op          string          `json:"op"`
	Key         string          `json:"key"`
	ID          string          `json:"id"`
	Token       string          `json:"token,omitempty"`
	Amount      boxoffice.Money `json:"amount,omitzero"`
	Description string          `json:"description,omitempty"`
	Status      ChargeStatus    `json:"status,omitempty"`
	Message     string          `json:"message,omitempty"`
	SettleAt    time.Time       `json:"settle_at,omitzero"`
	ChargeID    string          `json:"charge_id,omitempty"`
	// RequestAmount is the refund amount as asked for (zero = all), kept apart from Amount (what was
	// refunded) so that a retry is compared with what it repeats.
	RequestAmount boxoffice.Money `json:"request_amount,omitzero"`
	// Metadata of a charge or refund line. Absent from ledgers written before it existed, which
	// read as no metadata.
	Metadata map[string]string `json:"metadata,omitempty"`
	At       time.Time         `json:"at"`
}

// lineStore is where the ledger lines live: a file (fileLedger) or, for a memory-only simulator,
// a byte buffer (memLedger). The book keeps only offsets into it, so both modes share every line
// of the bookkeeping and differ only in where the bytes are.
type lineStore interface {
	// append stores ln and returns its offset once it is durable (for a file: fsync'd), so that
	// an offset the book holds can always be read back.
	append(ln *ledgerLine) (int64, error)
	// read returns the line at off, which append returned (or a replay passed on).
	read(off int64) (*ledgerLine, error)
	// scan calls fn with every durable line and its offset, in the order they were appended.
	scan(fn func(off int64, ln *ledgerLine) error) error
	// view returns a reader of the durable lines and where they end, for list pages that read
	// only the part of the ledger around a cursor (see book.pageLines).
	view() (r io.ReaderAt, end int64, err error)
	// close makes later appends fail with errClosed.
	close() error
}

var errClosed = errors.New("payments: simulator is closed")

// maxLine bounds one ledger line when it is read back, so that a damaged file without newlines
// fails instead of being read into memory whole. Real lines are far smaller (maxBody bounds what a
// request can put into one).
const maxLine = 16 << 20

// scanLines calls fn with each complete line of r (blank ones skipped) and its offset, streaming,
// so that a ledger of a million charges is never in memory at once. It returns how many bytes hold
// complete lines: a line counts only once its newline is there, because a crash mid-append leaves
// a torn tail that no call was ever answered about.
func scanLines(r io.Reader, fn func(off int64, ln *ledgerLine) error) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		good int64
		long []byte // a line longer than br's buffer, gathered
	)
	for n := 1; ; n++ {
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], raw...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if len(long) > maxLine {
					return good, fmt.Errorf("line %d is longer than %d bytes", n, maxLine)
				}
				raw, err = br.ReadSlice('\n')
				long = append(long, raw...)
			}
			raw = long
		}
		if errors.Is(err, io.EOF) {
			return good, nil // the end, or a torn tail after it
		}
		if err != nil {
			return good, err
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			var ln ledgerLine
			if err := json.Unmarshal(raw, &ln); err != nil {
				return good, fmt.Errorf("line %d: %w", n, err)
			}
			if err := fn(good, &ln); err != nil {
				return good, fmt.Errorf("line %d: %w", n, err)
			}
		}
		good += int64(len(raw))
	}
}

// scanLinesBack calls fn with each line that ends at or before end, newest first, reading r
// backwards a block at a time, so that a list page near a cursor costs what lies between the
// cursor and the page's last line rather than the whole ledger. end must be where a line ends (a
// durable end, or the offset of the line after). A line is complete here once the newline before
// it is found, and no line is longer than maxLine.
func scanLinesBack(r io.ReaderAt, end int64, fn func(off int64, ln *ledgerLine) error) error {
	const block = 64 << 10
	var (
		pos = end  // buf holds the bytes [pos, pos+len(buf))
		buf []byte // ends with the newline of the newest line not given to fn yet
	)
	for {
		for len(buf) > 0 {
			// The newest line starts after the newline before it, or at the start of the file.
			i := bytes.LastIndexByte(buf[:len(buf)-1], '\n')
			if i < 0 && pos > 0 {
				break // its start is in an earlier block
			}
			off := pos + int64(i+1)
			if line := buf[i+1:]; len(bytes.TrimSpace(line)) > 0 {
				var ln ledgerLine
				if err := json.Unmarshal(line, &ln); err != nil {
					return fmt.Errorf("payments: ledger line at offset %d: %w", off, err)
				}
				if err := fn(off, &ln); err != nil {
					return err
				}
			}
			buf = buf[:i+1]
		}
		if pos == 0 {
			return nil
		}
		if len(buf) > maxLine {
			return fmt.Errorf("payments: ledger line before offset %d is longer than %d bytes", pos+int64(len(buf)), maxLine)
		}
		n := min(block, pos)
		chunk := make([]byte, n+int64(len(buf)))
		if m, err := r.ReadAt(chunk[:n], pos-n); int64(m) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("payments: read ledger at offset %d: %w", pos-n, err)
		}
		copy(chunk[n:], buf)
		buf, pos = chunk, pos-n
	}
}

// scanLinesFrom calls fn with each line in [start, end) of r, oldest first, with its offset in
// the ledger; start must be where a line starts.
func scanLinesFrom(r io.ReaderAt, start, end int64, fn func(off int64, ln *ledgerLine) error) error {
	_, err := scanLines(io.NewSectionReader(r, start, end-start), func(off int64, ln *ledgerLine) error {
		return fn(start+off, ln)
	})
	return err
}

// readLineAt reads the line that starts at off, without its newline.
func readLineAt(r io.ReaderAt, off int64) (*ledgerLine, error) {
	for size := 512; ; size *= 2 {
		buf := make([]byte, size)
		n, err := r.ReadAt(buf, off)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			var ln ledgerLine
			if err := json.Unmarshal(buf[:i], &ln); err != nil {
				return nil, fmt.Errorf("payments: ledger line at offset %d: %w", off, err)
			}
			return &ln, nil
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("payments: ledger line at offset %d: %w", off, io.ErrUnexpectedEOF)
		case err != nil:
			return nil, err
		case size > maxLine:
			return nil, fmt.Errorf("payments: ledger line at offset %d is longer than %d bytes", off, maxLine)
		}
	}
}

func encodeLine(ln *ledgerLine) ([]byte, error) {
	data, err := json.Marshal(ln)
	if err != nil {
		return nil, fmt.Errorf("payments: encode ledger line: %w", err)
	}
	return append(data, '\n'), nil
}

// memLedger is the lineStore of a memory-only simulator: the lines a file would hold, in a buffer.
// Bytes once appended never change, so readers work on a snapshot of the slice without the lock.
type memLedger struct {
	mu     sync.Mutex
	buf    []byte
	closed bool
}

func (m *memLedger) append(ln *ledgerLine) (int64, error) {
	data, err := encodeLine(ln)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, errClosed
	}
	off := int64(len(m.buf))
	m.buf = append(m.buf, data...)
	return off, nil
}

func (m *memLedger) snapshot() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buf
}

func (m *memLedger) read(off int64) (*ledgerLine, error) {
	return readLineAt(bytes.NewReader(m.snapshot()), off)
}

func (m *memLedger) scan(fn func(off int64, ln *ledgerLine) error) error {
	_, err := scanLines(bytes.NewReader(m.snapshot()), fn)
	return err
}

func (m *memLedger) view() (io.ReaderAt, int64, error) {
	b := m.snapshot()
	return bytes.NewReader(b), int64(len(b)), nil
}

func (m *memLedger) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// fileLedger is the append-only file behind a Sim. Appends are group-committed: whoever finds no
// write in progress writes and fsyncs everything queued so far, so a thousand concurrent charges
// pay for a few fsyncs instead of a thousand, and each append still returns only once its line is
// durable.
type fileLedger struct {
	path string
	f    *os.File // appended to; also read at offsets (pread does not move the append position)

	mu         sync.Mutex
	cond       sync.Cond
	buf        []byte // lines queued for the next write
	end        int64  // the file's size once everything queued is written: the next line's offset
	durableEnd int64  // bytes written and fsync'd: what scan may show
	writing    bool
	err        error // sticky: after a failed write or fsync nothing is known to be on disk
	closed     bool
	syncs      int64 // fsyncs of appends so far: how many batches the appends took

	// beforeSync, in tests, runs before each append's fsync, without the lock.
	beforeSync func()
}

// openLedger opens (or creates) the ledger at path, replays it into a book and cuts off a torn
// tail, so that the next line starts on a line of its own instead of being glued to the garbage.
func openLedger(path string) (*book, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("payments: ledger directory: %w", err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("payments: open ledger: %w", err)
	}
	fail := func(err error) (*book, error) {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("payments: stat ledger: %w", err))
	}
	l := &fileLedger{path: path, f: f}
	l.cond.L = &l.mu
	b, good, err := replay(l, io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return fail(fmt.Errorf("payments: ledger %s: %w", path, err))
	}
	if good < fi.Size() {
		if err := f.Truncate(good); err != nil {
			return fail(fmt.Errorf("payments: cut torn ledger tail: %w", err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("payments: sync ledger: %w", err))
		}
	}
	if created {
		// The file's name must survive a crash too, not only its contents.
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fail(err)
		}
	}
	l.end, l.durableEnd = good, good
	return b, nil
}

// replay rebuilds a book from the ledger lines in r, which store holds at the same offsets (the
// book reads lines back to tell keys whose hashes collide apart). It returns how many bytes hold
// complete lines.
func replay(store lineStore, r io.Reader) (*book, int64, error) {
	b := newBook(store)
	good, err := scanLines(r, b.replayLine)
	if err != nil {
		return nil, 0, err
	}
	return b, good, nil
}

// LoadLedger reads the charges a simulator recorded at path without starting one, so that an audit
// can run beside (or after) the server. A torn last line is ignored; pending charges are reported
// as the file has them, even when their settle time has passed.
func LoadLedger(path string) ([]ChargeRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("payments: read ledger: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("payments: read ledger: %w", err)
	}
	// A read-only view: it is never appended to, and what the replay found complete is all that
	// the listing may show, even while a server appends to the file meanwhile.
	l := &fileLedger{path: path, f: f, closed: true}
	l.cond.L = &l.mu
	b, good, err := replay(l, io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return nil, fmt.Errorf("payments: ledger %s: %w", path, err)
	}
	l.end, l.durableEnd = good, good
	recs, err := b.records()
	if err != nil {
		return nil, fmt.Errorf("payments: ledger %s: %w", path, err)
	}
	return recs, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("payments: open ledger directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("payments: sync ledger directory: %w", err)
	}
	return nil
}

// append writes ln and returns its offset once it is fsync'd.
func (l *fileLedger) append(ln *ledgerLine) (int64, error) {
	data, err := encodeLine(ln)
	if err != nil {
		return 0, err
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, errClosed
	}
	if l.err != nil {
		return 0, l.err
	}
	// The file is only ever appended to, by this ledger, in queue order: the line lands at end.
	off := l.end
	l.buf = append(l.buf, data...)
	l.end += int64(len(data))
	mine := l.end
	for l.durableEnd < mine {
		switch {
		case l.err != nil:
			return 0, l.err
		case l.closed:
			return 0, errClosed
		case l.writing:
			l.cond.Wait()
			continue
		}
		l.writing = true
		buf, upto := l.buf, l.end
		l.buf = nil
		l.mu.Unlock()
		_, err := l.f.Write(buf)
		if err == nil {
			if l.beforeSync != nil {
				l.beforeSync()
			}
			err = l.f.Sync()
		}
		l.mu.Lock()
		l.syncs++
		l.writing = false
		if err != nil {
			l.err = fmt.Errorf("payments: write ledger: %w", err)
		} else {
			l.durableEnd = upto
		}
		l.cond.Broadcast()
	}
	return off, nil
}

// read reads the line at off with pread: offsets come from append or the replay, so the line is
// on disk in full.
func (l *fileLedger) read(off int64) (*ledgerLine, error) {
	ln, err := readLineAt(l.f, off)
	if errors.Is(err, os.ErrClosed) {
		return nil, errClosed
	}
	return ln, err
}

// scan streams the durable part of the file through a handle of its own, so that it works beside
// appends and after close (an audit of a stopped simulator), and shows no line that a failed
// fsync could still take back.
func (l *fileLedger) scan(fn func(off int64, ln *ledgerLine) error) error {
	l.mu.Lock()
	end := l.durableEnd
	l.mu.Unlock()
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("payments: read ledger: %w", err)
	}
	defer f.Close()
	good, err := scanLines(io.NewSectionReader(f, 0, end), fn)
	if err == nil && good < end {
		err = fmt.Errorf("payments: ledger %s: the line at offset %d is cut short", l.path, good)
	}
	return err
}

// view reads the file with pread, up to what is durable: a line still waiting for its fsync may
// yet be lost, so no page shows it.
func (l *fileLedger) view() (io.ReaderAt, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return closedAsErrClosed{l.f}, l.durableEnd, nil
}

// closedAsErrClosed reports a read of a closed ledger file as errClosed, as read does, so that the
// HTTP server answers 503 "shutting down" rather than an internal error.
type closedAsErrClosed struct{ f *os.File }

func (c closedAsErrClosed) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.f.ReadAt(p, off)
	if errors.Is(err, os.ErrClosed) {
		err = errClosed
	}
	return n, err
}

// close waits for a write in progress and closes the file; appends after it fail.
func (l *fileLedger) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.writing {
		l.cond.Wait()
	}
	if l.closed {
		return nil
	}
	l.closed = true
	l.cond.Broadcast()
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("payments: close ledger: %w", err)
	}
	return nil
}
