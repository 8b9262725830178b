package boxoffice

import (
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

// APIKey is a stored key. Only its hash is kept; the plain key is shown once, at creation.
type APIKey struct {
	ID        string    `json:"id"`
	Role      Role      `json:"role"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// HashKey returns the stored form of a plain API key. Keys are long random strings, so a fast hash
// is enough: there is nothing to brute-force.
func HashKey(plain string) string {
	sum := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(sum[:])
}

// Principal is the authenticated caller of a request.
type Principal struct {
	KeyID string // "admin" for the configured admin key
	Role  Role
}
