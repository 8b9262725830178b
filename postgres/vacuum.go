package postgres

// Churn vacuum: a partial index keeps the entry of every row that has left it until a VACUUM
// removes it, and a scan that reads the index from its head walks over all of them. The free-seat
// index is read from its lowest rank for every best-available hold, and in an on-sale the seats
// leave it at its head, hundreds a second. Measured on a seated tier of 10,000 after 4,000 holds
// of two: the read of the 64 best free seats took 0.7 ms over 79 buffers (104 heap fetches), and
// 0.12 ms over 6 after a VACUUM; over a run of 4,000 holds those reads took 1.1–1.5 s of
// PostgreSQL's time, and 0.2 s with this loop (holds/s +20%). Autovacuum comes after its nap (a
// minute by default) and once a fifth of the table has changed: after the on-sale's rush. So the
// store vacuums such tables itself once they hold churnVacuumDead dead row versions, checking
// every maintenanceEvery. SKIP_LOCKED leaves a table that autovacuum or another server is
// vacuuming already.
// churnVacuumDead is the dead row versions a churn table holds before the store vacuums it.
const churnVacuumDead = 500

// churnTables are the tables whose partial indexes are read from the head the rows leave. The
// queue's waiting index is read so too (the admitter takes its head), but vacuuming it measured
// no faster admissions, for 160 ms of PostgreSQL's time a VACUUM, so it is left to autovacuum.
var churnTables = []string{"seats"}

// dueForVacuum returns the churn tables that hold churnVacuumDead dead row versions or more.
func dueForVacuum(stats map[string]tableStats, churn []string) []string {
	var due []string
	for _, t := range churn {
		if stats[t].dead >= churnVacuumDead {
			due = append(due, t)
		}
	}
	return due
}
