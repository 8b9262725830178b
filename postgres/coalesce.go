package postgres

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"boxoffice"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// writeKind names the deferred writes that coalesce: many of one kind in a batch go to the server
// as one multi-row statement, so a batch of a hundred purchases costs a handful of statements, not
// a few hundred. Every other deferred write goes as it came.
type writeKind int

const (
	single writeKind = iota
	kindHold
	kindOrder
	kindIdem
	kindClaim // the claim of an idempotency key, queued before its record's insert
	kindLock  // the advisory lock of an event's subject
	kindEvent // an event append; the lock of its subject is queued before it
	kindLease // a show lease's fence (CheckLease)
	kindTier  // a tier's compare-and-set of its counts (SetTierCounts)
)

// lockStep places a deferred write in LockOrder: the deferred writes of a transaction go to the
// server by step, and within a step by key, so that two transactions whose deferred writes lock
// the same rows lock them in the same order.
type lockStep int

const (
	stepLease      lockStep = iota // show leases' fences (CheckLease): first, as LockOrder says
	stepClaim                      // idempotency claims: before the inserts whose snapshot must follow them
	stepInsert                     // new rows: no one waits for them, so their place is free
	stepHold                       // updates of holds, by hold id
	stepOrder                      // updates of orders, by order id
	stepSubject                    // event subjects' locks
	stepEvent                      // event appends, after their subjects' locks
	stepIdemRecord                 // updates of stored idempotency records
	stepTier                       // tier counts, by show and tier id
)

// deferredWrite is one write queued by later.
type deferredWrite struct {
	kind  writeKind
	step  lockStep
	key   string // orders the writes of one step: the id of the row the write locks
	sql   string // the one-row statement (one of expect's, or sLockSubject)
	args  []any
	event *boxoffice.Event // kindEvent: gets its position and seq when the write is sent
}

// multiInsert is how the rows of one kind become one statement: the column types of unnest's
// arrays, the expressions that turn unnest's columns (c1, c2, …) into the table's, and the insert
// (whose SELECT those expressions complete).
type multiInsert struct {
	types  []string
	exprs  string
	insert string
	where  string // an optional condition on unnest's columns
}

var (
	multiHold = multiInsert{
		types:  []string{"text", "text", "text", "int4", "text", "text", "timestamptz", "timestamptz", "timestamptz", "text"},
		insert: `INSERT INTO holds (` + holdCols + `)`,
	}
	multiOrder = multiInsert{
		types: []string{"text", "text", "text", "text", "text", "int4", "int8", "text", "text", "text",
			"text", "text", "text", "bool", "timestamptz", "timestamptz", "text"},
		// tickets (c10) go as text and are cast, so that each is sent as the JSON it is.
		exprs:  "c1, c2, c3, c4, c5, c6, c7, c8, c9, c10::jsonb, c11, c12, c13, c14, c15, c16, c17",
		insert: `INSERT INTO orders (` + orderCols + `)`,
	}
	multiIdem = multiInsert{
		types: []string{"text", "text", "text", "text", "text", "text", "timestamptz", "int4", "bytea", "text",
			"timestamptz", "timestamptz"},
		insert: `INSERT INTO idempotency_records (` + idemCols + `)`,
		// Only keys without a record visible, as sInsertIdem (see LockOrder, step 1).
		where: `NOT EXISTS (SELECT 1 FROM idempotency_records AS r WHERE r.scope = v.c2 AND r.key = v.c3)`,
	}
)

// statement returns the multi-row statement for n rows: it fails (aborting the transaction, as
// expect's one-row forms do) unless every row was inserted.
func (m multiInsert) statement() string {
	var b strings.Builder
	exprs := m.exprs
	cols := make([]string, len(m.types))
	for i := range m.types {
		cols[i] = fmt.Sprintf("c%d", i+1)
	}
	if exprs == "" {
		exprs = strings.Join(cols, ", ")
	}
	b.WriteString("WITH w AS (" + m.insert + " SELECT " + exprs + " FROM unnest(")
	for i, t := range m.types {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::%s[]", i+1, t)
	}
	fmt.Fprintf(&b, ") AS v(%s)", strings.Join(cols, ", "))
	if m.where != "" {
		b.WriteString(" WHERE " + m.where)
	}
	fmt.Fprintf(&b, " ON CONFLICT DO NOTHING RETURNING 1) SELECT 1 / ((SELECT count(*) FROM w) = $%d)::int", len(m.types)+1)
	return b.String()
}

// Statements of the coalesced forms, built once.
var (
	sMultiHold  = multiHold.statement()
	sMultiOrder = multiOrder.statement()
	sMultiIdem  = multiIdem.statement()
	// The locks are taken in the order of their keys, so that two transactions locking some of
	// the same subjects (or subjects whose hashes collide) take them in one order.
	sMultiLock = `SELECT count(pg_advisory_xact_lock(1, h))
		FROM (SELECT DISTINCT hashtext(s) AS h FROM unnest($1::text[]) AS s ORDER BY h) AS l`
	// Fails unless every key was claimed; it tries them all, but a failure rolls back anyway.
	sMultiClaim = `SELECT 1 / bool_and(pg_try_advisory_xact_lock(` + idemLockKeyMulti + `))::int
		FROM unnest($1::text[], $2::text[]) AS v(s, k)`
	// A batch of many shows checked each show's lease and set each tier's counts in a statement
	// of its own: over 10,000 purchases on 16 shows, 14 of each a batch where one show has one,
	// 451 ms of PostgreSQL's statement time against 126 ms (270 ms as these). The leases are
	// locked in the order of their names (LockRows above the sort), as LockOrder's first step says.
	sMultiLease = `SELECT 1 / (count(*) = $4)::int FROM (
		SELECT 1 FROM leases AS l
		JOIN unnest($1::text[], $2::text[], $3::int8[]) AS v(name, server_id, epoch)
			ON l.name = v.name AND l.server_id = v.server_id AND l.epoch = v.epoch
		ORDER BY l.name FOR KEY SHARE OF l) AS f`
	// The tiers' compare-and-set for many rows, after sMultiTierLock has locked them in the order
	// of their keys: left to itself, the UPDATE's join locks them in the order its plan meets
	// them (a hash join over the table, for a small one), not LockOrder's.
	sMultiTierLock = `SELECT count(*) FROM (
		SELECT 1 FROM tiers AS t JOIN unnest($1::text[], $2::text[]) AS v(show_id, id) ON t.show_id = v.show_id AND t.id = v.id
		ORDER BY t.show_id, t.id FOR NO KEY UPDATE OF t) AS f`
	sMultiTier = `WITH w AS (UPDATE tiers AS t SET held = v.held, sold = v.sold, version = t.version + 1
		FROM unnest($1::int4[], $2::int4[], $3::text[], $4::text[], $5::int8[]) AS v(held, sold, show_id, id, version)
		WHERE t.show_id = v.show_id AND t.id = v.id AND t.version = v.version AND v.held + v.sold <= t.capacity
		RETURNING 1)
		SELECT 1 / ((SELECT count(*) FROM w) = $6)::int`
	// Events are numbered in the order they were appended (WITH ORDINALITY … ORDER BY), each
	// after the last of its subject; two of one subject in one statement would get the same seq
	// and fail on the unique (subject, seq), voiding the run, which then appends one at a time.
	sMultiEvent = `WITH w AS (INSERT INTO events (id, type, subject, seq, data, created_at)
		SELECT v.id, v.type, v.subject,
			COALESCE((SELECT MAX(e.seq) FROM events AS e WHERE e.subject = v.subject), 0) + 1,
			v.data, v.created_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[])
			WITH ORDINALITY AS v(id, type, subject, data, created_at, n)
		ORDER BY v.n
		ON CONFLICT DO NOTHING
		RETURNING id, position, seq)
		SELECT array_agg(id), array_agg(position), array_agg(seq), 1 / (count(*) = $6)::int FROM w`
)

// columns turns rows of arguments into one slice per column, for unnest.
func columns(rows [][]any) []any {
	cols := make([]any, len(rows[0]))
	for c := range cols {
		col := make([]any, len(rows))
		for r, row := range rows {
			col[r] = row[c]
		}
		cols[c] = col
	}
	return cols
}

// coalesced turns the deferred writes into the batch's statements, in LockOrder: sorted by step
// and, within a step, by the key of the row each locks (stably, so that two writes of one row keep
// their order). The writes of a coalescing kind become one statement, sent where the first of them
// now is. Each deferred write is a blind write of its own row, checked by its own row count, so
// only writes of one row depend on each other's order, and those keep it; moving an insert before
// an update only matters to an update of the row inserted, and no caller changes a row in the
// transaction that inserts it.
func coalesced(pending []deferredWrite) []*pgx.QueuedQuery {
	pending = slices.Clone(pending)
	slices.SortStableFunc(pending, func(a, b deferredWrite) int {
		if c := cmp.Compare(a.step, b.step); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	groups := make(map[writeKind][]deferredWrite)
	for i, w := range pending {
		if w.kind == kindTier && i > 0 && pending[i-1].kind == kindTier && pending[i-1].key == w.key {
			// Two writes of one tier: a multi-row UPDATE changes a row once, so the kind goes as
			// single statements, each after the one before.
			for j := range pending {
				if pending[j].kind == kindTier {
					pending[j].kind = single
				}
			}
			break
		}
	}
	for _, w := range pending {
		if w.kind != single {
			groups[w.kind] = append(groups[w.kind], w)
		}
	}
	var out []*pgx.QueuedQuery
	for _, w := range pending {
		g := groups[w.kind]
		switch {
		case w.kind == single || len(g) == 1:
			out = append(out, w.one())
		case g == nil:
			// Sent with the first of its kind.
		default:
			out = append(out, many(w.kind, g)...)
			groups[w.kind] = nil
		}
	}
	return out
}

// one is the write as a statement of its own.
func (w deferredWrite) one() *pgx.QueuedQuery {
	q := &pgx.QueuedQuery{SQL: w.sql, Arguments: w.args}
	if w.kind == kindEvent {
		e := w.event
		q.QueryRow(func(r pgx.Row) error {
			var pos pgtype.Int8
			var seq pgtype.Int4
			var one int
			if err := r.Scan(&pos, &seq, &one); err != nil {
				return err
			}
			e.Position, e.Seq = pos.Int64, int(seq.Int32)
			return nil
		})
	}
	return q
}

// many is the writes of a kind (two or more) as one statement (two for tiers: the locks, then
// the writes).
func many(kind writeKind, g []deferredWrite) []*pgx.QueuedQuery {
	if kind == kindTier {
		rows := make([][]any, len(g))
		for i, w := range g {
			rows[i] = w.args
		}
		cols := columns(rows)
		return []*pgx.QueuedQuery{
			{SQL: sMultiTierLock, Arguments: []any{cols[2], cols[3]}},
			{SQL: sMultiTier, Arguments: append(cols, len(g))},
		}
	}
	return []*pgx.QueuedQuery{manyOne(kind, g)}
}

// manyOne is the writes of a kind (two or more) that go as one statement.
func manyOne(kind writeKind, g []deferredWrite) *pgx.QueuedQuery {
	rows := make([][]any, len(g))
	for i, w := range g {
		rows[i] = w.args
	}
	switch kind {
	case kindHold:
		return &pgx.QueuedQuery{SQL: sMultiHold, Arguments: append(columns(rows), len(g))}
	case kindOrder:
		return &pgx.QueuedQuery{SQL: sMultiOrder, Arguments: append(columns(rows), len(g))}
	case kindIdem:
		return &pgx.QueuedQuery{SQL: sMultiIdem, Arguments: append(columns(rows), len(g))}
	case kindLease:
		return &pgx.QueuedQuery{SQL: sMultiLease, Arguments: append(columns(rows), len(g))}
	case kindLock:
		subjects := make([]string, len(g))
		for i, w := range g {
			subjects[i] = w.args[0].(string)
		}
		return &pgx.QueuedQuery{SQL: sMultiLock, Arguments: []any{subjects}}
	case kindClaim:
		scopes, keys := make([]string, len(g)), make([]string, len(g))
		for i, w := range g {
			scopes[i], keys[i] = w.args[0].(string), w.args[1].(string)
		}
		return &pgx.QueuedQuery{SQL: sMultiClaim, Arguments: []any{scopes, keys}}
	}
	ids, types, subjects := make([]string, len(g)), make([]string, len(g)), make([]string, len(g))
	data, at := make([][]byte, len(g)), make([]time.Time, len(g))
	byID := make(map[string]*boxoffice.Event, len(g))
	for i, w := range g {
		e := w.event
		ids[i], types[i], subjects[i], data[i], at[i] = e.ID, e.Type, e.Subject, []byte(e.Data), e.CreatedAt
		byID[e.ID] = e
	}
	q := &pgx.QueuedQuery{SQL: sMultiEvent, Arguments: []any{ids, types, subjects, data, at, len(g)}}
	q.QueryRow(func(r pgx.Row) error {
		var gotIDs []string
		var positions []int64
		var seqs []int32
		var one int
		if err := r.Scan(&gotIDs, &positions, &seqs, &one); err != nil {
			return err
		}
		for i, id := range gotIDs {
			if e := byID[id]; e != nil {
				e.Position, e.Seq = positions[i], int(seqs[i])
			}
		}
		return nil
	})
	return q
}
