package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RunPGForUpdate measures the classic answer to the last-ticket race with nothing else around it:
// buyers that each, in one PostgreSQL transaction, lock one hot row with SELECT … FOR UPDATE,
// decrement it and insert an order. It is the baseline a strategy's orders/s is compared with.
// url names a database it may create two tables in; buyers and requests bound the run as in
// Config.
func RunPGForUpdate(ctx context.Context, url string, buyers, requests int, duration time.Duration) (*Result, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(buyers)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	setup := `DROP TABLE IF EXISTS bench_orders, bench_stock;
		CREATE TABLE bench_stock (id int PRIMARY KEY, available int NOT NULL);
		CREATE TABLE bench_orders (id bigserial PRIMARY KEY, buyer text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`
	if _, err := pool.Exec(ctx, setup); err != nil {
		return nil, fmt.Errorf("set up the baseline tables: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO bench_stock VALUES (1, $1)`, requests); err != nil {
		return nil, err
	}
	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	var mu sync.Mutex
	var next, done, failed atomic.Int64
	loadCtx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range buyers {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				i := next.Add(1)
				if i > int64(requests) {
					return
				}
				t0 := time.Now()
				err := buyOne(loadCtx, pool, i)
				if err != nil {
					if loadCtx.Err() != nil {
						return
					}
					failed.Add(1)
					continue
				}
				done.Add(1)
				mu.Lock()
				_ = hist.RecordValue(max(time.Since(t0).Microseconds(), 1))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := &Result{
		Name: "PostgreSQL SELECT … FOR UPDATE (baseline)", Requests: done.Load(), Attempts: done.Load() + failed.Load(),
		Elapsed: elapsed, Outcomes: map[string]int{"201": int(done.Load())},
		P50:  time.Duration(hist.ValueAtQuantile(50)) * time.Microsecond,
		P99:  time.Duration(hist.ValueAtQuantile(99)) * time.Microsecond,
		P999: time.Duration(hist.ValueAtQuantile(99.9)) * time.Microsecond,
	}
	if failed.Load() > 0 {
		res.Outcomes["error"] = int(failed.Load())
	}
	res.Throughput = float64(res.Requests) / elapsed.Seconds()
	var sold int
	if err := pool.QueryRow(ctx, `SELECT $1::int - available FROM bench_stock WHERE id = 1`, requests).Scan(&sold); err == nil {
		res.Sold = sold
	}
	res.Verify = "ok"
	if int64(sold) != res.Requests {
		res.Verify = fmt.Sprintf("%d sold but %d orders", sold, res.Requests)
	}
	return res, nil
}

// buyOne is one purchase of the baseline: lock, check, decrement, insert, commit.
func buyOne(ctx context.Context, pool *pgxpool.Pool, i int64) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var available int
	if err := tx.QueryRow(ctx, `SELECT available FROM bench_stock WHERE id = 1 FOR UPDATE`).Scan(&available); err != nil {
		return err
	}
	if available <= 0 {
		return fmt.Errorf("sold out")
	}
	if _, err := tx.Exec(ctx, `UPDATE bench_stock SET available = available - 1 WHERE id = 1`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bench_orders (buyer) VALUES ($1)`, fmt.Sprintf("b%d@example.com", i)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
