package http

import (
	"testing"
	"time"

	"boxoffice"
	"boxoffice/sale"
)

var purchaseBody = []byte(`{"show_id":"opening-night","tier_id":"ga","quantity":2,"buyer":{"email":"ann@example.com"},"payment":{"token":"tok_ok"}}`)

// BenchmarkDecodePurchase is the strict decode of every purchase request.
func BenchmarkDecodePurchase(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var in sale.PurchaseInput
		if err := decodeJSON(purchaseBody, &in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFingerprint is the hash of the decoded input every POST pays for its idempotency check.
func BenchmarkFingerprint(b *testing.B) {
	var in sale.PurchaseInput
	if err := decodeJSON(purchaseBody, &in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sale.NewIdem("key_c", "POST /v1/purchases", "/v1/purchases", "k", in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderOrder is the encode of the answer that is stored and sent.
func BenchmarkRenderOrder(b *testing.B) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	o := &boxoffice.Order{ID: "ord_06h1nsm8xwqzxmzfrvec4xgtpw", Status: boxoffice.OrderConfirmed, ShowID: "opening-night", TierID: "ga",
		HoldID: "hld_06h1nsm8xzpesj7x9qd78254rm", Quantity: 2, Amount: boxoffice.Money{Amount: 9000, Currency: "EUR"},
		Buyer: boxoffice.Buyer{Email: "ann@example.com"}, Tickets: []boxoffice.Ticket{{Code: "ZWWG-3DPX-6RE6"}, {Code: "MCZ7-CAGT-2VNX"}},
		CreatedAt: now, UpdatedAt: now}
	var r Renderer
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Resource(201, o, ""); res.Status != 201 {
			b.Fatal(res.Status)
		}
	}
}
