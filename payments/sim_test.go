package payments

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/internal/checkfor"
)

// fakeClock is a clock tests move by hand, so that "the slow charge is due now" needs no sleep.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newSim(t *testing.T, opts SimOptions) *Sim {
	t.Helper()
	s, err := NewSim(opts)
	if err != nil {
		t.Fatalf("NewSim: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func eur(n int64) boxoffice.Money { return boxoffice.Money{Amount: n, Currency: "EUR"} }

func chargeReq(key, token string, amount int64) boxoffice.ChargeRequest {
	return boxoffice.ChargeRequest{Key: key, Token: token, Amount: eur(amount), Description: "test"}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := boxoffice.ErrorCode(err); got != code {
		t.Fatalf("error %v has code %q, want %q", err, got, code)
	}
}

// eventually polls cond, because the tests check outcomes, not timings.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	checkfor.Until(t, 5*time.Second, 5*time.Millisecond, what, cond)
}

func TestChargeOK(t *testing.T) {
	s := newSim(t, SimOptions{})
	ctx := context.Background()
	ch, err := s.Charge(ctx, chargeReq("k1", TokenOK, 1500))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ch.ID, PrefixCharge) || ch.Amount != eur(1500) {
		t.Fatalf("charge = %+v", ch)
	}
	again, err := s.Charge(ctx, chargeReq("k1", TokenOK, 1500))
	if err != nil || again.ID != ch.ID {
		t.Fatalf("retry = %+v, %v; want id %s", again, err, ch.ID)
	}
	recs := s.Charges()
	if len(recs) != 1 || recs[0].ID != ch.ID || recs[0].Status != ChargeSucceeded || recs[0].Key != "k1" {
		t.Fatalf("Charges() = %+v", recs)
	}
}

func TestChargeDeclinedIsRemembered(t *testing.T) {
	s := newSim(t, SimOptions{})
	ctx := context.Background()
	_, err := s.Charge(ctx, chargeReq("k1", TokenDeclined, 1500))
	wantCode(t, err, boxoffice.EPAYMENTDECLINED)
	_, err2 := s.Charge(ctx, chargeReq("k1", TokenDeclined, 1500))
	wantCode(t, err2, boxoffice.EPAYMENTDECLINED)
	if err.Error() != err2.Error() {
		t.Fatalf("retry answered %v, first %v", err2, err)
	}
	// The decline is final for the key: another card needs another key.
	_, err = s.Charge(ctx, chargeReq("k1", TokenOK, 1500))
	wantCode(t, err, boxoffice.EVALIDATION)
	if recs := s.Charges(); len(recs) != 1 || recs[0].Status != ChargeDeclined {
		t.Fatalf("Charges() = %+v", recs)
	}
}

func TestUnknownTokenIsDeclined(t *testing.T) {
	s := newSim(t, SimOptions{})
	_, err := s.Charge(context.Background(), chargeReq("k1", "tok_nope", 100))
	wantCode(t, err, boxoffice.EPAYMENTDECLINED)
	if !strings.Contains(boxoffice.ErrorMessage(err), "unknown") {
		t.Fatalf("message %q does not say the token is unknown", boxoffice.ErrorMessage(err))
	}
}

func TestFlakyFailsThenSucceeds(t *testing.T) {
	s := newSim(t, SimOptions{FlakyFailures: 3})
	ctx := context.Background()
	for i := range 3 {
		_, err := s.Charge(ctx, chargeReq("k1", TokenFlaky, 100))
		wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)
		if n := len(s.Charges()); n != 0 {
			t.Fatalf("after failure %d: %d charges, want 0", i+1, n)
		}
	}
	ch, err := s.Charge(ctx, chargeReq("k1", TokenFlaky, 100))
	if err != nil {
		t.Fatalf("attempt 4: %v", err)
	}
	again, err := s.Charge(ctx, chargeReq("k1", TokenFlaky, 100))
	if err != nil || again.ID != ch.ID {
		t.Fatalf("retry = %+v, %v; want id %s", again, err, ch.ID)
	}
	// Failures are counted per key.
	_, err = s.Charge(ctx, chargeReq("k2", TokenFlaky, 100))
	wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)
}

func TestFlakyDefaultAndNone(t *testing.T) {
	ctx := context.Background()
	s := newSim(t, SimOptions{})
	for range 2 {
		_, err := s.Charge(ctx, chargeReq("k", TokenFlaky, 100))
		wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)
	}
	if _, err := s.Charge(ctx, chargeReq("k", TokenFlaky, 100)); err != nil {
		t.Fatalf("third attempt with the default: %v", err)
	}
	none := newSim(t, SimOptions{FlakyFailures: -1})
	if _, err := none.Charge(ctx, chargeReq("k", TokenFlaky, 100)); err != nil {
		t.Fatalf("FlakyFailures -1: %v", err)
	}
}

func TestKeyReusedWithAnotherRequest(t *testing.T) {
	s := newSim(t, SimOptions{})
	ctx := context.Background()
	if _, err := s.Charge(ctx, chargeReq("k1", TokenOK, 100)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Charge(ctx, chargeReq("k1", TokenOK, 200))
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Charge(ctx, chargeReq("k1", TokenSlow, 100))
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Charge(ctx, boxoffice.ChargeRequest{Key: "k1", Token: TokenOK, Amount: boxoffice.Money{Amount: 100, Currency: "USD"}})
	wantCode(t, err, boxoffice.EVALIDATION)

	// A key that only failed transiently is still bound to its request.
	if _, err := s.Charge(ctx, chargeReq("k2", TokenFlaky, 100)); err == nil {
		t.Fatal("flaky succeeded at once")
	}
	_, err = s.Charge(ctx, chargeReq("k2", TokenFlaky, 999))
	wantCode(t, err, boxoffice.EVALIDATION)
	if n := len(s.Charges()); n != 1 {
		t.Fatalf("%d charges, want 1", n)
	}
}

func TestInvalidRequests(t *testing.T) {
	s := newSim(t, SimOptions{})
	ctx := context.Background()
	_, err := s.Charge(ctx, chargeReq("", TokenOK, 100))
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Charge(ctx, chargeReq("k", TokenOK, -1))
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Refund(ctx, boxoffice.RefundRequest{ChargeID: "ch_x"})
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "r"})
	wantCode(t, err, boxoffice.EVALIDATION)
	if n := len(s.Charges()); n != 0 {
		t.Fatalf("%d charges, want 0", n)
	}
}

func TestSameKeyConcurrentlyChargesOnce(t *testing.T) {
	for _, token := range []string{TokenOK, TokenFlaky, TokenSlow, TokenDeclined} {
		t.Run(token, func(t *testing.T) {
			s := newSim(t, SimOptions{LedgerPath: filepath.Join(t.TempDir(), "ledger.jsonl"), SlowDelay: 100 * time.Millisecond})
			var wg sync.WaitGroup
			ids := make([]string, 100)
			errs := make([]error, 100)
			for i := range 100 {
				wg.Go(func() {
					ch, err := s.Charge(context.Background(), chargeReq("same", token, 100))
					if ch != nil {
						ids[i] = ch.ID
					}
					errs[i] = err
				})
			}
			wg.Wait()
			recs := s.Charges()
			if len(recs) != 1 {
				t.Fatalf("%d charges, want 1: %+v", len(recs), recs)
			}
			transient := 0
			for i := range 100 {
				switch boxoffice.ErrorCode(errs[i]) {
				case "":
					if ids[i] != recs[0].ID {
						t.Fatalf("goroutine %d got charge %s, want %s", i, ids[i], recs[0].ID)
					}
				case boxoffice.EPAYMENTUNAVAILABLE:
					transient++
				case boxoffice.EPAYMENTDECLINED:
					if token != TokenDeclined {
						t.Fatalf("goroutine %d: %v", i, errs[i])
					}
				default:
					t.Fatalf("goroutine %d: %v", i, errs[i])
				}
			}
			if token == TokenFlaky && transient != 2 {
				t.Fatalf("%d transient failures, want 2", transient)
			}
		})
	}
}

func TestManyKeysConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	s := newSim(t, SimOptions{LedgerPath: path})
	const n = 2000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i%(n/2)) // every key twice, so retries race with first attempts
			if _, err := s.Charge(context.Background(), chargeReq(key, TokenOK, 100)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	recs := s.Charges()
	if len(recs) != n/2 {
		t.Fatalf("%d charges, want %d", len(recs), n/2)
	}
	loaded, err := LoadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sortedByKey(loaded), sortedByKey(recs)) {
		t.Fatal("ledger differs from the live state")
	}
}

func sortedByKey(recs []ChargeRecord) map[string]ChargeRecord {
	m := make(map[string]ChargeRecord, len(recs))
	for _, r := range recs {
		m[r.Key] = r
	}
	return m
}

func TestSlowSettlesOnScheduleAfterDeadline(t *testing.T) {
	s := newSim(t, SimOptions{SlowDelay: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Charge(ctx, chargeReq("k1", TokenSlow, 100))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// Pending, or settled already on a slow machine; that it does not settle early is
	// TestSlowRetryWaitsOnlyForTheRest's business.
	recs := s.Charges()
	if len(recs) != 1 {
		t.Fatalf("Charges() = %+v, want one", recs)
	}
	// Nobody waits for it any more, and still it settles.
	eventually(t, "the slow charge to settle", func() bool { return s.Charges()[0].Status == ChargeSucceeded })
	ch, err := s.Charge(context.Background(), chargeReq("k1", TokenSlow, 100))
	if err != nil || ch.ID != recs[0].ID {
		t.Fatalf("retry = %+v, %v; want id %s", ch, err, recs[0].ID)
	}
}

func TestSlowWaitsWithoutDeadline(t *testing.T) {
	s := newSim(t, SimOptions{SlowDelay: 50 * time.Millisecond})
	ch, err := s.Charge(context.Background(), chargeReq("k1", TokenSlow, 100))
	if err != nil {
		t.Fatal(err)
	}
	if recs := s.Charges(); recs[0].ID != ch.ID || recs[0].Status != ChargeSucceeded {
		t.Fatalf("Charges() = %+v", recs)
	}
}

// The delay counts from the first attempt: with a clock the test moves, a retry answers at once
// once the clock passed it, while a real-time wait (an hour here) could not explain it.
func TestSlowRetryWaitsOnlyForTheRest(t *testing.T) {
	clock := newFakeClock()
	s := newSim(t, SimOptions{SlowDelay: time.Hour, Now: clock.Now})
	try := func(timeout time.Duration) (*boxoffice.Charge, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return s.Charge(ctx, chargeReq("k1", TokenSlow, 100))
	}
	if _, err := try(20 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first attempt: %v", err)
	}
	clock.Advance(59 * time.Minute)
	if _, err := try(20 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("attempt before the delay: %v", err)
	}
	clock.Advance(time.Minute)
	ch, err := try(10 * time.Second)
	if err != nil {
		t.Fatalf("attempt after the delay: %v", err)
	}
	if recs := s.Charges(); len(recs) != 1 || recs[0].ID != ch.ID || recs[0].Status != ChargeSucceeded {
		t.Fatalf("Charges() = %+v", recs)
	}
}

func TestCancelledContextChargesNothing(t *testing.T) {
	s := newSim(t, SimOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Charge(ctx, chargeReq("k1", TokenOK, 100)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if n := len(s.Charges()); n != 0 {
		t.Fatalf("%d charges, want 0", n)
	}
}

func TestRefund(t *testing.T) {
	s := newSim(t, SimOptions{})
	ctx := context.Background()
	ch, err := s.Charge(ctx, chargeReq("c1", TokenOK, 1000))
	if err != nil {
		t.Fatal(err)
	}
	req := boxoffice.RefundRequest{Key: "r1", ChargeID: ch.ID}
	re, err := s.Refund(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(re.ID, PrefixRefund) || re.ChargeID != ch.ID {
		t.Fatalf("refund = %+v", re)
	}
	again, err := s.Refund(ctx, req)
	if err != nil || *again != *re {
		t.Fatalf("retry = %+v, %v; want %+v", again, err, re)
	}
	_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "r2", ChargeID: ch.ID})
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "r1", ChargeID: ch.ID, Amount: eur(5)})
	wantCode(t, err, boxoffice.EVALIDATION)

	recs := s.Charges()
	if len(recs) != 1 || !recs[0].Refunded || recs[0].RefundID != re.ID || recs[0].RefundAmount != eur(1000) || recs[0].RefundKey != "r1" {
		t.Fatalf("Charges() = %+v", recs)
	}
}

func TestRefundRejects(t *testing.T) {
	s := newSim(t, SimOptions{})
	ctx := context.Background()
	ch, err := s.Charge(ctx, chargeReq("c1", TokenOK, 1000))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "r1", ChargeID: "ch_unknown"})
	wantCode(t, err, boxoffice.ENOTFOUND)
	_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "r2", ChargeID: ch.ID, Amount: eur(1001)})
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "r3", ChargeID: ch.ID, Amount: boxoffice.Money{Amount: 10, Currency: "USD"}})
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = s.Charge(ctx, chargeReq("c2", TokenDeclined, 1000))
	wantCode(t, err, boxoffice.EPAYMENTDECLINED)
	_, err = s.Refund(ctx, boxoffice.RefundRequest{Key: "r4", ChargeID: s.Charges()[1].ID})
	wantCode(t, err, boxoffice.EVALIDATION)

	// Rejected refunds bind nothing: the charge can still be refunded, partly.
	re, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "r5", ChargeID: ch.ID, Amount: eur(400)})
	if err != nil {
		t.Fatal(err)
	}
	if rec := s.Charges()[0]; rec.RefundID != re.ID || rec.RefundAmount != eur(400) {
		t.Fatalf("record = %+v", rec)
	}
}

func TestRefundConcurrentKeysRefundOnce(t *testing.T) {
	s := newSim(t, SimOptions{LedgerPath: filepath.Join(t.TempDir(), "ledger.jsonl")})
	ctx := context.Background()
	ch, err := s.Charge(ctx, chargeReq("c1", TokenOK, 1000))
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins = map[string]bool{}
	)
	for i := range 50 {
		wg.Go(func() {
			re, err := s.Refund(ctx, boxoffice.RefundRequest{Key: fmt.Sprintf("r%d", i%5), ChargeID: ch.ID})
			if err == nil {
				mu.Lock()
				wins[re.ID] = true
				mu.Unlock()
			} else if boxoffice.ErrorCode(err) != boxoffice.EVALIDATION {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Fatalf("%d distinct refunds, want 1", len(wins))
	}
}

func TestRefundWaitsForPendingCharge(t *testing.T) {
	clock := newFakeClock()
	s := newSim(t, SimOptions{SlowDelay: time.Hour, Now: clock.Now})
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 20*time.Millisecond)
	}
	ctx, cancel := short()
	defer cancel()
	if _, err := s.Charge(ctx, chargeReq("c1", TokenSlow, 100)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("charge: %v", err)
	}
	id := s.Charges()[0].ID
	ctx, cancel = short()
	defer cancel()
	if _, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "r1", ChargeID: id}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("refund of a pending charge: %v", err)
	}
	clock.Advance(time.Hour)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Refund(ctx, boxoffice.RefundRequest{Key: "r1", ChargeID: id}); err != nil {
		t.Fatalf("refund after the charge is due: %v", err)
	}
	if rec := s.Charges()[0]; rec.Status != ChargeSucceeded || !rec.Refunded {
		t.Fatalf("record = %+v", rec)
	}
}

func TestLedgerSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "ledger.jsonl")
	ctx := context.Background()
	s1, err := NewSim(SimOptions{LedgerPath: path, SlowDelay: 20 * time.Millisecond, FlakyFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := s1.Charge(ctx, chargeReq("ok", TokenOK, 100))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Charge(ctx, chargeReq("declined", TokenDeclined, 100)); err == nil {
		t.Fatal("declined charge succeeded")
	}
	if _, err := s1.Charge(ctx, chargeReq("slow", TokenSlow, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Charge(ctx, chargeReq("flaky", TokenFlaky, 100)); err != nil {
		t.Fatal(err)
	}
	re, err := s1.Refund(ctx, boxoffice.RefundRequest{Key: "r", ChargeID: ok.ID, Amount: eur(60)})
	if err != nil {
		t.Fatal(err)
	}
	// Every answer is on disk before it is given, without waiting for Close.
	loaded, err := LoadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	before := s1.Charges()
	if !reflect.DeepEqual(loaded, before) {
		t.Fatalf("ledger before Close:\n%+v\nlive:\n%+v", loaded, before)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Charge(ctx, chargeReq("late", TokenOK, 100)); !errors.Is(err, errClosed) {
		t.Fatalf("charge after Close: %v", err)
	}

	s2 := newSim(t, SimOptions{LedgerPath: path})
	if after := s2.Charges(); !reflect.DeepEqual(after, before) {
		t.Fatalf("after reopen:\n%+v\nbefore:\n%+v", after, before)
	}
	again, err := s2.Charge(ctx, chargeReq("ok", TokenOK, 100))
	if err != nil || again.ID != ok.ID {
		t.Fatalf("retry after reopen = %+v, %v; want %s", again, err, ok.ID)
	}
	_, err = s2.Charge(ctx, chargeReq("declined", TokenDeclined, 100))
	wantCode(t, err, boxoffice.EPAYMENTDECLINED)
	reAgain, err := s2.Refund(ctx, boxoffice.RefundRequest{Key: "r", ChargeID: ok.ID, Amount: eur(60)})
	if err != nil || reAgain.ID != re.ID {
		t.Fatalf("refund retry after reopen = %+v, %v; want %s", reAgain, err, re.ID)
	}
	_, err = s2.Refund(ctx, boxoffice.RefundRequest{Key: "r-other", ChargeID: ok.ID})
	wantCode(t, err, boxoffice.EVALIDATION)
	if n := len(s2.Charges()); n != 4 {
		t.Fatalf("%d charges, want 4", n)
	}
}

// A charge that was pending at a crash is not forgotten: the next simulator settles it when it is
// due, also when that moment passed while it was down.
func TestPendingChargeSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	clock := newFakeClock()
	s1, err := NewSim(SimOptions{LedgerPath: path, SlowDelay: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s1.Charge(ctx, chargeReq("slow", TokenSlow, 100)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	id := s1.Charges()[0].ID
	s1.Close()

	s2, err := NewSim(SimOptions{LedgerPath: path, SlowDelay: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if rec := s2.Charges()[0]; rec.ID != id || rec.Status != ChargePending {
		t.Fatalf("record = %+v", rec)
	}
	s2.Close()

	clock.Advance(2 * time.Hour)
	s3 := newSim(t, SimOptions{LedgerPath: path, Now: clock.Now})
	if rec := s3.Charges()[0]; rec.ID != id || rec.Status != ChargeSucceeded {
		t.Fatalf("record = %+v", rec)
	}
	ch, err := s3.Charge(context.Background(), chargeReq("slow", TokenSlow, 100))
	if err != nil || ch.ID != id {
		t.Fatalf("retry = %+v, %v; want %s", ch, err, id)
	}
}

func TestTornLastLineIsIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	ctx := context.Background()
	s1, err := NewSim(SimOptions{LedgerPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s1.Charge(ctx, chargeReq("a", TokenOK, 100))
	if err != nil {
		t.Fatal(err)
	}
	before := s1.Charges()
	s1.Close()

	// A crash in the middle of appending the next line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"op":"charge","key":"b","id":"ch_torn","tok`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	loaded, err := LoadLedger(path)
	if err != nil || !reflect.DeepEqual(loaded, before) {
		t.Fatalf("LoadLedger = %+v, %v; want %+v", loaded, err, before)
	}
	s2, err := NewSim(SimOptions{LedgerPath: path})
	if err != nil {
		t.Fatalf("NewSim on a torn ledger: %v", err)
	}
	if got := s2.Charges(); !reflect.DeepEqual(got, before) {
		t.Fatalf("Charges() = %+v, want %+v", got, before)
	}
	// The torn bytes are gone, so lines written now stay readable.
	chB, err := s2.Charge(ctx, chargeReq("b", TokenOK, 100))
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	s3 := newSim(t, SimOptions{LedgerPath: path})
	recs := s3.Charges()
	if len(recs) != 2 || recs[0].ID != ch.ID || recs[1].ID != chB.ID {
		t.Fatalf("Charges() = %+v", recs)
	}
}

func TestCorruptLedgerIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	if err := os.WriteFile(path, []byte("not json\n{\"op\":\"charge\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSim(SimOptions{LedgerPath: path}); err == nil {
		t.Fatal("NewSim accepted a damaged ledger")
	}
	if _, err := LoadLedger(path); err == nil {
		t.Fatal("LoadLedger accepted a damaged ledger")
	}
}
