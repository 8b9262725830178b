package postgres

// LockOrder names the one order in which every transaction on this store takes its locks, whatever
// the strategy and whichever server runs it. Servers that share a database run transactions that
// wait for each other; taken in one order, those waits never close a cycle, and PostgreSQL never
// has to break one (each deadlock stalls the hot tier for deadlock_timeout and reruns a batch).
//
//  0. The show's lease, checked by a show writer's batch (CheckLease, FOR KEY SHARE; see
//     cluster.go). It waits only for a takeover of that lease, which holds no other lock and
//     waits for nothing but the batches already fenced, so it closes no cycle.
//  1. The idempotency key's claim, which never waits. InsertIdemRecord first tries the key's
//     advisory lock, in a statement of its own, and then inserts only where no record of the key
//     is visible: a key that another transaction in flight is claiming is ECONFLICT at once, and
//     a stored record — whose row a settle, an await or a resume may be updating — is ECONFLICT
//     without touching that row. So the claim is in no cycle, although a client that retries on
//     another server sends one key to two servers at once and an insert ON CONFLICT otherwise
//     waits for the other transaction (the deadlocks of issue 12 were all such waits).
//  2. Holds (GetHold in an Update, EndHold), by id.
//  3. Orders (UpdateOrder), by id.
//  4. Event subjects (AppendEvent's advisory lock), each after the row of the hold or order it
//     is about, so two transactions only meet on one once they hold that row.
//  5. Idempotency records already stored (GetIdemRecord in an Update, UpdateIdemRecord,
//     AnswerIdemRecordForOrder).
//  6. Tiers (AddTierCounts, SetTierCounts, TierCounts for update), by show and tier id.
//
// Seats stand outside the order: a claim (ClaimSeats) never waits for a seat row, it skips one
// that another transaction has locked and counts it as taken for now; and freeing a hold's seats
// (FreeSeats, in a release, an expiry or a cancel, which may then wait for the tier) locks only
// that hold's seats, which no claim waits for.
//
// Rows a transaction inserts (holds, orders, events, the claimed record) have new ids that no one
// else waits for, so those inserts may go anywhere.
//
// The tier may instead come first, before the hold, for strategies that lock it first for every
// change (pessimistic), and for a reservation under any strategy (atomic): after the tier a
// reservation only inserts new rows and claims its key, and so waits for nothing. Servers on one
// database must therefore run one strategy: a tier-first change and a tier-last one of the same
// hold (a pessimistic expiry, an atomic settle) would lock hold and tier in opposite orders.
//
// Within one transaction the store keeps the order for the writes it defers (tx.later): they go
// to the server sorted by the steps above (see coalesced). A transaction that runs several
// requests one after the other (the actor's batch, a merged transaction, their rerun without
// deferring) keeps it only per request, and the actor may lock a tier in the middle of a batch
// (confirming a sold-out answer). Two such transactions can then only deadlock on an existing
// hold or order that both change: two servers settling or expiring the same one at once. The
// completer leaves an order to the server whose request is settling it (sale's CompletePending);
// one owner per show (package cluster: leases, the fence, forwarding to the owner) rules it out
// altogether, as every write of a show then runs in its one owner's writer.
const LockOrder = "show lease (fence) → idempotency claim (never waits) → hold → order → event subject → idempotency record → tier"
