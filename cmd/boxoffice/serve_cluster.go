package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"boxoffice"
	"boxoffice/cluster"
)

// natsMode, paymentsMode and mailMode are what a server among several records of itself, so
// that peers refuse to run beside state that cannot be shared (cluster.Start).
func (f *serveFlags) natsMode() string {
	if f.nats == "embedded" {
		return cluster.NATSEmbedded
	}
	return cluster.NATSCluster
}

func (f *serveFlags) paymentsMode() string {
	if f.payments == "sim" {
		return cluster.PaymentsSim
	}
	return cluster.PaymentsHTTP
}

func (f *serveFlags) mailMode() string {
	switch {
	case f.smtp != "":
		return cluster.MailSMTP
	case f.mailDir != "":
		return cluster.MailShared
	}
	return cluster.MailLocal
}

// instance is this server's host and absolute data dir: the data dir's lock makes it one
// process at a time (boxoffice.ServerInfo.Instance).
func (f *serveFlags) instance() string {
	host, _ := os.Hostname()
	dir, err := filepath.Abs(f.dataDir)
	if err != nil {
		dir = f.dataDir
	}
	return host + ":" + dir
}

// clusterStatus answers GET /v1/cluster: the servers and leases of the shared store, or, for a
// server that owns its store alone (SQLite), that server only.
func (f *serveFlags) clusterStatus(node *cluster.Node, addr string) func(ctx context.Context) (any, error) {
	started := time.Now().UTC()
	return func(ctx context.Context) (any, error) {
		if node != nil {
			return node.Status(ctx)
		}
		now := time.Now().UTC()
		return &cluster.Status{
			Self: "local",
			Servers: []boxoffice.ServerInfo{{ID: "local", Addr: addr, NATS: f.natsMode(), Payments: f.paymentsMode(),
				Mail: f.mailMode(), Inventory: f.inventory, StartedAt: started, HeartbeatAt: now, Live: true}},
			Leases: []boxoffice.Lease{},
		}, nil
	}
}
