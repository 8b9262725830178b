package boxoffice

import "context"

// ChargeRequest asks a payment provider to take money. Key makes the charge idempotent at the
// provider: the same key never charges twice.
type ChargeRequest struct {
	Key         string
	Token       string
	Amount      Money
	Description string
}

// Charge is a provider's charge.
type Charge struct {
	ID     string
	Amount Money
}

// RefundRequest asks a provider to give a charge back; Key makes it idempotent.
type RefundRequest struct {
	Key      string
	ChargeID string
	Amount   Money
}

// Refund is a provider's refund.
type Refund struct {
	ID       string
	ChargeID string
}

// Payments is the payment provider. Charge returns an *Error with EPAYMENTDECLINED for a decline
// (final) and with EPAYMENTUNAVAILABLE for a transient failure (retry with the same key); any other
// error, a context deadline included, is also worth a retry with the same key.
type Payments interface {
	Charge(ctx context.Context, req ChargeRequest) (*Charge, error)
	Refund(ctx context.Context, req RefundRequest) (*Refund, error)
}
