package main

import (
	"fmt"
	"testing"

	"boxoffice/inventory"
	"boxoffice/postgres/pgtest"
	"boxoffice/redis/redistest"
)

// TestServeEveryStrategyOnEveryStore starts the real server with each --inventory on each --db,
// sells a small show out over HTTP with retries, and has verify audit the store afterwards.
func TestServeEveryStrategyOnEveryStore(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		for _, name := range inventory.Names(moreStrategies(nil)) {
			t.Run(name+"/"+store, func(t *testing.T) {
				dir := t.TempDir()
				args := []string{"--inventory", name}
				db := "sqlite"
				if store == "postgres" {
					db = pgtest.Start(t)
					args = append(args, "--db", db)
				}
				if name == "redis-lock" {
					args = append(args, "--redis", redistest.Start(t))
				}
				s := startServer(t, dir, args...)
				s.client(adminKey).must(201, "PUT", "/v1/shows/mini", showBody(5, 600))
				cl := s.client(s.newClientKey(t))
				sold := 0
				for i := range 8 {
					body := map[string]any{"show_id": "mini", "tier_id": "ga", "quantity": 1, "buyer": map[string]string{"email": "a@example.com"}, "payment": map[string]string{"token": "tok_ok"}}
					key := fmt.Sprintf("k%d", i)
					first, err := cl.do("POST", "/v1/purchases", body, "Idempotency-Key", key)
					if err != nil {
						t.Fatal(err)
					}
					again := cl.post(first.Status, "/v1/purchases", key, body)
					if string(again.Body) != string(first.Body) {
						t.Fatalf("retry of %s answered differently:\n%s\n%s", key, first.Body, again.Body)
					}
					switch {
					case first.Status == 201:
						sold++
					case first.Status == 409 && first.code() == "sold_out":
					default:
						t.Fatalf("purchase %d: %d %s", i, first.Status, first.Body)
					}
				}
				if sold != 5 {
					t.Fatalf("sold %d of 5", sold)
				}
				if err := s.stop(); err != nil {
					t.Fatalf("stop: %v\n%s", err, s.logs)
				}
				if code, out := runCLI(t, "verify", "--data-dir", dir, "--db", db); code != 0 {
					t.Fatalf("verify: %d\n%s", code, out)
				}
			})
		}
	}
}
