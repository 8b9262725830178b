package inventorytest

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModelCatchesOversell proves the linearizability check can fail: histories a broken strategy
// would produce are rejected, and their correct counterparts accepted.
func TestModelCatchesOversell(t *testing.T) {
	take := func(call, ret int64, n int, ok bool) porcupine.Operation {
		return porcupine.Operation{Input: linInput{Tier: "s/a", Take: n, Reserve: n > 0}, Call: call, Output: linOutput{OK: ok}, Return: ret}
	}
	soldOut := func(call, ret int64, n, avail int) porcupine.Operation {
		return porcupine.Operation{Input: linInput{Tier: "s/a", Take: n, Reserve: true}, Call: call, Output: linOutput{SoldOut: true, Available: avail}, Return: ret}
	}
	read := func(call, ret int64, avail int) porcupine.Operation {
		return porcupine.Operation{Input: linInput{Tier: "s/a", Read: true}, Call: call, Output: linOutput{Available: avail}, Return: ret}
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"last ticket sold twice, concurrently", []porcupine.Operation{take(0, 10, 1, true), take(1, 9, 1, true)}, false},
		{"last ticket sold once, the other told sold out", []porcupine.Operation{take(0, 10, 1, true), soldOut(1, 9, 1, 0)}, true},
		{"sold out while a ticket was surely free", []porcupine.Operation{soldOut(0, 1, 1, 0)}, false},
		{"sold out with a wrong count left", []porcupine.Operation{take(0, 1, 1, true), soldOut(2, 3, 1, 1)}, false},
		{"a release lets the next one in", []porcupine.Operation{take(0, 1, 1, true), take(2, 3, -1, true), take(4, 5, 1, true)}, true},
		{"a read from before a committed take", []porcupine.Operation{take(0, 1, 1, true), read(2, 3, 1)}, false},
		{"a read during a take may see either", []porcupine.Operation{take(0, 10, 1, true), read(2, 3, 1), read(4, 5, 0)}, true},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(availabilityModel(1), c.ops); got != c.ok {
			t.Errorf("%s: linearizable=%v, want %v", c.name, got, c.ok)
		}
	}
}

// TestSeatModelCatchesDoubleSeats proves the seat model can fail: a seat held twice, a best
// available that overlaps taken seats or gives the wrong number, a refusal while the seats were
// free, and a read missing a held seat are rejected; their correct counterparts accepted.
func TestSeatModelCatchesDoubleSeats(t *testing.T) {
	const all = 0b1111
	op := func(call, ret int64, in seatInput, out seatOutput) porcupine.Operation {
		return porcupine.Operation{Input: in, Call: call, Output: out, Return: ret}
	}
	named := func(call, ret int64, seats uint64, out seatOutput) porcupine.Operation {
		return op(call, ret, seatInput{Named: seats}, out)
	}
	ok := func(seats uint64) seatOutput { return seatOutput{OK: true, Seats: seats} }
	cases := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"one seat held twice, concurrently", []porcupine.Operation{named(0, 10, 0b1, ok(0b1)), named(1, 9, 0b1, ok(0b1))}, false},
		{"one seat held once, the other refused", []porcupine.Operation{named(0, 10, 0b1, ok(0b1)), named(1, 9, 0b11, seatOutput{Unavailable: true})}, true},
		{"refused while the seats were free", []porcupine.Operation{named(0, 1, 0b10, seatOutput{Unavailable: true})}, false},
		{"best available over a taken seat", []porcupine.Operation{named(0, 1, 0b1, ok(0b1)), op(2, 3, seatInput{Quantity: 2}, ok(0b11))}, false},
		{"best available of the wrong number", []porcupine.Operation{op(0, 1, seatInput{Quantity: 2}, ok(0b111))}, false},
		{"best available of free seats", []porcupine.Operation{named(0, 1, 0b1, ok(0b1)), op(2, 3, seatInput{Quantity: 2}, ok(0b110))}, true},
		{"sold out with seats enough", []porcupine.Operation{op(0, 1, seatInput{Quantity: 4}, seatOutput{SoldOut: true})}, false},
		{"a release frees the seat for the next", []porcupine.Operation{named(0, 1, 0b1, ok(0b1)), op(2, 3, seatInput{Release: 0b1}, seatOutput{OK: true}), named(4, 5, 0b1, ok(0b1))}, true},
		{"a read missing a held seat", []porcupine.Operation{named(0, 1, 0b1, ok(0b1)), op(2, 3, seatInput{Read: true}, seatOutput{Seats: 0})}, false},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(seatModel(all), c.ops); got != c.ok {
			t.Errorf("%s: linearizable=%v, want %v", c.name, got, c.ok)
		}
	}
}
