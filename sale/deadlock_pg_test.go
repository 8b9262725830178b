package sale_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"boxoffice"
	bohttp "boxoffice/http"
	"boxoffice/inventory"
	"boxoffice/payments"
	"boxoffice/postgres"
	"boxoffice/postgres/pgtest"
	"boxoffice/sale"

	"github.com/jackc/pgx/v5"
)

// TestMain stops the PostgreSQL server that the tests of the package start on first use.
func TestMain(m *testing.M) { pgtest.Main(m) }

// TestTwoServersNeverDeadlock is two servers (two Services, each with its own pool and its own
// inventory strategy) on one PostgreSQL database, sold to at once: every Idempotency-Key, of a
// purchase, a hold and a confirm, is sent to both servers, to one of them up to 20 ms later, as
// a client that retries on another server does. Every path takes its locks in the one order
// postgres.LockOrder names, so PostgreSQL must detect no deadlock at all (each would stall the
// hot tier for deadlock_timeout); and the guarantees hold: nothing oversold, one effect per key,
// one charge per order.
//
// Both servers run their background work (expiry, the completer of pending orders), which leaves
// the orders that the other server's requests are settling to those requests.
func TestTwoServersNeverDeadlock(t *testing.T) {
	for _, name := range []string{"actor", "atomic", "pessimistic", "optimistic"} {
		t.Run(name, func(t *testing.T) { twoServersStampede(t, name) })
	}
}

// server is one boxoffice server of a cluster: a store (its own pool) and a strategy over it.
type server struct {
	store *postgres.DB
	inv   boxoffice.Inventory
	svc   *sale.Service
}

func twoServersStampede(t *testing.T, strategy string) {
	url := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	logFrom := len(serverLog(ctx, admin))
	before := deadlocks(t, ctx, admin)

	sim, err := payments.NewSim(payments.SimOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	var servers [2]*server
	for i := range servers {
		st, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		inv, err := inventory.New(strategy, st, inventory.Options{})
		if err != nil {
			t.Fatal(err)
		}
		svc := sale.New(sale.Config{Store: st, Inventory: inv, Payments: sim, Renderer: bohttp.Renderer{},
			SyncBudget: 5 * time.Second, AdminKey: "adm"})
		if err := svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		servers[i] = &server{store: st, inv: inv, svc: svc}
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		for _, s := range servers {
			s.svc.Close()
			_ = s.inv.Close()
			_ = s.store.Close() // its backends exit, which flushes their statistics
		}
	}
	defer stop()

	const (
		capacity  = 150
		purchases = 160 // keys; each sent to both servers
		holds     = 60  // keys, each hold then confirmed with a key of its own
		inFlight  = 24  // keys at once, so 48 requests
		jitter    = 20 * time.Millisecond
	)
	in := sale.ShowInput{Name: "Hot", StartsAt: ptr(time.Now().Add(30 * 24 * time.Hour)), HoldTTLSeconds: ptr(600),
		Tiers: []sale.TierInput{{ID: "ga", Name: "General", Capacity: ptr(capacity), Price: &boxoffice.Money{Amount: 2500, Currency: "EUR"}}}}
	if _, _, err := servers[0].svc.PutShow(ctx, "hot", in); err != nil {
		t.Fatal(err)
	}

	// both sends one request to both servers, to a random one of them up to jitter later, and
	// returns the two outcomes.
	both := func(do func(s *sale.Service) (*boxoffice.Response, bool, error)) (res [2]*boxoffice.Response, errs [2]error) {
		var wg sync.WaitGroup
		late := rand.IntN(2)
		lag := time.Duration(rand.Int64N(int64(jitter)))
		for i, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i == late {
					time.Sleep(lag)
				}
				res[i], _, errs[i] = do(s.svc)
			}()
		}
		wg.Wait()
		return res, errs
	}
	var (
		mu     sync.Mutex
		orders = map[string]string{} // key → the order id its answers named
	)
	// agree checks that the answers for one key name one order (or one hold), whichever server
	// gave them; a request still in progress or shed may answer nothing.
	agree := func(key, field string, res [2]*boxoffice.Response, errs [2]error) string {
		id := ""
		for i := range res {
			if errs[i] != nil {
				if c := boxoffice.ErrorCode(errs[i]); c != boxoffice.EIDEMINPROGRESS && c != boxoffice.EOVERLOADED {
					t.Errorf("key %s on server %d: %v", key, i, errs[i])
				}
				continue
			}
			if res[i].Status >= 300 {
				continue
			}
			var body map[string]any
			if err := json.Unmarshal(res[i].Body, &body); err != nil {
				t.Errorf("key %s: %v", key, err)
				continue
			}
			got, _ := body[field].(string)
			if id != "" && got != id {
				t.Errorf("key %s: one server answered %s %s, the other %s", key, field, id, got)
			}
			id = got
		}
		mu.Lock()
		orders[key] = id
		mu.Unlock()
		return id
	}

	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for k := range purchases + holds {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if k < purchases {
				key := fmt.Sprintf("p-%d", k)
				pin := sale.PurchaseInput{ShowID: "hot", TierID: "ga", Quantity: 1,
					Buyer: sale.BuyerInput{Email: "buyer@example.com"}, Payment: sale.PaymentInput{Token: "tok_ok"}}
				res, errs := both(func(s *sale.Service) (*boxoffice.Response, bool, error) {
					return s.Purchase(ctx, boxoffice.AdminPrincipal, idem("purchase", key, pin), pin)
				})
				agree(key, "id", res, errs)
				return
			}
			key := fmt.Sprintf("h-%d", k)
			hin := sale.HoldInput{ShowID: "hot", TierID: "ga", Quantity: 1, Buyer: sale.BuyerInput{Email: "buyer@example.com"}}
			res, errs := both(func(s *sale.Service) (*boxoffice.Response, bool, error) {
				return s.CreateHold(ctx, boxoffice.AdminPrincipal, idem("hold", key, hin), hin)
			})
			holdID := agree(key, "id", res, errs)
			if holdID == "" {
				return // sold out, or shed
			}
			cin := sale.ConfirmInput{Payment: sale.PaymentInput{Token: "tok_ok"}}
			res, errs = both(func(s *sale.Service) (*boxoffice.Response, bool, error) {
				return s.ConfirmHold(ctx, boxoffice.AdminPrincipal, idem("confirm "+holdID, "c"+key, cin), holdID, cin)
			})
			agree("c"+key, "id", res, errs)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the stampede did not end in time: %v", ctx.Err())
	}
	eventually(t, "no order waiting for its payment", func() bool {
		var n int
		_ = servers[0].store.View(ctx, func(tx boxoffice.Tx) error {
			o, err := tx.PendingOrders(ctx, 1)
			n = len(o)
			return err
		})
		return n == 0
	})

	var ledger []sale.LedgerCharge
	for _, c := range sim.Charges() {
		ledger = append(ledger, sale.LedgerCharge{Key: c.Key, ChargeID: c.ID, Succeeded: c.Status == payments.ChargeSucceeded, Refunded: c.Refunded})
	}
	bad, err := sale.Verify(ctx, servers[0].store, ledger)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("violation: %s", b)
	}
	show, err := servers[1].svc.GetShow(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if tier := show.Tiers[0]; tier.Held+tier.Sold > tier.Capacity || tier.Sold == 0 {
		t.Errorf("tier held %d + sold %d, capacity %d", tier.Held, tier.Sold, tier.Capacity)
	}

	stop()
	if n := deadlocks(t, ctx, admin) - before; n != 0 {
		t.Errorf("PostgreSQL detected %d deadlocks: the servers' transactions took locks in orders that cycle\n%s",
			n, deadlockReports(serverLog(ctx, admin)[logFrom:]))
	}
}

// deadlocks returns how many deadlocks PostgreSQL has counted in conn's database. A backend
// may report its counts as late as when it exits, so this waits (bounded) until conn's is the
// database's only backend.
func deadlocks(t *testing.T, ctx context.Context, conn *pgx.Conn) int64 {
	t.Helper()
	eventually(t, "the servers' connections to end", func() bool {
		var others int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others)
		return err == nil && others == 0
	})
	var n int64
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT COALESCE(deadlocks, 0) FROM pg_stat_database
		WHERE datname = current_database()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// serverLog returns the log of pgtest's server, which has the deadlock reports; nil when it cannot
// be read, since it only explains a failure.
func serverLog(ctx context.Context, conn *pgx.Conn) []byte {
	var data string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&data); err != nil {
		return nil
	}
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(data), "postgres.log"))
	return b
}

// deadlockReports picks the deadlock reports out of a server log: each ERROR, its DETAIL with the
// cycle and the statements of both sides.
func deadlockReports(log []byte) string {
	var out []string
	keep := false
	for _, line := range strings.Split(string(log), "\n") {
		switch {
		case strings.Contains(line, "ERROR:  deadlock detected"):
			keep = true
		case strings.HasPrefix(line, "\t") || strings.Contains(line, "DETAIL:  "):
		default:
			keep = false
		}
		if keep {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
