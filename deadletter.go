package boxoffice

import (
	"encoding/json"
	"time"
)

// DeadLetter is a message that a consumer failed to apply past its retry limit, kept with what is
// needed to understand and replay it.
type DeadLetter struct {
	// ID names the dead letter for a replay: its sequence number in the dead-letter stream.
	ID string `json:"id"`
	// Consumer is who failed: "email", or the webhook endpoint's consumer.
	Consumer  string `json:"consumer"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// Payload is the message as it was published.
	Payload json.RawMessage `json:"payload"`
	// Error is the last attempt's failure.
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	FailedAt time.Time `json:"failed_at"`
}
