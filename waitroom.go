package boxoffice

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Waiting-room error codes (SPEC §8): a hold on a show with a waiting room needs an admitted
// queue ticket, and a ticket's token is short-lived.
const (
	// ENOTADMITTED refuses a hold (403) whose caller brings no queue ticket, a ticket that is not
	// yet admitted, one whose admission ran out, or one of another show or buyer.
	ENOTADMITTED = "not_admitted"
	// ETICKETEXPIRED is a queue ticket's token past its expiry (410): joining again with the same
	// buyer answers a fresh token for the same place.
	ETICKETEXPIRED = "ticket_expired"
)

// WaitRoom is a show's waiting room: buyers join a queue, and only those the queue has admitted
// may hold tickets of the show. Arrivals before OpensAt are ranked by a random draw (arriving a
// millisecond earlier gives no edge); later ones queue first come, first served, behind them.
type WaitRoom struct {
	ShowID string `json:"show_id"`
	// OpensAt is the on-sale: admission starts then.
	OpensAt time.Time `json:"opens_at"`
	// AdmitPerSecond is how many buyers the queue lets through a second, across all servers.
	AdmitPerSecond int `json:"admit_per_second"`
	// AdmissionTTLSeconds is how long an admitted buyer may start holds; unused by then, the
	// admission lapses.
	AdmissionTTLSeconds int `json:"admission_ttl_seconds"`
	// Admission is AdmissionRate (AdmitPerSecond a second) or AdmissionAuto (the same, but
	// never more buyers shopping at once than the show's tiers have tickets left, plus
	// AutoMarginPercent of them).
	Admission string `json:"admission"`
	// AutoMarginPercent is the margin of AdmissionAuto: buyers who drop out are replaced only as
	// their admissions run out, so a few more than the tickets left keep the show selling.
	AutoMarginPercent int `json:"auto_margin_percent"`
	// Paused stops admissions until it is cleared: the queue keeps its places and keeps taking
	// arrivals, and the room's admitter, on every server, lets nobody through meanwhile (an
	// incident at the payment provider or with the show). Buyers already admitted keep their
	// admission. On resuming, the rate starts afresh: at most a second's worth at once.
	Paused bool `json:"paused"`
	// Waiting and Admitted count the queue's entries not yet admitted and admitted so far.
	Waiting   int       `json:"waiting"`
	Admitted  int       `json:"admitted"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// A waiting room's admissions (WaitRoom.Admission).
const (
	// AdmissionRate lets the queue through at the room's rate.
	AdmissionRate = "rate"
	// AdmissionAuto lets it through at that rate while the buyers shopping at once (admitted,
	// admission not run out, no hold of the show made since) are fewer than the tickets the tiers
	// can still sell plus the margin: the crowd beyond what can still buy waits in the queue
	// instead of meeting sold_out on the hot path, and tickets that come back (a hold expires or
	// is released) let more through.
	AdmissionAuto = "auto"
)

// AdmissionMode is w's Admission as stored: AdmissionRate unless set.
func (w *WaitRoom) AdmissionMode() string {
	if w.Admission == "" {
		return AdmissionRate
	}
	return w.Admission
}

// QueueJoin is one buyer asking for a place in a show's queue. Rank is the random draw the
// place gets when it is made before the on-sale; it is ignored after it and for a buyer
// already in the queue (who keeps the place they had).
type QueueJoin struct {
	ShowID   string
	Identity string // the buyer, as BuyerKey normalises the address: one place per identity
	Rank     int64  // in [0, 2^62): the draw of a pre-on-sale arrival
	At       time.Time
}

// QueueEntry is one place in a show's queue.
type QueueEntry struct {
	// Seq numbers entries in the order the store took them: arrival order, and the order in
	// which post-on-sale arrivals are admitted.
	Seq      int64
	ShowID   string
	Identity string
	// PreOnSale is set when the buyer joined before the on-sale: such places are admitted in the
	// order of their random Rank, all before any post-on-sale place.
	PreOnSale bool
	Rank      int64
	JoinedAt  time.Time
	// AdmittedAt is zero while the entry waits. AdmitNo numbers admissions of a show from 0, in
	// the order the queue let them through.
	AdmittedAt time.Time
	AdmitNo    int64
	// Created is set by JoinQueue when the entry is new, clear when the identity was already in
	// the queue.
	Created bool
}

// QueueKey is a place's rank in its show's queue order: pre-on-sale places (lane 0) by their
// draw, then the rest (lane 1) first come, first served; Seq breaks ties.
type QueueKey struct {
	Lane int
	Rank int64
	Seq  int64
}

// QueueHead is a key before every place: lanes start at 0.
var QueueHead = QueueKey{Lane: -1}

// Key is e's place in the queue order.
func (e *QueueEntry) Key() QueueKey {
	if e.PreOnSale {
		return QueueKey{Lane: 0, Rank: e.Rank, Seq: e.Seq}
	}
	return QueueKey{Lane: 1, Rank: e.Rank, Seq: e.Seq}
}

// Compare orders keys as the queue does: negative when k comes before o.
func (k QueueKey) Compare(o QueueKey) int {
	return cmp.Or(cmp.Compare(k.Lane, o.Lane), cmp.Compare(k.Rank, o.Rank), cmp.Compare(k.Seq, o.Seq))
}

// SortPlaces puts places in queue order. A store's numbering statement returns them so in
// practice, without an ORDER BY that would sort them again; sorting sorted places is one pass.
func SortPlaces(places []QueuePlace) {
	slices.SortFunc(places, func(a, b QueuePlace) int { return a.Key.Compare(b.Key) })
}

// QueuePlace is a waiting entry as QueuePlaces numbers it: Ahead entries wait before it.
type QueuePlace struct {
	Key      QueueKey
	JoinedAt time.Time
	Ahead    int64
}

// WaitRoomStore is the durable home of waiting rooms. Every method owns its transaction. Joining
// touches only the queue's rows, never the show's tiers, so the crowd waiting for an on-sale never
// queues behind, or slows, the show's writer.
type WaitRoomStore interface {
	// PutWaitRoom creates or replaces the waiting room of w.ShowID (its counts are ignored) and
	// answers it as stored, created telling which. ENOTFOUND when the show does not exist.
	PutWaitRoom(ctx context.Context, w *WaitRoom) (stored *WaitRoom, created bool, err error)
	// GetWaitRoom returns a show's waiting room; ENOTFOUND when it has none. Its counts are
	// read only when counts is set: Waiting is a count of the queue, which the hot paths that
	// want only the settings must not pay for.
	GetWaitRoom(ctx context.Context, showID string, counts bool) (*WaitRoom, error)
	// PauseWaitRoom sets the room's Paused and UpdatedAt alone (the rest as it is, whoever put
	// it last) and answers the room with its counts; ENOTFOUND when the show has no room.
	PauseWaitRoom(ctx context.Context, showID string, paused bool, at time.Time) (*WaitRoom, error)
	// DeleteWaitRoom removes a show's waiting room and its queue; false when there was none.
	DeleteWaitRoom(ctx context.Context, showID string) (bool, error)
	// WaitRoomShows returns the ids of the shows that have a waiting room.
	WaitRoomShows(ctx context.Context) ([]string, error)
	// JoinQueue gives each join its place, in one transaction: a new entry, or the identity's
	// existing one. A join is before the on-sale when its At is before the room's OpensAt and
	// nothing has been admitted yet. entries[i] answers joins[i]; a show without a waiting room
	// answers a nil entry.
	JoinQueue(ctx context.Context, joins []QueueJoin) (entries []*QueueEntry, err error)
	// QueueEntry returns the entry seq with its show's admissions so far (WaitRoom.Admitted, read
	// with the entry); ENOTFOUND when there is no such entry.
	QueueEntry(ctx context.Context, seq int64) (e *QueueEntry, admitted int64, err error)
	// QueueAhead counts the show's waiting entries whose keys lie strictly between after (nil:
	// from the head of the queue) and before, with the show's admissions read in the same
	// snapshot. It reads the queue's order over that range, so a count from the head costs the
	// position: callers count from a place they know (see waitroom's positions).
	QueueAhead(ctx context.Context, showID string, after *QueueKey, before QueueKey) (ahead, admitted int64, err error)
	// QueuePlaces numbers the show's waiting entries in queue order, in one snapshot, and
	// passes to each those that joined after joinedAfter together with the last entry, each with
	// how many entries wait before it; it answers the show's admissions in the same snapshot (0
	// when nothing waits). It reads the whole waiting queue once, where counting each entry's
	// place would read it up to the entry for every entry. The places stream rather than come
	// back as a slice: the first numbering after a stadium's on-sale is every arrival of the
	// hours before it. They come in queue order in practice, which no store promises (that
	// would take an ORDER BY sorting them again); each returning an error stops the read, and
	// QueuePlaces returns that error.
	QueuePlaces(ctx context.Context, showID string, joinedAfter time.Time, each func(QueuePlace) error) (admitted int64, err error)
	// AdmitQueue lets through the show's next waiting entries, in queue order, as many as the
	// room's rate has earned by now since the on-sale (at most a second's worth at once), and
	// returns how many; none while the room is paused (read in the same transaction). With shoppers >= 0 (automatic admission) it also lets through no more
	// than keeps the buyers shopping at once (admitted since now minus the room's admission
	// lifetime, with no hold of the show created since their admission) at most shoppers; the
	// count is taken in the same transaction. Concurrent callers, on any server, together never admit more than the
	// rate allows nor any entry twice: the room's row is read and advanced in one transaction
	// that holds it.
	AdmitQueue(ctx context.Context, showID string, now time.Time, shoppers int) (int, error)
	// Secret returns the store's secret called name, making it from candidate when there is none
	// yet, so that every server sharing the store signs with the same one.
	Secret(ctx context.Context, name string, candidate []byte) ([]byte, error)
}

// AdmitBudget is how many entries a waiting room's rate (per second) has earned at now (all
// times Unix µs), given its on-sale and the credit mark of its last admission, and where that budget
// starts: at the last spend, but no earlier than a second ago (a paused admitter does not flood
// the show afterwards) and never before the on-sale.
func AdmitBudget(now, opens, credit, rate int64) (budget, start int64) {
	if now < opens {
		return 0, 0
	}
	start = max(credit, opens, now-int64(time.Second/time.Microsecond))
	if now <= start {
		return 0, start
	}
	return (now - start) * rate / 1e6, start
}

// CreditAfter is the credit mark after admitting n at rate from start, rounded up so that the marks of
// all admissions together never run ahead of the rate.
func CreditAfter(start, n, rate int64) int64 {
	return start + (n*1e6+rate-1)/rate
}
