package boxoffice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Role is what an API key may do.
type Role string

// Roles: admin may do everything, client may buy and read.
const (
	RoleAdmin  Role = "admin"
	RoleClient Role = "client"
)

// AdminKeyID is the key id of the configured admin key(s): they are not stored, and every one of
// them (the current and the previous ones during a rotation) is the same caller, so that an
// Idempotency-Key sent before a rotation is still the same key after it.
const AdminKeyID = "admin"

// APIKey is a stored key. Only its hash is kept; the plain key is shown once, at creation.
type APIKey struct {
	ID    string `json:"id"`
	Role  Role   `json:"role"`
	Label string `json:"label,omitempty"`
	Hash  string `json:"-"`
	// CreatedAt is when the key was made.
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the key last authenticated a request, written lazily (at most about once
	// a minute per key), so it may be that much behind; nil when never used.
	LastUsedAt *time.Time `json:"last_used_at"`
	// RevokedAt is when the key was revoked; nil while it is live. A revoked key authenticates
	// nothing, and its row stays so that its holds and orders keep a known owner.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// HashKey returns the stored form of a plain API key. Keys are long random strings, so a fast hash
// is enough: there is nothing to brute-force.
func HashKey(plain string) string {
	sum := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(sum[:])
}

// Principal is the authenticated caller of a request.
type Principal struct {
	KeyID string // AdminKeyID for the configured admin key
	Role  Role
}

// Sees says whether the caller may see and act on an object made by the key owner: the admin
// sees everything, a client key (a sales channel) only its own objects. Objects without an owner
// (made before channels existed) belong to no channel, so only the admin sees them.
func (p *Principal) Sees(owner string) bool {
	if p == nil {
		return false
	}
	return p.Role == RoleAdmin || (owner != "" && owner == p.KeyID)
}

// Channel is the owner to filter lists by: "" (everything) for the admin, else the key id.
func (p *Principal) Channel() string {
	if p.Role == RoleAdmin {
		return ""
	}
	return p.KeyID
}

// AdminPrincipal is the configured admin key's caller, also the caller of work the server does on
// its own behalf.
var AdminPrincipal = &Principal{KeyID: AdminKeyID, Role: RoleAdmin}

// APIKeyTx is what a transaction does with API keys.
type APIKeyTx interface {
	// InsertAPIKey stores a key (its hash only).
	InsertAPIKey(ctx context.Context, k *APIKey) error
	// APIKeyByHash returns the key with that hash, revoked or not.
	APIKeyByHash(ctx context.Context, hash string) (*APIKey, error)
	// ListAPIKeys returns up to limit keys with ids after after, by id, revoked ones too.
	ListAPIKeys(ctx context.Context, after string, limit int) ([]*APIKey, error)
	// RevokeAPIKey marks a key revoked at at, unless it is revoked already (the first time stays);
	// a key that does not exist is ENOTFOUND.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) error
	// TouchAPIKey sets a key's last_used_at to at if it is before at: callers write it lazily, so
	// two servers touching one key never move it back.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}
