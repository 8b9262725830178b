package sale_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/sale"
	"boxoffice/sqlite"
)

// channel makes a client key through the service and authenticates it, as a transport would.
func (e *env) channel(label string) (*boxoffice.Principal, string) {
	e.t.Helper()
	res, _, err := e.svc.CreateAPIKey(context.Background(), idem("key", label, label),
		sale.APIKeyInput{Role: boxoffice.RoleClient, Label: label})
	if err != nil || res.Status != 201 {
		e.t.Fatalf("create key: %v %v", res, err)
	}
	var k sale.CreatedAPIKey
	if err := json.Unmarshal(res.Body, &k); err != nil {
		e.t.Fatal(err)
	}
	p, err := e.svc.Authenticate(context.Background(), k.Key)
	if err != nil {
		e.t.Fatal(err)
	}
	return p, k.Key
}

// as is the idempotency context of a request by p: the scope carries the key id, as every
// transport's does.
func as(p *boxoffice.Principal, op, key string, body any) sale.Idem {
	i := idem(op, key, body)
	i.Scope = p.KeyID + " " + i.Scope
	return i
}

// TestSalesChannels: a client key sees and acts on only the holds and orders it made; another
// channel's are not found and stay as they are; the admin sees and acts on everything, also on
// objects from before channels, which belong to nobody.
func TestSalesChannels(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.show("gala", 100, nil)
	shop, _ := e.channel("shop")
	partner, _ := e.channel("partner")
	if shop.KeyID == partner.KeyID || shop.Role != boxoffice.RoleClient {
		t.Fatalf("channels %+v %+v", shop, partner)
	}

	holdIn := sale.HoldInput{ShowID: "gala", TierID: "ga", Quantity: 2, Buyer: sale.BuyerInput{Email: "ann@example.com"}}
	res, _, err := e.svc.CreateHold(ctx, shop, as(shop, "hold", "h1", holdIn), holdIn)
	if err != nil || res.Status != 201 {
		t.Fatalf("shop hold: %v %v", res, err)
	}
	shopHold := decode[boxoffice.Hold](t, res)
	buyIn := sale.PurchaseInput{ShowID: "gala", TierID: "ga", Quantity: 1, Buyer: sale.BuyerInput{Email: "bob@example.com"},
		Payment: sale.PaymentInput{Token: "tok_ok"}}
	res, _, err = e.svc.Purchase(ctx, shop, as(shop, "purchase", "p1", buyIn), buyIn)
	if err != nil || res.Status != 201 {
		t.Fatalf("shop purchase: %v %v", res, err)
	}
	shopOrder := decode[boxoffice.Order](t, res)
	res, _, err = e.svc.Purchase(ctx, partner, as(partner, "purchase", "p1", buyIn), buyIn)
	if err != nil || res.Status != 201 {
		t.Fatalf("partner purchase: %v %v", res, err)
	}
	partnerOrder := decode[boxoffice.Order](t, res)
	charges := len(e.sim.Charges())

	// The partner channel: every read and every action on the shop's objects is not found, in
	// the very words used for an id that names nothing.
	_, err = e.svc.GetHold(ctx, partner, shopHold.ID)
	_, missing := e.svc.GetHold(ctx, partner, "hld_nothing")
	if boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND ||
		strings.ReplaceAll(err.Error(), shopHold.ID, "<id>") != strings.ReplaceAll(missing.Error(), "hld_nothing", "<id>") {
		t.Errorf("partner gets the shop's hold: %v; a missing one: %v", err, missing)
	}
	_, err = e.svc.GetOrder(ctx, partner, shopOrder.ID)
	_, missing = e.svc.GetOrder(ctx, partner, "ord_nothing")
	if boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND ||
		strings.ReplaceAll(err.Error(), shopOrder.ID, "<id>") != strings.ReplaceAll(missing.Error(), "ord_nothing", "<id>") {
		t.Errorf("partner gets the shop's order: %v; a missing one: %v", err, missing)
	}
	res, _, err = e.svc.ConfirmHold(ctx, partner, as(partner, "confirm", "c0", nil), "hld_nothing", sale.ConfirmInput{Payment: sale.PaymentInput{Token: "tok_ok"}})
	if err != nil || res.Status != 404 {
		t.Fatalf("confirm a missing hold: %v %v", res, err)
	}
	missingConfirm := strings.ReplaceAll(string(res.Body), "hld_nothing", "<id>")
	if err := e.svc.ReleaseHold(ctx, partner, shopHold.ID); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
		t.Errorf("partner releases the shop's hold: %v", err)
	}
	confIn := sale.ConfirmInput{Payment: sale.PaymentInput{Token: "tok_ok"}}
	res, _, err = e.svc.ConfirmHold(ctx, partner, as(partner, "confirm", "c1", confIn), shopHold.ID, confIn)
	if err != nil || res.Status != 404 || strings.ReplaceAll(string(res.Body), shopHold.ID, "<id>") != missingConfirm {
		t.Errorf("partner confirms the shop's hold: %v %v; want the 404 of a missing hold, %s", res, err, missingConfirm)
	}
	if _, err := e.svc.GetOrder(ctx, partner, shopOrder.ID); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
		t.Errorf("partner gets the shop's order: %v", err)
	}
	res, _, err = e.svc.CancelOrder(ctx, partner, as(partner, "cancel", "x1", nil), shopOrder.ID)
	if err != nil || res.Status != 404 {
		t.Errorf("partner cancels the shop's order: %v %v; want 404", res, err)
	}
	// ... and changed nothing: the hold is active, no order was made for it, none was cancelled
	// or refunded, nothing was charged.
	if h, err := e.svc.GetHold(ctx, shop, shopHold.ID); err != nil || h.Status != boxoffice.HoldActive {
		t.Errorf("the shop's hold after the partner's tries: %+v %v", h, err)
	}
	if o, err := e.svc.GetOrder(ctx, shop, shopOrder.ID); err != nil || o.Status != boxoffice.OrderConfirmed {
		t.Errorf("the shop's order after the partner's tries: %+v %v", o, err)
	}
	if n := len(e.sim.Charges()); n != charges {
		t.Errorf("charges: %d, was %d", n, charges)
	}
	for _, c := range e.sim.Charges() {
		if c.Refunded {
			t.Errorf("charge %s was refunded", c.ID)
		}
	}
	if tier := e.tier("gala"); tier.Held != 2 || tier.Sold != 2 {
		t.Errorf("tier held %d sold %d; want 2 and 2", tier.Held, tier.Sold)
	}

	// Lists hold only the channel's own orders; the admin's has every one.
	listIDs := func(p *boxoffice.Principal, show string) []string {
		t.Helper()
		orders, _, err := e.svc.ListOrders(ctx, p, show, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range orders {
			ids = append(ids, o.ID)
		}
		return ids
	}
	if got := listIDs(partner, ""); len(got) != 1 || got[0] != partnerOrder.ID {
		t.Errorf("partner's list = %v; want only %s", got, partnerOrder.ID)
	}
	if got := listIDs(shop, "gala"); len(got) != 1 || got[0] != shopOrder.ID {
		t.Errorf("shop's list of gala = %v; want only %s", got, shopOrder.ID)
	}
	if got := listIDs(boxoffice.AdminPrincipal, ""); len(got) != 2 {
		t.Errorf("admin's list = %v; want both orders", got)
	}

	// The admin acts on a channel's objects; the order of a hold the admin confirms stays the
	// channel's.
	res, _, err = e.svc.ConfirmHold(ctx, boxoffice.AdminPrincipal, as(boxoffice.AdminPrincipal, "confirm", "c1", confIn), shopHold.ID, confIn)
	if err != nil || res.Status != 201 {
		t.Fatalf("admin confirms the shop's hold: %v %v", res, err)
	}
	confirmed := decode[boxoffice.Order](t, res)
	if _, err := e.svc.GetOrder(ctx, shop, confirmed.ID); err != nil {
		t.Errorf("the shop does not see the order the admin made of its hold: %v", err)
	}
	if _, err := e.svc.GetOrder(ctx, partner, confirmed.ID); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
		t.Errorf("the partner sees it: %v", err)
	}
	res, _, err = e.svc.CancelOrder(ctx, boxoffice.AdminPrincipal, as(boxoffice.AdminPrincipal, "cancel", "x1", nil), partnerOrder.ID)
	if err != nil || res.Status != 200 {
		t.Errorf("admin cancels the partner's order: %v %v", res, err)
	}

	// A hold from before channels has no owner: only the admin sees it.
	legacy := &boxoffice.Hold{ID: "hld_legacy", ShowID: "gala", TierID: "ga", Quantity: 1, Buyer: boxoffice.Buyer{Email: "old@example.com"},
		Status: boxoffice.HoldReleased, ExpiresAt: e.clock.Now(), CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
	if err := e.store.Update(ctx, func(tx boxoffice.Tx) error { return tx.InsertHold(ctx, legacy) }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.GetHold(ctx, shop, legacy.ID); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
		t.Errorf("a channel sees an ownerless hold: %v", err)
	}
	if _, err := e.svc.GetHold(ctx, boxoffice.AdminPrincipal, legacy.ID); err != nil {
		t.Errorf("the admin does not see an ownerless hold: %v", err)
	}
	e.verify()
}

// TestAPIKeySecretShownOnce: the plain key is in the first answer only; a replay answers the same
// status and id without it, and no idempotency record holds it.
func TestAPIKeySecretShownOnce(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	in := sale.APIKeyInput{Role: boxoffice.RoleClient, Label: "box office window"}
	i := idem("key", "k1", in)
	first, replayed, err := e.svc.CreateAPIKey(ctx, i, in)
	if err != nil || replayed || first.Status != 201 {
		t.Fatalf("create: %v %v %v", first, replayed, err)
	}
	k := decode[sale.CreatedAPIKey](t, first)
	if !strings.HasPrefix(k.Key, "bo_") || !strings.HasPrefix(k.ID, boxoffice.PrefixAPIKey) || k.Label != in.Label {
		t.Fatalf("created %s", first.Body)
	}
	again, replayed, err := e.svc.CreateAPIKey(ctx, i, in)
	if err != nil || !replayed || again.Status != 201 {
		t.Fatalf("replay: %v %v %v", again, replayed, err)
	}
	r := decode[sale.CreatedAPIKey](t, again)
	if r.ID != k.ID || r.Key != "" || strings.Contains(string(again.Body), `"key"`) {
		t.Errorf("replay answered %s; want id %s without the key", again.Body, k.ID)
	}
	assertNoRecordHolds(t, e, k.Key)
	if _, _, err := e.svc.CreateAPIKey(ctx, idem("key", "k2", nil), sale.APIKeyInput{Role: boxoffice.RoleClient, Label: strings.Repeat("x", 101)}); boxoffice.ErrorCode(err) != boxoffice.EVALIDATION {
		t.Errorf("a 101-character label: %v; want validation_failed", err)
	}
}

// TestAPIKeyLifeCycle: keys list without secrets; a revoked key is refused at once by the server
// that revoked it and within a second by another server sharing the store, however recently that
// one authenticated it; revoking again is fine, an unknown key is not found; last_used_at moves
// at most once a minute.
func TestAPIKeyLifeCycle(t *testing.T) {
	e := newEnv(t, func(c *sale.Config) { c.PreviousAdminKeys = []string{"old-admin"} })
	ctx := context.Background()
	shop, shopKey := e.channel("shop")
	_, partnerKey := e.channel("partner")

	// A second server on the same store file, with the same clock.
	other, err := sqlite.Open(ctx, e.dir+"/boxoffice.db")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cfg := e.cfg
	cfg.Store, cfg.Inventory = other, e.inv
	svc2 := sale.New(cfg)
	defer svc2.Close()

	keys, next, err := e.svc.ListAPIKeys(ctx, "", 1)
	if err != nil || len(keys) != 1 || next == "" {
		t.Fatalf("first page: %v %q %v", keys, next, err)
	}
	rest, next2, err := e.svc.ListAPIKeys(ctx, next, 10)
	if err != nil || len(rest) != 1 || next2 != "" || rest[0].ID == keys[0].ID {
		t.Fatalf("second page: %v %q %v", rest, next2, err)
	}
	body, _ := json.Marshal(append(keys, rest...))
	if strings.Contains(string(body), shopKey) || strings.Contains(string(body), boxoffice.HashKey(shopKey)) || strings.Contains(string(body), "hash") {
		t.Errorf("the list shows a secret: %s", body)
	}
	if keys[0].LastUsedAt == nil || !keys[0].LastUsedAt.Equal(e.clock.Now()) {
		t.Errorf("last_used_at = %v; want %v", keys[0].LastUsedAt, e.clock.Now())
	}

	// The other server authenticates the shop key, so it has it cached; then this one revokes it.
	if _, err := svc2.Authenticate(ctx, shopKey); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeAPIKey(ctx, shop.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, shopKey); boxoffice.ErrorCode(err) != boxoffice.EUNAUTHORIZED {
		t.Errorf("the revoking server still takes the key: %v", err)
	}
	e.clock.Advance(time.Second)
	if _, err := svc2.Authenticate(ctx, shopKey); boxoffice.ErrorCode(err) != boxoffice.EUNAUTHORIZED {
		t.Errorf("another server takes the key a second after its revocation: %v", err)
	}
	if _, err := svc2.Authenticate(ctx, partnerKey); err != nil {
		t.Errorf("the other key was refused: %v", err)
	}
	if err := e.svc.RevokeAPIKey(ctx, shop.KeyID); err != nil {
		t.Errorf("revoke again: %v; want nil", err)
	}
	for _, id := range []string{"key_nope", "admin", ""} {
		if err := e.svc.RevokeAPIKey(ctx, id); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
			t.Errorf("revoke %q: %v; want not_found", id, err)
		}
	}
	listed, _, _ := e.svc.ListAPIKeys(ctx, "", 10)
	for _, k := range listed {
		if (k.ID == shop.KeyID) != (k.RevokedAt != nil) {
			t.Errorf("key %s revoked_at %v", k.ID, k.RevokedAt)
		}
	}

	// last_used_at: written on first use, not again within a minute, then again.
	lastUsed := func() time.Time {
		t.Helper()
		keys, _, err := e.svc.ListAPIKeys(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.ID != shop.KeyID && k.LastUsedAt != nil {
				return *k.LastUsedAt
			}
		}
		t.Fatal("the partner key was never used")
		return time.Time{}
	}
	first := lastUsed()
	e.clock.Advance(30 * time.Second)
	if _, err := e.svc.Authenticate(ctx, partnerKey); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(first) {
		t.Errorf("last_used_at moved within a minute: %v, was %v", got, first)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.svc.Authenticate(ctx, partnerKey); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(e.clock.Now()) {
		t.Errorf("last_used_at after a minute = %v; want %v", got, e.clock.Now())
	}

	// Admin keys: the current and the previous one are the admin; nothing else is.
	for key, ok := range map[string]bool{"adm": true, "old-admin": true, "ad": false, "old-admin2": false} {
		p, err := e.svc.Authenticate(ctx, key)
		if ok != (err == nil && p.Role == boxoffice.RoleAdmin && p.KeyID == boxoffice.AdminKeyID) {
			t.Errorf("Authenticate(%q) = %+v, %v; admin %v", key, p, err, ok)
		}
	}
}
