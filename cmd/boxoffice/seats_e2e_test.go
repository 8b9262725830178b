package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// seatedShowBody is a show with a seated tier "stalls": section S, rows A and B of 4 seats, A-1
// accessible, B-4 with a restricted view.
func seatedShowBody() map[string]any {
	return map[string]any{
		"name": "Seated night", "starts_at": "2027-03-01T19:30:00Z", "hold_ttl_seconds": 600,
		"tiers": []map[string]any{{
			"id": "stalls", "name": "Stalls", "price": map[string]any{"amount": 6000, "currency": "EUR"},
			"seat_map": map[string]any{"sections": []map[string]any{{"id": "S", "rows": []map[string]any{
				{"id": "A", "seats": 4, "accessible": []string{"1"}},
				{"id": "B", "labels": []string{"1", "2", "3", "4"}, "restricted_view": []string{"4"}},
			}}}},
		}},
	}
}

type seatView struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	Accessible     bool   `json:"accessible"`
	RestrictedView bool   `json:"restricted_view"`
}

// TestSeatedSaleOverHTTP: a seat map PUT with a show, read back with its states and an ETag that
// answers 304 while nothing changes; named seats held all or none, seat_unavailable for a taken
// one, best available, a purchase whose tickets name their seats; and bad input refused with
// 400 and a stable code, changing nothing.
func TestSeatedSaleOverHTTP(t *testing.T) {
	s := startServer(t, t.TempDir())
	admin := s.client(adminKey)
	cl := s.client(s.newClientKey(t))
	show := admin.must(201, "PUT", "/v1/shows/seated", seatedShowBody()).json(t)
	tier := show["tiers"].([]any)[0].(map[string]any)
	if tier["capacity"] != 8.0 || tier["seated"] != true {
		t.Fatalf("seated tier %v", tier)
	}
	readSeats := func() (map[string]seatView, string) {
		t.Helper()
		r := cl.must(200, "GET", "/v1/shows/seated/seats", nil)
		var m struct {
			Seats []seatView `json:"seats"`
		}
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		out := map[string]seatView{}
		for _, st := range m.Seats {
			out[st.ID] = st
		}
		return out, r.Header.Get("ETag")
	}
	seats, etag := readSeats()
	if len(seats) != 8 || !seats["S-A-1"].Accessible || !seats["S-B-4"].RestrictedView || seats["S-A-2"].State != "available" || etag == "" {
		t.Fatalf("seat map %v, ETag %q", seats, etag)
	}
	if r := cl.must(304, "GET", "/v1/shows/seated/seats", nil, "If-None-Match", etag); len(r.Body) != 0 {
		t.Fatalf("304 with a body: %s", r.Body)
	}
	cl.must(404, "GET", "/v1/shows/nope/seats", nil)

	// Named seats, all or none.
	h := cl.post(201, "/v1/shows/seated/holds", "h1", map[string]any{"tier_id": "stalls", "seats": []string{"S-A-2", "S-A-3"},
		"buyer": map[string]string{"email": "ann@example.com"}}).json(t)
	if h["quantity"] != 2.0 || !slices.Equal(toStrings(h["seats"]), []string{"S-A-2", "S-A-3"}) {
		t.Fatalf("hold %v", h)
	}
	if r := cl.post(409, "/v1/shows/seated/holds", "h2", map[string]any{"tier_id": "stalls", "seats": []string{"S-A-3", "S-A-4"},
		"buyer": map[string]string{"email": "bob@example.com"}}); r.code() != "seat_unavailable" {
		t.Fatalf("taken seat: %s", r.Body)
	}
	// The map is read again within a second; its ETag changes with the held seats.
	var changed map[string]seatView
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, tag := readSeats()
		if tag != etag {
			changed = m
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the seat map's ETag did not change after a hold")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if changed["S-A-2"].State != "held" || changed["S-A-4"].State != "available" {
		t.Fatalf("seats after the holds: %v", changed)
	}

	// Best available: two side by side, the accessible and restricted seats left alone.
	best := cl.post(201, "/v1/shows/seated/holds", "h3", map[string]any{"tier_id": "stalls", "quantity": 2,
		"buyer": map[string]string{"email": "cy@example.com"}}).json(t)
	if got := toStrings(best["seats"]); !slices.Equal(got, []string{"S-B-1", "S-B-2"}) {
		t.Fatalf("best available 2 = %v, want S-B-1, S-B-2", got)
	}
	// A purchase of a named seat: its ticket names it.
	order := cl.post(201, "/v1/purchases", "p1", map[string]any{"show_id": "seated", "tier_id": "stalls", "seats": []string{"S-A-1"},
		"buyer": map[string]string{"email": "dee@example.com"}, "payment": map[string]string{"token": "tok_ok"}}).json(t)
	if tk := order["tickets"].([]any); len(tk) != 1 || tk[0].(map[string]any)["seat"] != "S-A-1" {
		t.Fatalf("order tickets %v", order["tickets"])
	}

	// Bad input: 400 with a stable code, nothing changed.
	for name, body := range map[string]map[string]any{
		"seats and another quantity": {"tier_id": "stalls", "quantity": 3, "seats": []string{"S-B-3"}, "buyer": map[string]string{"email": "e@example.com"}},
		"an unknown seat":            {"tier_id": "stalls", "seats": []string{"S-Z-9"}, "buyer": map[string]string{"email": "e@example.com"}},
		"a seat twice":               {"tier_id": "stalls", "seats": []string{"S-B-3", "S-B-3"}, "buyer": map[string]string{"email": "e@example.com"}},
	} {
		if r := cl.post(400, "/v1/shows/seated/holds", "bad-"+strings.ReplaceAll(name, " ", "-"), body); r.code() != "validation_failed" {
			t.Errorf("%s: %s", name, r.Body)
		}
	}
	bad := seatedShowBody()
	bad["tiers"].([]map[string]any)[0]["capacity"] = 9
	if r := admin.must(400, "PUT", "/v1/shows/seated", bad); r.code() != "validation_failed" {
		t.Fatalf("capacity other than the seats: %s", r.Body)
	}
	tier = cl.must(200, "GET", "/v1/shows/seated", nil).json(t)["tiers"].([]any)[0].(map[string]any)
	if tier["held"] != 4.0 || tier["sold"] != 1.0 || tier["capacity"] != 8.0 {
		t.Fatalf("tier after the sale: %v", tier)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
