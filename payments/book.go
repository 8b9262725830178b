package payments

import (
	"cmp"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// The book is the simulator's state: what the ledger lines add up to. It does not keep the charges
// themselves, which would take a few hundred bytes each and a server selling a million tickets a
// few hundred megabytes: a final charge is only an entry in an index from the 64-bit hash of its
// idempotency key to the offset of its line in the ledger (a file, or a buffer for a memory-only
// simulator), and everything else is read back from that line when a retry asks for it. A miss in
// the index is a definite "new key" and costs no read; a hit is confirmed by reading the line and
// comparing the whole key, so keys whose hashes collide are told apart. Only pending charges, which
// have a channel and a timer, are kept whole until they settle.
//
// Charge and refund ids carry the hash of their key (see objectID), so a lookup by id goes through
// the same index as a lookup by key; ids that do not (written by older versions) get an index of
// their own at replay.

// charge is a pending charge: the state its waiters and its settle timer need. Its fields are
// guarded by book.mu.
type charge struct {
	ChargeRecord
	off      int64 // its charge line: NewSim settles overdue charges in creation order
	settleAt time.Time
	settled  chan struct{} // closed when the charge succeeds
	timer    *time.Timer   // settles the charge on schedule, with or without a caller waiting
}

// book is the index over a lineStore; see the comment above.
type book struct {
	lines lineStore
	hash  func(string) uint64 // hashKey when the book was made, so a test's swap cannot tear it

	mu         sync.Mutex
	byKey      offsets            // hash(charge key) → its charge line, for every charge
	legacyIDs  offsets            // hash(charge id) → its charge line, for ids that do not carry their key's hash
	refundKeys offsets            // hash(refund key) → its refund line
	refundsOf  offsets            // hash(charge id) → its refund line
	legacyRefs offsets            // hash(refund id) → its refund line, for ids that do not carry their key's hash
	live       map[string]*charge // pending charges by key
	liveIDs    map[string]*charge // the same by id
	stopped    bool               // the simulator closed: no timer is armed any more
}

func newBook(lines lineStore) *book {
	return &book{
		lines:   lines,
		hash:    hashKey,
		live:    make(map[string]*charge),
		liveIDs: make(map[string]*charge),
	}
}

// hashKey hashes keys and ids for the index. It must give the same answer in every process that
// opens a ledger, because charge ids carry it: so FNV-1a, not hash/maphash with its per-process
// seed. A variable so that tests can make every key collide.
var hashKey = fnv1a

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(s string) uint64 { return fnv1aAdd(fnvOffset, s) }

// fnv1aAdd continues an FNV-1a hash h with s, without the allocation hash/fnv's Write of a
// converted string costs.
func fnv1aAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// idEncoding is boxoffice's id alphabet, so that charge ids look like every other id.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// idLen is the length of a charge or refund id: the prefix and 26 characters of 128 bits.
const idLen = len(PrefixCharge) + 26

// objectID makes a charge or refund id like boxoffice.NewID's (48 bits of milliseconds first, so
// ids sort by creation time) whose next 64 bits are keyHash, the hash of the object's key, and
// whose last 16 are random. A lookup by id thus finds the charge or refund through the key index
// without a map of its own; since the hash decides the index entry and not the object, the random
// bits (and the check for an id in use, in newChargeID and newRefundID) only have to tell objects
// with colliding keys apart.
func objectID(prefix string, now time.Time, keyHash uint64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	binary.BigEndian.PutUint64(b[6:14], keyHash)
	_, _ = rand.Read(b[14:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// idKeyHash returns the key hash an id with prefix carries, if it has the shape of one. Any string
// of that shape decodes, so the hash is only where to look: the id read back decides.
func idKeyHash(prefix, id string) (uint64, bool) {
	if len(prefix) != len(PrefixCharge) || len(id) != idLen || !strings.HasPrefix(id, prefix) {
		return 0, false
	}
	var b [16]byte
	if n, err := idEncoding.Decode(b[:], []byte(id[len(prefix):])); err != nil || n != len(b) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[6:14]), true
}

// idCandidates appends the offsets of every charge line that may have id: those filed under the
// key hash id carries, and those of old-style ids filed under the id's own hash. b.mu is held.
func (b *book) idCandidates(dst []int64, id string) []int64 {
	if h, ok := idKeyHash(PrefixCharge, id); ok {
		dst = b.byKey.appendTo(dst, h)
	}
	return b.legacyIDs.appendTo(dst, b.hash(id))
}

// refundCandidates is idCandidates for a refund id. b.mu is held.
func (b *book) refundCandidates(dst []int64, id string) []int64 {
	if h, ok := idKeyHash(PrefixRefund, id); ok {
		dst = b.refundKeys.appendTo(dst, h)
	}
	return b.legacyRefs.appendTo(dst, b.hash(id))
}

// findByKey finds the charge made under key: live when it is pending, else its charge line, else
// neither. Lines are read without b.mu; a charge that is not live at the moment the offsets are
// taken is final, since a charge goes live only when it is created.
func (b *book) findByKey(key string) (*charge, *ledgerLine, error) {
	var buf [4]int64
	b.mu.Lock()
	if c := b.live[key]; c != nil {
		b.mu.Unlock()
		return c, nil, nil
	}
	offs := b.byKey.appendTo(buf[:0], b.hash(key))
	b.mu.Unlock()
	return b.firstLine(offs, func(ln *ledgerLine) bool { return ln.Op == opCharge && ln.Key == key })
}

// findByID is findByKey for a charge id. An id that is not a charge's finds nothing, whatever it
// decodes to, because the id read back must equal it.
func (b *book) findByID(id string) (*charge, *ledgerLine, error) {
	var buf [4]int64
	b.mu.Lock()
	if c := b.liveIDs[id]; c != nil {
		b.mu.Unlock()
		return c, nil, nil
	}
	offs := b.idCandidates(buf[:0], id)
	b.mu.Unlock()
	return b.firstLine(offs, func(ln *ledgerLine) bool { return ln.Op == opCharge && ln.ID == id })
}

// refundByKey returns the refund line made under an idempotency key, or nil.
func (b *book) refundByKey(key string) (*ledgerLine, error) {
	return b.refundLine(&b.refundKeys, key, func(ln *ledgerLine) bool { return ln.Key == key })
}

// refundOf returns the refund line of a charge, or nil.
func (b *book) refundOf(chargeID string) (*ledgerLine, error) {
	return b.refundLine(&b.refundsOf, chargeID, func(ln *ledgerLine) bool { return ln.ChargeID == chargeID })
}

// refundLine returns the first refund line filed in idx under the hash of s that match accepts,
// or nil: the hash only says where to look, the line read back decides.
func (b *book) refundLine(idx *offsets, s string, match func(*ledgerLine) bool) (*ledgerLine, error) {
	var buf [4]int64
	b.mu.Lock()
	offs := idx.appendTo(buf[:0], b.hash(s))
	b.mu.Unlock()
	_, ln, err := b.firstLine(offs, func(ln *ledgerLine) bool { return ln.Op == opRefund && match(ln) })
	return ln, err
}

func (b *book) firstLine(offs []int64, match func(*ledgerLine) bool) (*charge, *ledgerLine, error) {
	_, ln, err := b.lineAt(offs, match)
	return nil, ln, err
}

// lineAt returns the first line among offs that match accepts, with its offset, or nil.
func (b *book) lineAt(offs []int64, match func(*ledgerLine) bool) (int64, *ledgerLine, error) {
	for _, off := range offs {
		ln, err := b.lines.read(off)
		if err != nil {
			return 0, nil, err
		}
		if match(ln) {
			return off, ln, nil
		}
	}
	return 0, nil, nil
}

// refundByID returns the refund line with id and its offset, or nil.
func (b *book) refundByID(id string) (int64, *ledgerLine, error) {
	var buf [4]int64
	b.mu.Lock()
	offs := b.refundCandidates(buf[:0], id)
	b.mu.Unlock()
	return b.lineAt(offs, func(ln *ledgerLine) bool { return ln.Op == opRefund && ln.ID == id })
}

// chargeOffset returns the offset of the charge line with id, which is where the charge stands in
// a listing; found is false for an id that is no charge's.
func (b *book) chargeOffset(id string) (off int64, found bool, err error) {
	var buf [4]int64
	b.mu.Lock()
	if c := b.liveIDs[id]; c != nil {
		b.mu.Unlock()
		return c.off, true, nil
	}
	offs := b.idCandidates(buf[:0], id)
	b.mu.Unlock()
	off, ln, err := b.lineAt(offs, func(ln *ledgerLine) bool { return ln.Op == opCharge && ln.ID == id })
	return off, ln != nil, err
}

// record is the ChargeRecord of what findByKey or findByID found: a snapshot of a live charge, or
// a final charge's line with its refund, read back. found is false when they found nothing.
func (b *book) record(c *charge, ln *ledgerLine) (rec ChargeRecord, found bool, err error) {
	switch {
	case c != nil:
		return b.snapshot(c), true, nil
	case ln == nil:
		return ChargeRecord{}, false, nil
	}
	rec = recordOf(ln)
	if rec.Status == ChargePending {
		// Only live charges are pending; this one has settled since its line was written.
		rec.Status = ChargeSucceeded
	}
	if rec.Status == ChargeSucceeded {
		r, err := b.refundOf(rec.ID)
		if err != nil {
			return ChargeRecord{}, false, err
		}
		if r != nil {
			setRefund(&rec, r)
		}
	}
	return rec, true, nil
}

// chargeByKey returns the record of key's charge; c is the live charge when it is pending.
func (b *book) chargeByKey(key string) (rec ChargeRecord, c *charge, found bool, err error) {
	c, ln, err := b.findByKey(key)
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	rec, found, err = b.record(c, ln)
	return rec, c, found, err
}

// chargeByID returns the record of the charge with id; c is the live charge when it is pending.
func (b *book) chargeByID(id string) (rec ChargeRecord, c *charge, found bool, err error) {
	c, ln, err := b.findByID(id)
	if err != nil {
		return ChargeRecord{}, nil, false, err
	}
	rec, found, err = b.record(c, ln)
	return rec, c, found, err
}

func recordOf(ln *ledgerLine) ChargeRecord {
	return ChargeRecord{
		Key: ln.Key, ID: ln.ID, Amount: ln.Amount, Token: ln.Token, Description: ln.Description,
		Status: ln.Status, Message: ln.Message, CreatedAt: ln.At, Metadata: ln.Metadata,
	}
}

func setRefund(rec *ChargeRecord, r *ledgerLine) {
	rec.Refunded, rec.RefundID, rec.RefundKey, rec.RefundAmount = true, r.ID, r.Key, r.Amount
	rec.RefundCreatedAt, rec.RefundMetadata = r.At, r.Metadata
}

// newChargeID returns an id for a new charge of a key with hash keyHash that no charge has. The
// caller holds the lock of keyHash (see chargeLock), so no other charge with an id filed under the
// same hash can be made meanwhile.
func (b *book) newChargeID(now time.Time, keyHash uint64) (string, error) {
	for {
		id := objectID(PrefixCharge, now, keyHash)
		c, ln, err := b.findByID(id)
		if err != nil {
			return "", err
		}
		if c == nil && ln == nil {
			return id, nil
		}
	}
}

// newRefundID is newChargeID for a refund; the caller holds the lock of keyHash (see refundLock).
func (b *book) newRefundID(now time.Time, keyHash uint64) (string, error) {
	for {
		id := objectID(PrefixRefund, now, keyHash)
		_, ln, err := b.refundByID(id)
		if err != nil {
			return "", err
		}
		if ln == nil {
			return id, nil
		}
	}
}

// replayLine checks one line of a ledger being replayed and adds it. A live call checks everything
// before it logs, so an error here means a ledger that was not written by this code (or was
// damaged somewhere other than its tail).
func (b *book) replayLine(off int64, ln *ledgerLine) error {
	if err := b.check(ln); err != nil {
		return err
	}
	_, err := b.insert(ln, off)
	return err
}

// check is what a replay asks of a line before insert adds it. Reading lines back happens only
// on hash hits, so a ledger without collisions replays without a read.
func (b *book) check(ln *ledgerLine) error {
	switch ln.Op {
	case opCharge:
		if ln.Key == "" || ln.ID == "" {
			return errors.New("charge without key or id")
		}
		if c, prev, err := b.findByKey(ln.Key); err != nil {
			return err
		} else if c != nil || prev != nil {
			return fmt.Errorf("second charge for key %q", ln.Key)
		}
		if c, prev, err := b.findByID(ln.ID); err != nil {
			return err
		} else if c != nil || prev != nil {
			return fmt.Errorf("second charge with id %q", ln.ID)
		}
	case opSettle:
		c, prev, err := b.findByKey(ln.Key)
		switch {
		case err != nil:
			return err
		case c != nil && c.ID == ln.ID:
			return nil
		case prev != nil && prev.ID == ln.ID:
			rec, _, err := b.record(nil, prev)
			if err != nil {
				return err
			}
			return fmt.Errorf("settle of charge %q that is %s", ln.ID, rec.Status)
		}
		return fmt.Errorf("settle of unknown charge %q", ln.ID)
	case opRefund:
		if ln.Key == "" || ln.ID == "" {
			return errors.New("refund without key or id")
		}
		if prev, err := b.refundByKey(ln.Key); err != nil {
			return err
		} else if prev != nil {
			return fmt.Errorf("second refund for key %q", ln.Key)
		}
		if _, prev, err := b.refundByID(ln.ID); err != nil {
			return err
		} else if prev != nil {
			return fmt.Errorf("second refund with id %q", ln.ID)
		}
		rec, _, found, err := b.chargeByID(ln.ChargeID)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("refund of unknown charge %q", ln.ChargeID)
		case rec.Status != ChargeSucceeded || rec.Refunded:
			return fmt.Errorf("refund of charge %q that is %s (refunded %t)", rec.ID, rec.Status, rec.Refunded)
		}
	}
	return nil
}

// insert adds a line at off that is known to be valid (by check, or by the live call that logged
// it) to the index. It returns the live charge a pending charge line makes.
func (b *book) insert(ln *ledgerLine, off int64) (*charge, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ln.Op {
	case opCharge:
		var c *charge
		switch ln.Status {
		case ChargeSucceeded, ChargeDeclined:
		case ChargePending:
			c = &charge{ChargeRecord: recordOf(ln), off: off, settleAt: ln.SettleAt, settled: make(chan struct{})}
		default:
			return nil, fmt.Errorf("charge %q with unknown status %q", ln.ID, ln.Status)
		}
		h := b.hash(ln.Key)
		b.byKey.add(h, off)
		if idh, ok := idKeyHash(PrefixCharge, ln.ID); !ok || idh != h {
			b.legacyIDs.add(b.hash(ln.ID), off)
		}
		if c != nil {
			b.live[c.Key], b.liveIDs[c.ID] = c, c
		}
		return c, nil
	case opSettle:
		c := b.live[ln.Key]
		if c == nil || c.ID != ln.ID {
			return nil, fmt.Errorf("settle of unknown charge %q", ln.ID)
		}
		if c.timer != nil {
			c.timer.Stop()
		}
		c.Status = ChargeSucceeded
		close(c.settled)
		// From here on the charge is its line and its index entry, like any final charge.
		delete(b.live, c.Key)
		delete(b.liveIDs, c.ID)
		return nil, nil
	case opRefund:
		h := b.hash(ln.Key)
		b.refundKeys.add(h, off)
		b.refundsOf.add(b.hash(ln.ChargeID), off)
		if idh, ok := idKeyHash(PrefixRefund, ln.ID); !ok || idh != h {
			b.legacyRefs.add(b.hash(ln.ID), off)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unknown operation %q", ln.Op)
}

// snapshot copies a live charge's record.
func (b *book) snapshot(c *charge) ChargeRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return c.ChargeRecord
}

// pendingState is what a waiter for c needs to know.
func (b *book) pendingState(c *charge) (pending bool, settled <-chan struct{}, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return c.Status == ChargePending, c.settled, c.settleAt
}

// pending returns the live charges in creation order.
func (b *book) pending() []*charge {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*charge, 0, len(b.live))
	for _, c := range b.live {
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y *charge) int { return cmp.Compare(x.off, y.off) })
	return out
}

// arm starts c's settle timer unless the simulator has closed, so that no timer outlives Close.
func (b *book) arm(c *charge, d time.Duration, settle func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || c.Status != ChargePending {
		return
	}
	c.timer = time.AfterFunc(max(d, 0), settle)
}

// stop stops every settle timer and arms no more.
func (b *book) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	for _, c := range b.live {
		if c.timer != nil {
			c.timer.Stop()
		}
	}
}

// records lists every charge in creation order, with its state and refund, by streaming the
// ledger: the listing is the only thing that holds all of them, and only while it is used. Settle
// and refund lines find their charge among those listed so far through the index (whose offsets
// are the listing's order, so a binary search finds the position), which spares the stream maps of
// its own. A charge line the index does not know yet (logged, not yet added) is listed all the
// same; nothing can refer to it before it is added.
func (b *book) records() ([]ChargeRecord, error) {
	var (
		out  []ChargeRecord
		offs []int64 // out[i]'s line is at offs[i]
		buf  []int64
	)
	find := func(cands []int64, match func(*ChargeRecord) bool) *ChargeRecord {
		for _, off := range cands {
			if i, ok := slices.BinarySearch(offs, off); ok && match(&out[i]) {
				return &out[i]
			}
		}
		return nil
	}
	err := b.lines.scan(func(off int64, ln *ledgerLine) error {
		switch ln.Op {
		case opCharge:
			out = append(out, recordOf(ln))
			offs = append(offs, off)
		case opSettle:
			b.mu.Lock()
			buf = b.byKey.appendTo(buf[:0], b.hash(ln.Key))
			b.mu.Unlock()
			if rec := find(buf, func(r *ChargeRecord) bool { return r.Key == ln.Key }); rec != nil {
				rec.Status = ChargeSucceeded
			}
		case opRefund:
			b.mu.Lock()
			buf = b.idCandidates(buf[:0], ln.ChargeID)
			b.mu.Unlock()
			if rec := find(buf, func(r *ChargeRecord) bool { return r.ID == ln.ChargeID }); rec != nil {
				setRefund(rec, ln)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []ChargeRecord{}
	}
	return out, nil
}

// errStop ends a scan early; it is not a failure.
var errStop = errors.New("payments: stop scanning")

// pageQuery asks for one page of a list endpoint: the ledger lines match accepts, newest first.
type pageQuery struct {
	match  func(*ledgerLine) bool
	limit  int   // at most this many lines; 0 means all
	after  int64 // only lines older than the line at this offset (starting_after); -1 for none
	before int64 // only lines newer than the line at this offset (ending_before); -1 for none
}

// pageLines returns one page of ledger lines, newest first, and whether more lines that match lie
// beyond it, in the direction the query reads. It reads the ledger from the cursor outwards (or
// back from the end) and stops at the first line past the page, so paging through a million
// charges a hundred at a time reads each line about once, not once a page.
//
// Lines are read as they are in the ledger; the state they have since reached (a settle, a
// refund) is the caller's to look up through the index.
func (b *book) pageLines(q pageQuery) (page []*ledgerLine, hasMore bool, err error) {
	r, end, err := b.lines.view()
	if err != nil {
		return nil, false, err
	}
	collect := func(_ int64, ln *ledgerLine) error {
		if !q.match(ln) {
			return nil
		}
		page = append(page, ln)
		if q.limit > 0 && len(page) > q.limit { // one beyond the page says has_more
			return errStop
		}
		return nil
	}
	if q.before >= 0 {
		// Newer than the cursor: forwards from it, past its own line.
		err = scanLinesFrom(r, min(q.before, end), end, func(off int64, ln *ledgerLine) error {
			if off == q.before {
				return nil
			}
			return collect(off, ln)
		})
	} else {
		from := end
		if q.after >= 0 {
			from = min(q.after, end)
		}
		err = scanLinesBack(r, from, collect)
	}
	if err != nil && !errors.Is(err, errStop) {
		return nil, false, err
	}
	if q.limit > 0 && len(page) > q.limit {
		page, hasMore = page[:q.limit], true
	}
	if q.before >= 0 {
		slices.Reverse(page) // read oldest first; listed newest first
	}
	return page, hasMore, nil
}

// recordsOf turns charge lines into records with the state the charges have now: pending while
// live, else settled, and with their refund.
func (b *book) recordsOf(lines []*ledgerLine) ([]ChargeRecord, error) {
	out := make([]ChargeRecord, 0, len(lines))
	for _, ln := range lines {
		var c *charge
		if ln.Status == ChargePending {
			// A pending line is live, settled, or (between the append of the call making it and
			// its insert) not in the index yet, when the line itself is the truth. findByID tells
			// the three apart in one look at the index, which a check of live alone would not.
			var indexed *ledgerLine
			var err error
			if c, indexed, err = b.findByID(ln.ID); err != nil {
				return nil, err
			}
			if c == nil && indexed == nil {
				out = append(out, recordOf(ln))
				continue
			}
		}
		rec, _, err := b.record(c, ln)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}
