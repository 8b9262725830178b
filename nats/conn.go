package nats

import natsgo "github.com/nats-io/nats.go"

// Conn is the async side's connection to NATS, which other parts of the server share (the
// forwarding of writes to a show's owner, package cluster) rather than open a connection each.
func (a *Async) Conn() *natsgo.Conn { return a.nc }
