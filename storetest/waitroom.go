package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"boxoffice"
)

// OpenTwice opens a new, empty store and returns it with a function that opens the same database
// again, as a restarted server or a second server sharing it would. The store and every reopened
// one are closed when t ends (closing one twice must be harmless).
type OpenTwice func(t *testing.T) (db boxoffice.Store, reopen func() boxoffice.Store)

// ExerciseWaitRoom runs the waiting room's suite: the queue's order (a random draw before the
// on-sale, arrival after it), one place per buyer, the admission rate held across concurrent
// admitters and servers, and the queue surviving a restart.
func ExerciseWaitRoom(t *testing.T, open OpenTwice) {
	for _, c := range []struct {
		name string
		test func(t *testing.T, open OpenTwice)
	}{
		{"RoomRoundTrip", testWaitRoomRoundTrip},
		{"OnePlacePerBuyer", testOnePlacePerBuyer},
		{"RandomThenFirstComeFirstServed", testRandomThenFCFS},
		{"AdmissionRate", testAdmissionRate},
		{"PausedAdmitsNobody", testPausedRoom},
		{"ConcurrentAdmittersNeverOverAdmit", testConcurrentAdmitters},
		{"QueueSurvivesRestart", testQueueSurvivesRestart},
		{"SharedSecret", testSharedSecret},
		{"AutomaticAdmissionCountsShoppers", testAutomaticAdmission},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, open) })
	}
}

func rooms(t *testing.T, db boxoffice.Store) boxoffice.WaitRoomStore {
	t.Helper()
	w, ok := db.(boxoffice.WaitRoomStore)
	if !ok {
		t.Fatalf("%T is not a boxoffice.WaitRoomStore", db)
	}
	return w
}

// openRoom opens a store with a show "s" whose room opens at base+1h and admits rate a second.
func openRoom(t *testing.T, open OpenTwice, rate int) (boxoffice.WaitRoomStore, func() boxoffice.WaitRoomStore) {
	t.Helper()
	db, reopen := open(t)
	putShow(t, db, testShow("s", tier("ga", 100)))
	w := rooms(t, db)
	if _, _, err := w.PutWaitRoom(context.Background(), &boxoffice.WaitRoom{ShowID: "s", OpensAt: at(time.Hour),
		AdmitPerSecond: rate, AdmissionTTLSeconds: 300, UpdatedAt: base}); err != nil {
		t.Fatalf("PutWaitRoom: %v", err)
	}
	return w, func() boxoffice.WaitRoomStore { return rooms(t, reopen()) }
}

func join(t *testing.T, w boxoffice.WaitRoomStore, joins ...boxoffice.QueueJoin) []*boxoffice.QueueEntry {
	t.Helper()
	es, err := w.JoinQueue(context.Background(), joins)
	if err != nil {
		t.Fatalf("JoinQueue: %v", err)
	}
	if len(es) != len(joins) {
		t.Fatalf("JoinQueue answered %d entries for %d joins", len(es), len(joins))
	}
	return es
}

// entry reads the entry seq and its position (0 once admitted), counted from the head of the
// queue. It checks the other reads of the queue against that count: the admissions as the room
// counts them, counts from waiting entries before it, and the entry's number when the whole
// queue is numbered, and the numbering of the entries that joined after it.
func entry(t *testing.T, w boxoffice.WaitRoomStore, seq int64) (*boxoffice.QueueEntry, int) {
	t.Helper()
	ctx := context.Background()
	e, admitted, err := w.QueueEntry(ctx, seq)
	if err != nil {
		t.Fatalf("QueueEntry(%d): %v", seq, err)
	}
	room, err := w.GetWaitRoom(ctx, e.ShowID, false)
	if err != nil || int64(room.Admitted) != admitted {
		t.Fatalf("QueueEntry(%d) answered %d admitted; the room %+v, %v", seq, admitted, room, err)
	}
	if !e.AdmittedAt.IsZero() {
		return e, 0
	}
	key := e.Key()
	ahead, admitted2, err := w.QueueAhead(ctx, e.ShowID, nil, key)
	if err != nil || admitted2 != admitted {
		t.Fatalf("QueueAhead(%+v) = %d, %d admitted, %v; the room had %d admitted", key, ahead, admitted2, err, admitted)
	}
	all, admitted3, err := queuePlaces(ctx, w, e.ShowID, time.Time{})
	if err != nil || admitted3 != admitted {
		t.Fatalf("QueuePlaces(%s) = %d places, %d admitted, %v; the room had %d admitted", e.ShowID, len(all), admitted3, err, admitted)
	}
	i := slices.IndexFunc(all, func(p boxoffice.QueuePlace) bool { return p.Key == key })
	if i < 0 || all[i].Ahead != ahead || !all[i].JoinedAt.Equal(e.JoinedAt) {
		t.Fatalf("entry %+v, counted %d from the head, is numbered %d among %+v", e, ahead, i, all)
	}
	for j, p := range all {
		if p.Ahead != int64(j) || j > 0 && all[j-1].Key.Compare(p.Key) >= 0 {
			t.Fatalf("QueuePlaces numbered the queue %+v: place %d out of order", all, j)
		}
	}
	for _, j := range []int{0, i / 2, i - 1} {
		if j < 0 || j >= i {
			continue
		}
		if n, _, err := w.QueueAhead(ctx, e.ShowID, &all[j].Key, key); err != nil || n != ahead-int64(j)-1 {
			t.Fatalf("QueueAhead from %+v to %+v = %d, %v; want %d", all[j].Key, key, n, err, ahead-int64(j)-1)
		}
	}
	if len(all) > 1 {
		// The caller's error stops the read, and comes back as QueuePlaces' own.
		stop, calls := errors.New("enough"), 0
		_, err := w.QueuePlaces(ctx, e.ShowID, time.Time{}, func(boxoffice.QueuePlace) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("QueuePlaces with a callback that fails = %v after %d calls; want its error after one", err, calls)
		}
	}
	later, _, err := queuePlaces(ctx, w, e.ShowID, e.JoinedAt)
	want := slices.DeleteFunc(slices.Clone(all[:len(all)-1]), func(p boxoffice.QueuePlace) bool { return !p.JoinedAt.After(e.JoinedAt) })
	want = append(want, all[len(all)-1])
	if err != nil || !slices.Equal(later, want) {
		t.Fatalf("QueuePlaces joined after %v = %+v, %v; want %+v", e.JoinedAt, later, err, want)
	}
	return e, int(ahead) + 1
}

// queuePlaces collects what QueuePlaces streams, in queue order.
func queuePlaces(ctx context.Context, w boxoffice.WaitRoomStore, showID string, joinedAfter time.Time) ([]boxoffice.QueuePlace, int64, error) {
	var places []boxoffice.QueuePlace
	admitted, err := w.QueuePlaces(ctx, showID, joinedAfter, func(p boxoffice.QueuePlace) error {
		places = append(places, p)
		return nil
	})
	boxoffice.SortPlaces(places)
	return places, admitted, err
}

func admit(t *testing.T, w boxoffice.WaitRoomStore, now time.Time) int {
	t.Helper()
	n, err := w.AdmitQueue(context.Background(), "s", now, -1)
	if err != nil {
		t.Fatalf("AdmitQueue: %v", err)
	}
	return n
}

func testWaitRoomRoundTrip(t *testing.T, open OpenTwice) {
	ctx := context.Background()
	db, _ := open(t)
	w := rooms(t, db)
	room := &boxoffice.WaitRoom{ShowID: "s", OpensAt: at(time.Hour), AdmitPerSecond: 50, AdmissionTTLSeconds: 120, UpdatedAt: at(0)}
	_, _, err := w.PutWaitRoom(ctx, room)
	wantCode(t, err, boxoffice.ENOTFOUND)
	_, err = w.GetWaitRoom(ctx, "s", true)
	wantCode(t, err, boxoffice.ENOTFOUND)

	putShow(t, db, testShow("s", tier("ga", 10)))
	got, created, err := w.PutWaitRoom(ctx, room)
	if err != nil || !created {
		t.Fatalf("PutWaitRoom = %v, %v; want created", created, err)
	}
	want := boxoffice.WaitRoom{ShowID: "s", OpensAt: at(time.Hour), AdmitPerSecond: 50, AdmissionTTLSeconds: 120, Admission: boxoffice.AdmissionRate,
		CreatedAt: at(0), UpdatedAt: at(0)}
	if *got != want {
		t.Errorf("PutWaitRoom stored %+v, want %+v", *got, want)
	}
	join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: "a@x", At: at(time.Minute)})
	room.AdmitPerSecond, room.UpdatedAt = 7, at(time.Minute)
	if got, created, err = w.PutWaitRoom(ctx, room); err != nil || created {
		t.Fatalf("PutWaitRoom again = %v, %v; want replaced", created, err)
	}
	want.AdmitPerSecond, want.UpdatedAt, want.Waiting = 7, at(time.Minute), 1
	if *got != want {
		t.Errorf("PutWaitRoom replaced %+v, want %+v", *got, want)
	}
	if got, err := w.GetWaitRoom(ctx, "s", false); err != nil || got.Waiting != 0 || got.AdmitPerSecond != 7 {
		t.Errorf("GetWaitRoom without counts = %+v, %v; want the settings, no count", got, err)
	}
	if ids, err := w.WaitRoomShows(ctx); err != nil || !slices.Equal(ids, []string{"s"}) {
		t.Errorf("WaitRoomShows = %v, %v; want [s]", ids, err)
	}
	if found, err := w.DeleteWaitRoom(ctx, "s"); err != nil || !found {
		t.Fatalf("DeleteWaitRoom = %v, %v", found, err)
	}
	if found, err := w.DeleteWaitRoom(ctx, "s"); err != nil || found {
		t.Fatalf("DeleteWaitRoom again = %v, %v; want not found", found, err)
	}
	if es := join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: "a@x", At: at(time.Minute)}); es[0] != nil {
		t.Errorf("a join without a waiting room answered %+v, want nil", es[0])
	}
}

func testOnePlacePerBuyer(t *testing.T, open OpenTwice) {
	w, _ := openRoom(t, open, 10)
	es := join(t, w,
		boxoffice.QueueJoin{ShowID: "s", Identity: "a@x", Rank: 5, At: at(time.Minute)},
		boxoffice.QueueJoin{ShowID: "s", Identity: "b@x", Rank: 3, At: at(time.Minute)},
		boxoffice.QueueJoin{ShowID: "s", Identity: "a@x", Rank: 1, At: at(time.Minute)},
		boxoffice.QueueJoin{ShowID: "nope", Identity: "a@x", At: at(time.Minute)},
	)
	if !es[0].Created || !es[1].Created || es[2].Created || es[2].Seq != es[0].Seq || es[3] != nil {
		t.Fatalf("joins answered %+v %+v %+v %+v; want a new a, a new b, a again, nothing", es[0], es[1], es[2], es[3])
	}
	if !es[0].PreOnSale || es[0].Rank != 5 {
		t.Errorf("a joined before the on-sale with rank 5, got %+v", es[0])
	}
	// Later, after the on-sale, a again: the same place, with the draw of its first join.
	again := join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: "a@x", Rank: 9, At: at(2 * time.Hour)})[0]
	if again.Created || again.Seq != es[0].Seq || !again.PreOnSale || again.Rank != 5 {
		t.Errorf("a joined again after the on-sale: %+v, want its first entry %+v", again, es[0])
	}
	// Many servers at once, each with the same buyers: one place each.
	var wg sync.WaitGroup
	got := make([][]*boxoffice.QueueEntry, 8)
	for g := range got {
		wg.Go(func() {
			var joins []boxoffice.QueueJoin
			for i := range 20 {
				joins = append(joins, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("c%d@x", (i+g*7)%20), At: at(2 * time.Hour)})
			}
			var err error
			if got[g], err = w.JoinQueue(context.Background(), joins); err != nil {
				t.Errorf("JoinQueue: %v", err)
			}
		})
	}
	wg.Wait()
	seqs := map[string]int64{}
	created := map[string]int{}
	for _, es := range got {
		for _, e := range es {
			if s, ok := seqs[e.Identity]; ok && s != e.Seq {
				t.Errorf("%s has two places, %d and %d", e.Identity, s, e.Seq)
			}
			seqs[e.Identity] = e.Seq
			if e.Created {
				created[e.Identity]++
			}
		}
	}
	for id, n := range created {
		if n != 1 {
			t.Errorf("%s was created %d times", id, n)
		}
	}
	if len(created) != 20 {
		t.Errorf("%d buyers created, want 20", len(created))
	}
}

func testRandomThenFCFS(t *testing.T, open OpenTwice) {
	w, _ := openRoom(t, open, 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	const pre, post = 300, 100
	var preSeqs, postSeqs []int64
	ranks := map[int64]int64{}
	// Joins arrive in batches, as the server sends them; arrival order is seq order.
	for i := 0; i < pre; i += 50 {
		var joins []boxoffice.QueueJoin
		for k := range 50 {
			joins = append(joins, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("pre%d@x", i+k),
				Rank: rng.Int64N(1 << 62), At: at(time.Duration(i+k) * time.Second)})
		}
		for k, e := range join(t, w, joins...) {
			if !e.PreOnSale || e.Rank != joins[k].Rank {
				t.Fatalf("pre-on-sale join answered %+v", e)
			}
			preSeqs, ranks[e.Seq] = append(preSeqs, e.Seq), e.Rank
		}
	}
	// Before the on-sale every place waits; positions follow the draw, not arrival.
	byRank := slices.Clone(preSeqs)
	slices.SortFunc(byRank, func(a, b int64) int { return cmpInt(ranks[a], ranks[b]) })
	if slices.Equal(byRank, preSeqs) {
		t.Fatalf("the draw ranked %d arrivals in arrival order", pre)
	}
	for i, seq := range byRank[:20] {
		if _, pos := entry(t, w, seq); pos != i+1 {
			t.Errorf("entry ranked %d has position %d", i+1, pos)
		}
	}
	if n := admit(t, w, at(time.Hour-time.Millisecond)); n != 0 {
		t.Fatalf("admitted %d before the on-sale", n)
	}
	// After the on-sale, arrivals queue behind everyone who came before it.
	for i := range post {
		e := join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("post%d@x", i),
			Rank: rng.Int64N(1 << 62), At: at(time.Hour + time.Duration(i)*time.Millisecond)})[0]
		if e.PreOnSale {
			t.Fatalf("a join after the on-sale was ranked with the draw: %+v", e)
		}
		postSeqs = append(postSeqs, e.Seq)
		if i == 0 {
			// Admission has begun: a join stamped before the on-sale (a server's clock behind)
			// no longer takes part in the draw, so it cannot pass those already waiting.
			n := admit(t, w, at(time.Hour+10*time.Millisecond))
			if n != 10 {
				t.Fatalf("admitted %d in the first 10 ms at 1000/s, want 10", n)
			}
			late := join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: "late@x", Rank: 0, At: at(time.Hour - time.Second)})[0]
			if late.PreOnSale {
				t.Errorf("a join after admission began took part in the draw: %+v", late)
			}
			postSeqs = append(postSeqs, late.Seq)
		}
	}
	for s := 1; s <= 10; s++ {
		admit(t, w, at(time.Hour+time.Duration(s)*time.Second))
	}
	order := func(seqs []int64) []int64 {
		nos := make([]int64, len(seqs))
		for i, seq := range seqs {
			e, _ := entry(t, w, seq)
			if e.AdmittedAt.IsZero() {
				t.Fatalf("entry %d not admitted", seq)
			}
			nos[i] = e.AdmitNo
		}
		return nos
	}
	preNos, postNos := order(byRank), order(postSeqs)
	for i, no := range preNos {
		if no != int64(i) {
			t.Fatalf("the pre-on-sale arrival ranked %d was admitted %d-th", i, no)
		}
	}
	for i, no := range postNos {
		if no != int64(pre+i) {
			t.Fatalf("the post-on-sale arrival %d was admitted %d-th, want %d-th", i, no, pre+i)
		}
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testAdmissionRate(t *testing.T, open OpenTwice) {
	w, _ := openRoom(t, open, 10)
	var joins []boxoffice.QueueJoin
	for i := range 100 {
		joins = append(joins, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("b%d@x", i), At: at(time.Duration(i) * time.Second)})
	}
	join(t, w, joins...)
	for _, step := range []struct {
		at   time.Duration
		want int
	}{
		{time.Hour - time.Second, 0},          // before the on-sale
		{time.Hour + 500*time.Millisecond, 5}, // half a second at 10/s
		{time.Hour + 500*time.Millisecond, 0}, // nothing more at the same instant
		{time.Hour + 550*time.Millisecond, 0}, // half an admission earned
		{time.Hour + 600*time.Millisecond, 1},
		{time.Hour + 10*time.Second, 10}, // a long pause earns one second's worth, not nine
		{time.Hour + 10100*time.Millisecond, 1},
	} {
		if n := admit(t, w, at(step.at)); n != step.want {
			t.Errorf("at on-sale%+v admitted %d, want %d", step.at-time.Hour, n, step.want)
		}
	}
	room, err := w.GetWaitRoom(context.Background(), "s", true)
	if err != nil || room.Admitted != 17 || room.Waiting != 83 {
		t.Errorf("room = %+v, %v; want 17 admitted, 83 waiting", room, err)
	}
}

// testPausedRoom pauses a room in the middle of its on-sale, through another handle as another
// server would: from the pause on, no admitter admits, whoever runs it, while the queue keeps
// taking arrivals in order; a resume admits at the rate again, a second's worth at most at once.
func testPausedRoom(t *testing.T, open OpenTwice) {
	ctx := context.Background()
	w, reopen := openRoom(t, open, 10)
	other := reopen()
	var joins []boxoffice.QueueJoin
	for i := range 40 {
		joins = append(joins, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("b%d@x", i), At: at(time.Duration(i) * time.Second)})
	}
	join(t, w, joins...)
	if n := admit(t, w, at(time.Hour+500*time.Millisecond)); n != 5 {
		t.Fatalf("admitted %d before the pause, want 5", n)
	}
	room := &boxoffice.WaitRoom{ShowID: "s", OpensAt: at(time.Hour), AdmitPerSecond: 10, AdmissionTTLSeconds: 300,
		Paused: true, UpdatedAt: at(time.Hour + time.Second)}
	got, created, err := other.PutWaitRoom(ctx, room)
	if err != nil || created || !got.Paused || got.Admitted != 5 || got.Waiting != 35 {
		t.Fatalf("PutWaitRoom(paused) = %+v, %v, %v; want the room paused, replaced, its queue kept", got, created, err)
	}
	if got, err := w.GetWaitRoom(ctx, "s", false); err != nil || !got.Paused {
		t.Fatalf("GetWaitRoom = %+v, %v; want paused", got, err)
	}
	for _, d := range []time.Duration{2 * time.Second, 3 * time.Second, time.Minute} {
		for _, h := range []boxoffice.WaitRoomStore{w, other} {
			if n, err := h.AdmitQueue(ctx, "s", at(time.Hour+d), -1); err != nil || n != 0 {
				t.Fatalf("AdmitQueue at on-sale+%v while paused = %d, %v; want nobody", d, n, err)
			}
			if n, err := h.AdmitQueue(ctx, "s", at(time.Hour+d), 1000); err != nil || n != 0 {
				t.Fatalf("automatic AdmitQueue at on-sale+%v while paused = %d, %v; want nobody", d, n, err)
			}
		}
	}
	// Arrivals during the pause queue behind the others, first come first served.
	late := join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: "late@x", At: at(time.Hour + 30*time.Second)})[0]
	if late == nil || late.PreOnSale || !late.AdmittedAt.IsZero() {
		t.Fatalf("a join while paused = %+v, want a waiting post-on-sale place", late)
	}
	room.Paused, room.UpdatedAt = false, at(time.Hour+time.Minute)
	if got, _, err := w.PutWaitRoom(ctx, room); err != nil || got.Paused {
		t.Fatalf("PutWaitRoom(resumed) = %+v, %v", got, err)
	}
	// The minute paused earned nothing beyond the second's worth any stalled admitter gets.
	if n := admit(t, other, at(time.Hour+time.Minute+time.Second)); n != 10 {
		t.Errorf("admitted %d a second after the resume, want 10 (one second at 10/s)", n)
	}
	if n := admit(t, w, at(time.Hour+time.Minute+1500*time.Millisecond)); n != 5 {
		t.Errorf("admitted %d half a second later, want 5", n)
	}
	if got, err := w.GetWaitRoom(ctx, "s", true); err != nil || got.Admitted != 20 || got.Waiting != 21 {
		t.Errorf("room = %+v, %v; want 20 admitted, 21 waiting", got, err)
	}

	// PauseWaitRoom flips the pause alone: the settings stay whoever put them.
	got, err = other.PauseWaitRoom(ctx, "s", true, at(2*time.Hour))
	if err != nil {
		t.Fatalf("PauseWaitRoom: %v", err)
	}
	want := *got
	want.AdmitPerSecond, want.AdmissionTTLSeconds, want.Admission, want.Paused = 10, 300, boxoffice.AdmissionRate, true
	want.ShowID, want.OpensAt, want.UpdatedAt, want.Admitted, want.Waiting = "s", at(time.Hour), at(2*time.Hour), 20, 21
	if *got != want {
		t.Fatalf("PauseWaitRoom = %+v; want %+v", got, want)
	}
	if n := admit(t, w, at(2*time.Hour+time.Second)); n != 0 {
		t.Errorf("admitted %d after PauseWaitRoom", n)
	}
	if got, err := w.PauseWaitRoom(ctx, "s", false, at(2*time.Hour+time.Second)); err != nil || got.Paused || got.AdmitPerSecond != 10 {
		t.Fatalf("PauseWaitRoom(false) = %+v, %v", got, err)
	}
	if n := admit(t, w, at(2*time.Hour+2*time.Second)); n != 10 {
		t.Errorf("admitted %d a second after resuming, want 10", n)
	}
	_, err = w.PauseWaitRoom(ctx, "nothing", true, at(2*time.Hour))
	wantCode(t, err, boxoffice.ENOTFOUND)
}

// testConcurrentAdmitters runs admitters on two handles of one database, as two servers would,
// each many times over at the same instants: together they admit what the rate allows once.
func testConcurrentAdmitters(t *testing.T, open OpenTwice) {
	const rate = 50
	w1, reopen := openRoom(t, open, rate)
	w2 := reopen()
	var joins []boxoffice.QueueJoin
	for i := range 400 {
		joins = append(joins, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("b%d@x", i), Rank: int64(i * 7919 % 400), At: at(0)})
	}
	join(t, w1, joins...)
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for g := range 8 {
		w := w1
		if g%2 == 1 {
			w = w2
		}
		wg.Go(func() {
			for step := range 20 {
				n, err := w.AdmitQueue(context.Background(), "s", at(time.Hour+time.Duration(step)*100*time.Millisecond), -1)
				if err != nil {
					t.Errorf("AdmitQueue: %v", err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// 1.9 s after the on-sale at 50/s: at most 95, each step's budget spent once. (Fewer when
	// an admitter ran more than a second ahead of the others: a budget older than a second
	// lapses.)
	if total > 95 || total < 50 {
		t.Errorf("admitted %d in 1.9 s at %d/s, want 50 to 95", total, rate)
	}
	nos := map[int64]bool{}
	for _, j := range joins {
		es := join(t, w2, j)
		if !es[0].AdmittedAt.IsZero() {
			if nos[es[0].AdmitNo] {
				t.Errorf("admission number %d handed out twice", es[0].AdmitNo)
			}
			nos[es[0].AdmitNo] = true
		}
	}
	if len(nos) != total {
		t.Errorf("%d entries admitted, the admitters counted %d", len(nos), total)
	}
	for i := range int64(total) {
		if !nos[i] {
			t.Errorf("admission number %d missing", i)
		}
	}
}

func testQueueSurvivesRestart(t *testing.T, open OpenTwice) {
	db, reopen := open(t)
	putShow(t, db, testShow("s", tier("ga", 100)))
	w := rooms(t, db)
	if _, _, err := w.PutWaitRoom(context.Background(), &boxoffice.WaitRoom{ShowID: "s", OpensAt: at(time.Hour),
		AdmitPerSecond: 2, AdmissionTTLSeconds: 300, UpdatedAt: base}); err != nil {
		t.Fatalf("PutWaitRoom: %v", err)
	}
	var seqs []int64
	for i := range 5 {
		e := join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("b%d@x", i), At: at(2 * time.Hour)})[0]
		seqs = append(seqs, e.Seq)
	}
	if n := admit(t, w, at(2*time.Hour)); n != 2 {
		t.Fatalf("admitted %d, want a second's worth, 2", n)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	w = rooms(t, reopen())
	for i, seq := range seqs {
		e, pos := entry(t, w, seq)
		wantPos := max(0, i-1)
		if e.Identity != fmt.Sprintf("b%d@x", i) || pos != wantPos || (i < 2) == e.AdmittedAt.IsZero() {
			t.Errorf("after a restart entry %d = %+v at %d, want b%d@x at %d", seq, e, pos, i, wantPos)
		}
	}
	if e := join(t, w, boxoffice.QueueJoin{ShowID: "s", Identity: "b3@x", At: at(3 * time.Hour)})[0]; e.Created || e.Seq != seqs[3] {
		t.Errorf("b3 joined again after a restart: %+v, want entry %d", e, seqs[3])
	}
	if n := admit(t, w, at(2*time.Hour+time.Second)); n != 2 {
		t.Errorf("admitted %d a second later, want 2", n)
	}
	room, err := w.GetWaitRoom(context.Background(), "s", true)
	if err != nil || room.Admitted != 4 || room.Waiting != 1 {
		t.Errorf("room = %+v, %v; want 4 admitted, 1 waiting", room, err)
	}
}

func testSharedSecret(t *testing.T, open OpenTwice) {
	db, reopen := open(t)
	w1, w2 := rooms(t, db), rooms(t, reopen())
	s1, err := w1.Secret(context.Background(), "queue", []byte("first"))
	if err != nil || !bytes.Equal(s1, []byte("first")) {
		t.Fatalf("Secret = %q, %v; want the first candidate", s1, err)
	}
	s2, err := w2.Secret(context.Background(), "queue", []byte("second"))
	if err != nil || !bytes.Equal(s2, []byte("first")) {
		t.Errorf("Secret on another handle = %q, %v; want the stored one", s2, err)
	}
}

// testAutomaticAdmission checks the shoppers bound of AdmitQueue: only buyers admitted within
// the admission's lifetime and with no hold of the show made since their admission count, a
// buyer's hold is found whatever the case of their address, and the bound holds with the rate's
// budget to spare.
func testAutomaticAdmission(t *testing.T, open OpenTwice) {
	ctx := context.Background()
	db, _ := open(t)
	putShow(t, db, testShow("s", tier("ga", 100)))
	w := rooms(t, db)
	if _, _, err := w.PutWaitRoom(ctx, &boxoffice.WaitRoom{ShowID: "s", OpensAt: at(time.Hour), AdmitPerSecond: 1000,
		AdmissionTTLSeconds: 60, Admission: boxoffice.AdmissionAuto, AutoMarginPercent: 25, UpdatedAt: base}); err != nil {
		t.Fatalf("PutWaitRoom: %v", err)
	}
	room, err := w.GetWaitRoom(ctx, "s", false)
	if err != nil || room.Admission != boxoffice.AdmissionAuto || room.AutoMarginPercent != 25 {
		t.Fatalf("GetWaitRoom = %+v, %v; want auto admission with a 25%% margin", room, err)
	}
	var joins []boxoffice.QueueJoin
	for i := range 10 {
		joins = append(joins, boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("b%d@example.com", i), Rank: int64(i), At: at(2 * time.Hour)})
	}
	join(t, w, joins...)
	shop := func(now time.Time, shoppers, want int) {
		t.Helper()
		n, err := w.AdmitQueue(ctx, "s", now, shoppers)
		if err != nil || n != want {
			t.Fatalf("AdmitQueue(%s, %d) = %d, %v; want %d", now.Sub(base), shoppers, n, err, want)
		}
	}
	t0 := at(3 * time.Hour)
	shop(t0, 3, 3)                  // b0..b2 shopping
	shop(t0.Add(time.Second), 3, 0) // still shopping: no room
	hold := func(id, email string, created time.Time) {
		t.Helper()
		h := testHold(id, email, created.Add(10*time.Minute))
		h.ShowID, h.CreatedAt, h.UpdatedAt = "s", created, created
		update(t, db, func(tx boxoffice.Tx) error { return tx.InsertHold(ctx, h) })
	}
	hold("hld_old", "b1@example.com", t0.Add(-time.Minute))  // before the admission: still shopping
	hold("hld_other", "b9@example.com", t0.Add(time.Second)) // a buyer not yet admitted
	shop(t0.Add(2*time.Second), 3, 0)
	hold("hld_b0", "B0@Example.com", t0.Add(2*time.Second)) // b0 held: one place frees
	shop(t0.Add(3*time.Second), 3, 1)                       // b3
	shop(t0.Add(4*time.Second), 5, 2)                       // a bigger bound: b4, b5
	// Past the admission's lifetime (60 s) b1..b5 no longer count.
	shop(t0.Add(64*time.Second), 2, 2) // b6, b7
	shop(t0.Add(65*time.Second), 2, 0)
	shop(t0.Add(65*time.Second), 3, 1) // b8
	if r, err := w.GetWaitRoom(ctx, "s", true); err != nil || r.Admitted != 9 || r.Waiting != 1 {
		t.Fatalf("after automatic admission the room is %+v, %v; want 9 admitted and 1 waiting", r, err)
	}
}
