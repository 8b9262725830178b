package waitroom

import "testing"

// SetLimits sets, for one test, how many places a numbering samples to count from and how many
// settled places a server keeps, so that a queue of a few hundred goes where a stadium's would.
func SetLimits(t *testing.T, sample, places int) {
	oldSample, oldPlaces := sampleMax, maxPlaces
	sampleMax, maxPlaces = sample, places
	t.Cleanup(func() { sampleMax, maxPlaces = oldSample, oldPlaces })
}
