// Package prom holds what the HTTP and RPC transports share about Prometheus metrics.
package prom

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c in reg or returns the equal collector already there, so that two handlers
// built on one registry share their collectors; any other conflict is a wiring mistake and
// panics.
func Register[T prometheus.Collector](reg *prometheus.Registry, c T) T {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(T); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
