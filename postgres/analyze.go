package postgres

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// growingTables are the tables that a sale fills (a fresh database has them empty and without
// statistics), each with the columns its statements look rows up by: the ones analyzed. Leaving
// out the wide ones (stored answers, event data, tickets) halves an ANALYZE's cost; nil is every
// column.
var growingTables = map[string][]string{
	"holds":               nil,
	"orders":              {"id", "status", "show_id", "hold_id", "api_key_id"},
	"idempotency_records": {"id", "scope", "key", "order_id", "expires_at", "response_status"},
	"events":              {"position", "id", "subject", "seq"},
	"inbox":               nil,
	"inventory_events":    nil,
	"queue_entries":       nil,
	"seats":               nil,
}

// analyzeStatement is the ANALYZE of table, of its looked-up columns.
func analyzeStatement(table string) string {
	sql := "ANALYZE " + pgx.Identifier{table}.Sanitize()
	if cols := growingTables[table]; len(cols) > 0 {
		quoted := make([]string, len(cols))
		for i, c := range cols {
			quoted[i] = pgx.Identifier{c}.Sanitize()
		}
		sql += " (" + strings.Join(quoted, ", ") + ")"
	}
	return sql
}

// Early analysis: a statement's plan is made, and cached on its connection, from the statistics
// its tables have when it is first run. A fresh database's tables have none, and autovacuum's
// first ANALYZE comes only after its nap (a minute by default) — the first minute of a fresh
// deployment's first on-sale, the whole of a benchmark. Plans made meanwhile keep what suited an
// empty table: the email consumer's inbox check read every row of the consumer's inbox through
// the first column of the key and filtered the ids (2 ms a call at 3,000 rows, growing with the
// table), and the idempotency insert's NOT EXISTS scanned its whole table. So the store analyzes
// those tables itself each time one has doubled since it last did, from 100 rows on, until
// autovacuum has analyzed it or it held earlyAnalyzeUpTo rows when analyzed (statistics of that
// many rows describe the table well enough for these statements, and an ANALYZE costs more the
// bigger the table: up to 100 ms for the events of a 20,000-purchase run); each ANALYZE also
// makes every connection plan that table's statements afresh.
const (
	earlyAnalyzeFrom = 100
	earlyAnalyzeUpTo = 10_000
)

// sTableStats reads, for each named table of the store's schema, its rows, whether autovacuum
// has analyzed it, and its dead row versions: what both the early analysis and the churn vacuum
// decide on, in one read a tick.
const sTableStats = `SELECT relname, n_live_tup, last_autoanalyze IS NOT NULL, n_dead_tup
	FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY($1)`

// tableStats is a table's row of sTableStats.
type tableStats struct {
	live, dead   int64
	byAutovacuum bool
}

// readTableStats reads sTableStats for the tables watched by the early analysis and the churn
// tables, by name.
func (db *DB) readTableStats(ctx context.Context, watched map[string]int64, churn []string) (map[string]tableStats, error) {
	names := slices.Clone(churn)
	for t := range watched {
		if !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	rows, err := db.pool.Query(ctx, sTableStats, names)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stats := make(map[string]tableStats, len(names))
	for rows.Next() {
		var name string
		var st tableStats
		if err := rows.Scan(&name, &st.live, &st.byAutovacuum, &st.dead); err != nil {
			return nil, err
		}
		stats[name] = st
	}
	return stats, rows.Err()
}

// maintenanceEvery is how often the store looks at its tables' statistics for the early analysis
// and the churn vacuum (vacuum.go).
const maintenanceEvery = time.Second

// maintain runs the store's own upkeep of its tables until ctx ends: the early analysis while a
// table still needs it, and the churn vacuum.
func (db *DB) maintain(ctx context.Context) {
	// watched maps each table still watched by the early analysis to its rows when the store
	// last analyzed it.
	watched := make(map[string]int64, len(growingTables))
	for t := range growingTables {
		watched[t] = 0
	}
	churn := churnTables
	tick := time.NewTicker(maintenanceEvery)
	defer tick.Stop()
	for len(watched) > 0 || len(churn) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stats, err := db.readTableStats(ctx, watched, churn)
		if err != nil {
			if ctx.Err() == nil {
				slog.Debug("table upkeep: reading table statistics", "err", err)
			}
			continue
		}
		for t, rows := range dueForAnalysis(stats, watched) {
			if db.upkeep(ctx, "early analysis", analyzeStatement(t), t) {
				watched[t] = rows
			} else if ctx.Err() == nil {
				delete(watched, t)
			}
		}
		for _, t := range dueForVacuum(stats, churn) {
			if !db.upkeep(ctx, "churn vacuum", "VACUUM (SKIP_LOCKED) "+pgx.Identifier{t}.Sanitize(), t) && ctx.Err() == nil {
				churn = slices.DeleteFunc(slices.Clone(churn), func(x string) bool { return x == t })
			}
		}
	}
}

// upkeep runs one maintenance statement on table and reports whether it succeeded. A failure
// (not the table's owner, say) is logged at debug level: autovacuum will do it in its time.
func (db *DB) upkeep(ctx context.Context, what, sql, table string) bool {
	if _, err := db.pool.Exec(ctx, sql); err != nil {
		if ctx.Err() == nil {
			slog.Debug(what+": failed; leaving the table to autovacuum", "table", table, "err", err)
		}
		return false
	}
	return true
}

// dueForAnalysis returns the watched tables to analyze now, with their rows, and stops watching
// those that autovacuum has analyzed or that the store analyzed at earlyAnalyzeUpTo rows or more.
func dueForAnalysis(stats map[string]tableStats, watched map[string]int64) map[string]int64 {
	due := map[string]int64{}
	for name, last := range watched {
		st, ok := stats[name]
		switch {
		case !ok:
		case st.byAutovacuum || last >= earlyAnalyzeUpTo:
			delete(watched, name)
		case st.live >= max(earlyAnalyzeFrom, 2*last):
			due[name] = st.live
		}
	}
	return due
}
