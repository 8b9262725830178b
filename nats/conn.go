package nats

import natsgo "github.com/nats-io/nats.go"

// Conn is the async side's connection to NATS, which other parts of the server share (the
// forwarding of writes to a show's owner, package cluster) rather than open a connection each.
func (a *Async) Conn() *natsgo.Conn { return a.nc }

// Mailer is the email consumer, whose SendNotice sends an email at once the way the receipts go
// (the buyer's page's sign-in codes).
func (a *Async) Mailer() *Email { return a.email }
