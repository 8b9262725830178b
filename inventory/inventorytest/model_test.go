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
