package inventorytest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"boxoffice"
)

// linInput is one operation on a tier's availability: a change taking Take tickets (negative gives
// them back; a reservation is the only change that may be refused for want of tickets), or a read.
type linInput struct {
	Tier    string
	Take    int
	Reserve bool
	Read    bool
}

// linOutput is what the operation answered.
type linOutput struct {
	OK        bool // the change committed
	SoldOut   bool // refused for want of tickets, with Available left
	Available int  // for SoldOut and reads
}

// availabilityModel is the sequential specification of one tier: a number of tickets available.
// A history of concurrent operations is linearizable if the operations can be put in an order,
// each at an instant between its call and return, in which this model explains every answer.
func availabilityModel(capacity int) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byTier := map[string][]porcupine.Operation{}
			for _, op := range history {
				tier := op.Input.(linInput).Tier
				byTier[tier] = append(byTier[tier], op)
			}
			var parts [][]porcupine.Operation
			for _, p := range byTier {
				parts = append(parts, p)
			}
			return parts
		},
		Init: func() any { return capacity },
		Step: func(state, input, output any) (bool, any) {
			avail, in, out := state.(int), input.(linInput), output.(linOutput)
			switch {
			case in.Read:
				return out.Available == avail, avail
			case out.OK:
				next := avail - in.Take
				return next >= 0 && next <= capacity, next
			case out.SoldOut:
				return in.Reserve && avail < in.Take && out.Available == avail, avail
			default: // refused for another reason (no longer due, buyer limit, overload): no change
				return true, avail
			}
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linInput), output.(linOutput)
			if in.Read {
				return fmt.Sprintf("read %s → %d", in.Tier, out.Available)
			}
			return fmt.Sprintf("take %d of %s → ok=%v soldout=%v avail=%d", in.Take, in.Tier, out.OK, out.SoldOut, out.Available)
		},
	}
}

// recorder wraps a strategy and records every Apply as an operation with its call and return time.
type recorder struct {
	boxoffice.Inventory
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(op porcupine.Operation) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) Apply(ctx context.Context, c boxoffice.CountChange, write func(tx boxoffice.Tx) error) error {
	in := linInput{Tier: c.ShowID + "/" + c.TierID, Take: c.Held + c.Sold, Reserve: c.Held > 0}
	call := r.now()
	err := r.Inventory.Apply(ctx, c, write)
	ret := r.now()
	out := linOutput{OK: err == nil}
	if e := boxoffice.AsError(err); e != nil && e.Code == boxoffice.ESOLDOUT && e.Available != nil {
		out.SoldOut, out.Available = true, *e.Available
	}
	if c.Held != 0 || c.Sold != 0 {
		r.add(porcupine.Operation{Input: in, Call: call, Output: out, Return: ret})
	}
	return err
}

// service runs a request that reserves q tickets of tier of the show "lin" and records a sold_out
// answer as an operation of its own, timed by the request: the service may refuse from a read
// before any strategy is asked, and that answer must fit the history too. (A refusal the strategy
// gave is then in the history twice, which the model allows: a refusal changes nothing.)
func (r *recorder) service(tier string, q int, do func() (*boxoffice.Response, error)) (*boxoffice.Response, error) {
	call := r.now()
	res, err := do()
	ret := r.now()
	if err == nil && res.Status == 409 {
		var p struct {
			Code      string `json:"code"`
			Available *int   `json:"available"`
		}
		if json.Unmarshal(res.Body, &p) == nil && p.Code == boxoffice.ESOLDOUT && p.Available != nil {
			r.add(porcupine.Operation{Input: linInput{Tier: "lin/" + tier, Take: q, Reserve: true}, Call: call,
				Output: linOutput{SoldOut: true, Available: *p.Available}, Return: ret})
		}
	}
	return res, err
}

// read records a read of a tier's availability from the store.
func (r *recorder) read(w *World, show, tier string) {
	call := r.now()
	var c boxoffice.TierCounts
	err := w.Store.View(context.Background(), func(tx boxoffice.Tx) (err error) {
		c, err = tx.TierCounts(context.Background(), show, tier, false)
		return err
	})
	ret := r.now()
	if err != nil {
		w.T.Errorf("read %s/%s: %v", show, tier, err)
		return
	}
	r.add(porcupine.Operation{Input: linInput{Tier: show + "/" + tier, Read: true}, Call: call, Output: linOutput{Available: c.Available()}, Return: ret})
}

// linearizable records a concurrent history of holds, releases, purchases, cancels, expiries and
// reads against the strategy and checks it with porcupine against the one-number-per-tier model:
// whatever the strategy does inside, from outside it must behave like one counter per tier.
func linearizable(t *testing.T, h Harness) {
	rec := &recorder{start: time.Now()}
	w := newWorld(t, h, func(inv boxoffice.Inventory) boxoffice.Inventory { rec.Inventory = inv; return rec }, nil)
	const capacity = 6
	w.Show("lin", 30, capacity, capacity)
	ctx := context.Background()
	var wg sync.WaitGroup
	for worker := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(worker), 42))
			var holds, orders []string
			for i := range 40 {
				key := fmt.Sprintf("lin%d-%d", worker, i)
				tier := string(rune('a' + r.IntN(2)))
				switch op := r.IntN(10); {
				case op < 3:
					q := 1 + r.IntN(2)
					res, err := rec.service(tier, q, func() (*boxoffice.Response, error) {
						return hold(w, key, "lin", tier, q, fmt.Sprintf("l%d@example.com", worker))
					})
					if err == nil && res.Status == 201 {
						holds = append(holds, Decode[boxoffice.Hold](t, res).ID)
					}
				case op < 4 && len(holds) > 0:
					_ = w.Svc.ReleaseHold(ctx, boxoffice.AdminPrincipal, holds[r.IntN(len(holds))])
				case op < 6:
					res, err := rec.service(tier, 1, func() (*boxoffice.Response, error) {
						return purchase(w, key, "lin", tier, 1, "tok_ok")
					})
					if err == nil && res.Status == 201 {
						orders = append(orders, Decode[boxoffice.Order](t, res).ID)
					}
				case op < 7 && len(orders) > 0:
					id := orders[r.IntN(len(orders))]
					_, _, _ = w.Svc.CancelOrder(ctx, boxoffice.AdminPrincipal, Idem("cancel "+id, key, id), id)
				case op < 8:
					w.Clock.Advance(time.Duration(r.IntN(10)) * time.Second)
					_, _ = w.Svc.ExpireDue(ctx)
				default:
					rec.read(w, "lin", tier)
				}
			}
		})
	}
	wg.Wait()
	rec.mu.Lock()
	ops := rec.ops
	rec.mu.Unlock()
	if len(ops) < 100 {
		t.Fatalf("only %d operations recorded; the workload did not exercise the strategy", len(ops))
	}
	res, info := porcupine.CheckOperationsVerbose(availabilityModel(capacity), ops, 30*time.Second)
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		_ = porcupine.VisualizePath(availabilityModel(capacity), info, path)
		t.Fatalf("history of %d operations is %s (not linearizable); visualization: %s", len(ops), res, path)
	}
	w.Check()
}
