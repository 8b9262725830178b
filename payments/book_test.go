package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
)

// collideAll makes every key and id hash alike for the rest of the test, so that each lookup has to
// tell charges apart by reading their lines. Tests that use it must not run in parallel.
func collideAll(t *testing.T) {
	t.Helper()
	prev := hashKey
	hashKey = func(string) uint64 { return 42 }
	t.Cleanup(func() { hashKey = prev })
}

// withAndWithoutCollisions runs test twice, as subtests: with the real key hash, and with every
// key hashing alike (collideAll), so that every lookup must tell keys apart by their lines.
func withAndWithoutCollisions(t *testing.T, test func(t *testing.T, collide bool)) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collide=%t", collide), func(t *testing.T) {
			if collide {
				collideAll(t)
			}
			test(t, collide)
		})
	}
}

// countReads counts the lines the book reads back from its store.
type countReads struct {
	lineStore
	n atomic.Int64
}

func (c *countReads) read(off int64) (*ledgerLine, error) {
	c.n.Add(1)
	return c.lineStore.read(off)
}

func countSimReads(s *Sim) *countReads {
	c := &countReads{lineStore: s.book.lines}
	s.book.lines = c // before any other goroutine uses s
	return c
}

func ledgerPath(t *testing.T) string { return filepath.Join(t.TempDir(), "ledger.jsonl") }

func reopen(t *testing.T, s *Sim, opts SimOptions) *Sim {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return newSim(t, opts)
}

func TestRetryAfterRestartAnswersTheSameCharge(t *testing.T) {
	withAndWithoutCollisions(t, func(t *testing.T, collide bool) {
		ctx := context.Background()
		opts := SimOptions{LedgerPath: ledgerPath(t), FlakyFailures: -1}
		s := newSim(t, opts)
		const n = 40
		first := make([]ChargeRecord, n)
		for i := range n {
			key := fmt.Sprintf("ord_%d/charge", i)
			token := []string{TokenOK, TokenDeclined, TokenFlaky, "tok_unknown"}[i%4]
			rec, _, err := s.chargeRecord(ctx, chargeReq(key, token, int64(100+i)), nil)
			if (err != nil) != (token == TokenDeclined || token == "tok_unknown") {
				t.Fatalf("charge %s with %s: %v", key, token, err)
			}
			first[i] = rec
		}
		before := s.Charges()
		s = reopen(t, s, opts)
		reads := countSimReads(s)
		for i := range n {
			token := []string{TokenOK, TokenDeclined, TokenFlaky, "tok_unknown"}[i%4]
			rec, _, err := s.chargeRecord(ctx, chargeReq(first[i].Key, token, int64(100+i)), nil)
			if !reflect.DeepEqual(rec, first[i]) {
				t.Fatalf("retry of %s after restart = %+v, %v; want %+v", first[i].Key, rec, err, first[i])
			}
			if first[i].Status == ChargeDeclined {
				wantCode(t, err, boxoffice.EPAYMENTDECLINED)
			}
			// The same key with another amount is refused, not charged again.
			_, err = s.Charge(ctx, chargeReq(first[i].Key, token, 1))
			wantCode(t, err, boxoffice.EVALIDATION)
		}
		if !collide && reads.n.Load() > 2*n {
			t.Errorf("%d reads for %d retries and %d refused reuses", reads.n.Load(), n, n)
		}
		if after := s.Charges(); !reflect.DeepEqual(after, before) {
			t.Fatalf("charges after the retries:\n%+v\nbefore:\n%+v", after, before)
		}
		// A new key still makes a new charge, with an id of its own.
		ch, err := s.Charge(ctx, chargeReq("ord_new/charge", TokenOK, 5))
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range before {
			if rec.ID == ch.ID {
				t.Fatalf("new charge reuses id %s", ch.ID)
			}
		}
		if got := len(s.Charges()); got != n+1 {
			t.Fatalf("%d charges, want %d", got, n+1)
		}
	})
}

// Concurrent first attempts of keys that all collide still charge each key once, and retries find
// their own charge among the others.
func TestCollidingKeysConcurrently(t *testing.T) {
	collideAll(t)
	path := ledgerPath(t)
	s := newSim(t, SimOptions{LedgerPath: path})
	const keys = 30
	var wg sync.WaitGroup
	ids := make([][]string, keys)
	var mu sync.Mutex
	for i := range 3 * keys {
		wg.Go(func() {
			k := i % keys
			ch, err := s.Charge(context.Background(), chargeReq(fmt.Sprintf("k%d", k), TokenOK, int64(k)))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[k] = append(ids[k], ch.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for k, got := range ids {
		if len(got) != 3 || got[0] != got[1] || got[1] != got[2] {
			t.Fatalf("key k%d answered %v", k, got)
		}
		if seen[got[0]] {
			t.Fatalf("id %s answered for two keys", got[0])
		}
		seen[got[0]] = true
	}
	recs := s.Charges()
	if len(recs) != keys {
		t.Fatalf("%d charges, want %d", len(recs), keys)
	}
	loaded, err := LoadLedger(path)
	if err != nil || !reflect.DeepEqual(loaded, recs) {
		t.Fatalf("LoadLedger = %v; want the live list", err)
	}
}

func TestLookupByIDAfterRestart(t *testing.T) {
	withAndWithoutCollisions(t, func(t *testing.T, collide bool) {
		ctx := context.Background()
		opts := SimOptions{LedgerPath: ledgerPath(t)}
		s := newSim(t, opts)
		var recs []ChargeRecord
		for i := range 10 {
			rec, _, err := s.chargeRecord(ctx, chargeReq(fmt.Sprintf("k%d", i), TokenOK, 100), nil)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rec)
		}
		if _, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "r3", ChargeID: recs[3].ID}); err != nil {
			t.Fatal(err)
		}
		recs[3] = s.Charges()[3]
		s = reopen(t, s, opts)
		for _, want := range recs {
			got, ok := s.recordByID(want.ID)
			if !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("recordByID(%s) = %+v, %t; want %+v", want.ID, got, ok, want)
			}
			if got, ok := s.recordByKey(want.Key); !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("recordByKey(%s) = %+v, %t; want %+v", want.Key, got, ok, want)
			}
		}
		for _, id := range unknownIDs(recs[0].ID, recs[3].RefundID) {
			if got, ok := s.recordByID(id); ok {
				t.Fatalf("recordByID(%q) found %+v", id, got)
			}
			if id != "" { // an empty id is a validation error before any lookup
				_, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "r-" + id, ChargeID: id})
				wantCode(t, err, boxoffice.ENOTFOUND)
			}
		}
	})
}

// unknownIDs are ids no charge has, some of them shaped to hit the index: the id of a real charge
// with other random bits or another time, a refund's id, and strings that only look like ids.
func unknownIDs(real, refundID string) []string {
	flip := func(i int) string {
		b := []byte(real)
		if b[i] == '0' {
			b[i] = '1'
		} else {
			b[i] = '0'
		}
		return string(b)
	}
	return []string{
		flip(len(real) - 1), flip(len(real) - 3), flip(len(PrefixCharge)),
		refundID, strings.ToUpper(real), real + "0", real[:len(real)-1], "ch_", "", "ch_unknown",
		boxoffice.NewID(PrefixCharge, time.Now()),
	}
}

// oldLedger writes a ledger as earlier versions of the simulator did, with ids that are random
// (boxoffice.NewID) instead of carrying their key's hash.
func oldLedger(t *testing.T, path string, now time.Time) (ids map[string]string) {
	t.Helper()
	ids = map[string]string{}
	var lines []ledgerLine
	add := func(key, token string, status ChargeStatus, settleAt time.Time) {
		id := boxoffice.NewID(PrefixCharge, now)
		ids[key] = id
		lines = append(lines, ledgerLine{Op: opCharge, Key: key, ID: id, Token: token, Amount: eur(700),
			Description: "old", Status: status, SettleAt: settleAt, At: now})
	}
	add("old-ok", TokenOK, ChargeSucceeded, time.Time{})
	add("old-refunded", TokenOK, ChargeSucceeded, time.Time{})
	add("old-declined", TokenDeclined, ChargeDeclined, time.Time{})
	add("old-settled", TokenSlow, ChargePending, now.Add(time.Second))
	add("old-pending", TokenSlow, ChargePending, now.Add(time.Second))
	lines = append(lines,
		ledgerLine{Op: opRefund, Key: "old-r", ID: boxoffice.NewID(PrefixRefund, now), ChargeID: ids["old-refunded"],
			Amount: eur(700), At: now},
		ledgerLine{Op: opSettle, Key: "old-settled", ID: ids["old-settled"], At: now.Add(time.Second)})
	var data []byte
	for _, ln := range lines {
		b, err := json.Marshal(ln)
		if err != nil {
			t.Fatal(err)
		}
		data = append(append(data, b...), '\n')
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestOldStyleIDsStillWork(t *testing.T) {
	withAndWithoutCollisions(t, func(t *testing.T, collide bool) {
		ctx := context.Background()
		clock := newFakeClock()
		path := ledgerPath(t)
		ids := oldLedger(t, path, clock.Now())
		clock.Advance(time.Hour) // old-pending is overdue: the replay settles it
		opts := SimOptions{LedgerPath: path, Now: clock.Now}
		s := newSim(t, opts)
		for i := range 2 {
			for key, id := range ids {
				rec, ok := s.recordByID(id)
				if !ok || rec.Key != key || rec.ID != id {
					t.Fatalf("pass %d: recordByID(%s) = %+v, %t; want key %s", i, id, rec, ok, key)
				}
				if want := key != "old-declined"; (rec.Status == ChargeSucceeded) != want {
					t.Fatalf("pass %d: %s is %s", i, key, rec.Status)
				}
				// old-ok is refunded by the first pass.
				if rec.Refunded != (key == "old-refunded" || key == "old-ok" && i > 0) {
					t.Fatalf("pass %d: %s refunded=%t", i, key, rec.Refunded)
				}
			}
			// Refunds are found by id whether the id is old-style (random) or carries its key's
			// hash; the first pass made old-ok's refund with a new-style id.
			for _, key := range []string{"old-refunded", "old-ok"} {
				rec, _ := s.recordByID(ids[key])
				if !rec.Refunded {
					continue
				}
				if _, ln, err := s.book.refundByID(rec.RefundID); err != nil || ln == nil || ln.ChargeID != ids[key] {
					t.Fatalf("pass %d: refundByID(%s) = %+v, %v; want the refund of %s", i, rec.RefundID, ln, err, key)
				}
			}
			for _, id := range unknownIDs(ids["old-ok"], "re_x") {
				if got, ok := s.recordByID(id); ok {
					t.Fatalf("recordByID(%q) found %+v", id, got)
				}
			}
			ch, err := s.Charge(ctx, chargeReq("old-ok", TokenOK, 700))
			if err != nil || ch.ID != ids["old-ok"] {
				t.Fatalf("retry of old-ok = %+v, %v", ch, err)
			}
			// An old-style id can be refunded, once.
			re, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "new-r", ChargeID: ids["old-ok"], Amount: eur(1)})
			if err != nil || re.ChargeID != ids["old-ok"] {
				t.Fatalf("refund of old-ok = %+v, %v", re, err)
			}
			_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "new-r2", ChargeID: ids["old-refunded"]})
			wantCode(t, err, boxoffice.EVALIDATION)
			if _, err := s.Charge(ctx, chargeReq(fmt.Sprintf("new-%d", i), TokenOK, 1)); err != nil {
				t.Fatal(err)
			}
			s = reopen(t, s, opts)
		}
		if n := len(s.Charges()); n != 7 {
			t.Fatalf("%d charges, want 7", n)
		}
	})
}

func TestRefundIdempotentAfterRestart(t *testing.T) {
	withAndWithoutCollisions(t, func(t *testing.T, collide bool) {
		ctx := context.Background()
		opts := SimOptions{LedgerPath: ledgerPath(t)}
		s := newSim(t, opts)
		var chs []*boxoffice.Charge
		for i := range 6 {
			ch, err := s.Charge(ctx, chargeReq(fmt.Sprintf("c%d", i), TokenOK, 1000))
			if err != nil {
				t.Fatal(err)
			}
			chs = append(chs, ch)
		}
		refunds := map[string]*boxoffice.Refund{}
		for i, ch := range chs[:4] {
			key := fmt.Sprintf("r%d", i)
			re, err := s.Refund(ctx, boxoffice.RefundRequest{Key: key, ChargeID: ch.ID, Amount: eur(int64(100 * (i + 1)))})
			if err != nil {
				t.Fatal(err)
			}
			refunds[key] = re
		}
		before := s.Charges()
		s = reopen(t, s, opts)
		for i, ch := range chs[:4] {
			key := fmt.Sprintf("r%d", i)
			req := boxoffice.RefundRequest{Key: key, ChargeID: ch.ID, Amount: eur(int64(100 * (i + 1)))}
			re, err := s.Refund(ctx, req)
			if err != nil || *re != *refunds[key] {
				t.Fatalf("retry of %s = %+v, %v; want %+v", key, re, err, refunds[key])
			}
			rec, _, err := s.refundRecord(ctx, req, nil)
			if err != nil || !reflect.DeepEqual(rec, before[i]) {
				t.Fatalf("refundRecord(%s) = %+v, %v; want %+v", key, rec, err, before[i])
			}
			// The key is bound to its request, and the charge to its one refund.
			_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: key, ChargeID: ch.ID})
			wantCode(t, err, boxoffice.EVALIDATION)
			_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: key, ChargeID: chs[5].ID, Amount: req.Amount})
			wantCode(t, err, boxoffice.EVALIDATION)
			_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: key + "-other", ChargeID: ch.ID})
			wantCode(t, err, boxoffice.EVALIDATION)
		}
		// An unrefunded charge still can be, once.
		re, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "r4", ChargeID: chs[4].ID})
		if err != nil || re.ChargeID != chs[4].ID {
			t.Fatalf("refund of c4 = %+v, %v", re, err)
		}
		s = reopen(t, s, opts)
		if again, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "r4", ChargeID: chs[4].ID}); err != nil || *again != *re {
			t.Fatalf("retry of r4 = %+v, %v; want %+v", again, err, re)
		}
		recs := s.Charges()
		for i, rec := range recs {
			if rec.Refunded != (i <= 4) {
				t.Fatalf("charge %d refunded=%t", i, rec.Refunded)
			}
		}
		if !reflect.DeepEqual(recs[:4], before[:4]) {
			t.Fatalf("after restarts:\n%+v\nbefore:\n%+v", recs[:4], before[:4])
		}
	})
}

// A new key is decided without reading the ledger back: a miss in the index is definite.
func TestNewKeysReadNothing(t *testing.T) {
	ctx := context.Background()
	for _, path := range []string{"", ledgerPath(t)} {
		s := newSim(t, SimOptions{LedgerPath: path, SlowDelay: time.Millisecond})
		reads := countSimReads(s)
		for i := range 200 {
			token := []string{TokenOK, TokenDeclined, TokenSlow}[i%3]
			if _, err := s.Charge(ctx, chargeReq(fmt.Sprintf("k%d", i), token, 100)); err != nil && token != TokenDeclined {
				t.Fatal(err)
			}
		}
		if n := reads.n.Load(); n != 0 {
			t.Fatalf("ledger %q: %d reads for 200 new keys", path, n)
		}
		if _, err := s.Charge(ctx, chargeReq("k0", TokenOK, 100)); err != nil {
			t.Fatal(err)
		}
		if n := reads.n.Load(); n != 1 {
			t.Fatalf("ledger %q: %d reads for one retry, want 1", path, n)
		}
	}
}

// Lines longer than the replay's read buffer are read back whole.
func TestLongLines(t *testing.T) {
	ctx := context.Background()
	opts := SimOptions{LedgerPath: ledgerPath(t)}
	s := newSim(t, opts)
	req := chargeReq("long", TokenOK, 100)
	req.Description = strings.Repeat("x", 200<<10)
	ch, err := s.Charge(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Charge(ctx, chargeReq("short", TokenOK, 100)); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, opts)
	rec, ok := s.recordByID(ch.ID)
	if !ok || rec.Description != req.Description {
		t.Fatalf("recordByID after restart: found %t, description of %d bytes", ok, len(rec.Description))
	}
	if recs := s.Charges(); len(recs) != 2 || recs[0].Description != req.Description {
		t.Fatalf("Charges() after restart: %d", len(recs))
	}
}

// TestBytesPerFinalCharge checks the point of the index: a final charge costs the simulator an
// index entry, not a record. A Go map of uint64 to int64 takes some 20 to 40 bytes an entry,
// depending on where it is in its growth; 80 leaves room without letting records back in (they
// took over 400 bytes a charge).
func TestBytesPerFinalCharge(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 50_000
	}
	s := newSim(t, SimOptions{LedgerPath: ledgerPath(t)})
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc

	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 128 { // concurrent charges share fsyncs, which keeps the test quick
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				token := TokenOK
				if i%10 == 0 {
					token = TokenDeclined
				}
				_, err := s.Charge(context.Background(), chargeReq(fmt.Sprintf("ord_%026d/charge", i), token, 1500))
				if err != nil && token == TokenOK {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	perCharge := (float64(ms.HeapAlloc) - float64(before)) / float64(n)
	t.Logf("%.1f bytes of heap per final charge over %d charges", perCharge, n)
	if perCharge > 80 {
		t.Fatalf("%.1f bytes of heap per final charge, want at most 80", perCharge)
	}
	runtime.KeepAlive(s)
}

// TestLedgerGroupCommits checks that concurrent charges share fsyncs: while one batch is being
// fsync'd every other charge queues, and the next write takes them all, so 64 concurrent charges
// cost two fsyncs; and each charge is in the ledger after a restart.
func TestLedgerGroupCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	b, err := openLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	l := b.lines.(*fileLedger)
	const n = 64
	first := true
	l.beforeSync = func() {
		if !first {
			return
		}
		first = false
		// Hold the first fsync until every other append has queued its line behind it.
		deadline := time.Now().Add(20 * time.Second)
		for {
			l.mu.Lock()
			queued := bytes.Count(l.buf, []byte("\n"))
			l.mu.Unlock()
			if queued == n-1 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("only %d of %d appends queued behind the first fsync", queued, n-1)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.append(&ledgerLine{Op: "charge", Key: fmt.Sprintf("ord_%d/charge", i), ID: fmt.Sprintf("ch_%d", i), Status: ChargeSucceeded,
				Amount: boxoffice.Money{Amount: 100, Currency: "EUR"}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.mu.Lock()
	syncs := l.syncs
	l.mu.Unlock()
	if syncs != 2 {
		t.Errorf("%d concurrent appends took %d fsyncs, want 2 (the first alone, then the rest together)", n, syncs)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	lines, err := LoadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != n {
		t.Errorf("the ledger holds %d charges after a restart, want %d", len(lines), n)
	}
}
