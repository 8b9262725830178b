package sale

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"
	"unicode/utf8"

	"boxoffice"
)

// keyCacheTTL is how long an authenticated key is trusted without reading the store again. A
// revocation by this process drops the entry at once; one by another process sharing the store
// takes effect here within this time, which the API promises to be under a second.
const keyCacheTTL = 500 * time.Millisecond

// touchEvery is how often a key's last_used_at is written at most: the field says roughly when a
// key was last used, and writing it on every request would put a write on the hot path of reads.
const touchEvery = time.Minute

// maxLabelLen bounds an API key's label, a name for people.
const maxLabelLen = 100

// cachedKey is an authenticated key as read from the store at loaded.
type cachedKey struct {
	p        *boxoffice.Principal
	lastUsed time.Time // the key's last_used_at as read, zero when never used
	loaded   time.Time
}

// Authenticate returns the principal of a plain API key, or EUNAUTHORIZED for an unknown or
// revoked one.
func (s *Service) Authenticate(ctx context.Context, key string) (*boxoffice.Principal, error) {
	if key == "" {
		return nil, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "an API key is required")
	}
	if s.isAdminKey(key) {
		return boxoffice.AdminPrincipal, nil
	}
	hash := boxoffice.HashKey(key)
	now := s.now()
	if v, ok := s.keys.Load(hash); ok {
		if c := v.(*cachedKey); now.Sub(c.loaded) < keyCacheTTL && !now.Before(c.loaded) {
			s.touch(ctx, c, now)
			return c.p, nil
		}
	}
	var k *boxoffice.APIKey
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		k, err = tx.APIKeyByHash(ctx, hash)
		return err
	})
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND || (err == nil && k.RevokedAt != nil) {
		s.keys.Delete(hash)
		return nil, boxoffice.Errorf(boxoffice.EUNAUTHORIZED, "the API key is not known or was revoked")
	} else if err != nil {
		return nil, err
	}
	c := &cachedKey{p: &boxoffice.Principal{KeyID: k.ID, Role: k.Role}, loaded: now}
	if k.LastUsedAt != nil {
		c.lastUsed = *k.LastUsedAt
	}
	s.keys.Store(hash, c)
	s.touch(ctx, c, now)
	return c.p, nil
}

// isAdminKey says whether key is the configured admin key or one of the previous ones. Every
// candidate is compared in constant time, so the timing tells nothing about which one matched.
func (s *Service) isAdminKey(key string) bool {
	match := 0
	for _, k := range append([]string{s.cfg.AdminKey}, s.cfg.PreviousAdminKeys...) {
		if k != "" {
			match |= subtle.ConstantTimeCompare([]byte(key), []byte(k))
		}
	}
	return match == 1
}

// touch writes the key's last_used_at when it is more than touchEvery old, at most once per
// touchEvery per key from this process. A failure only delays the field, so it is logged and the
// request goes on.
func (s *Service) touch(ctx context.Context, c *cachedKey, now time.Time) {
	if now.Sub(c.lastUsed) < touchEvery {
		return // the hot path: no lock, no write
	}
	id := c.p.KeyID
	s.touchMu.Lock()
	due := now.Sub(s.touched[id]) >= touchEvery
	if due {
		s.touched[id] = now
	}
	s.touchMu.Unlock()
	if !due {
		return
	}
	if err := s.store.Update(ctx, func(tx boxoffice.Tx) error { return tx.TouchAPIKey(ctx, id, now) }); err != nil {
		s.log.Warn("record the last use of an API key", "key", id, "err", err)
	}
}

// CreateAPIKey makes a key of a role; the plain key is in the first answer only. The answer
// stored for replays leaves it out, so the secret is nowhere in the store, not even for the
// Idempotency-Key's TTL: a replay answers the same status and key id without it.
func (s *Service) CreateAPIKey(ctx context.Context, idem Idem, in APIKeyInput) (*boxoffice.Response, bool, error) {
	var v validator
	v.check(in.Role == boxoffice.RoleAdmin || in.Role == boxoffice.RoleClient, "role", `must be "admin" or "client"`)
	v.check(validLabel(in.Label), "label", "must be at most 100 characters, none of them control or bidirectional-override characters")
	if err := v.err(); err != nil {
		return nil, false, err
	}
	if res, rec, err := s.lookup(ctx, idem); res != nil || rec != nil || err != nil {
		return s.answerLookup(res, rec, err)
	}
	now := s.now()
	plain := "bo_" + boxoffice.RandomString(40)
	k := &boxoffice.APIKey{ID: boxoffice.NewID(boxoffice.PrefixAPIKey, now), Role: in.Role, Label: in.Label,
		Hash: boxoffice.HashKey(plain), CreatedAt: now}
	shown := CreatedAPIKey{ID: k.ID, Key: plain, Role: k.Role, Label: k.Label, CreatedAt: now}
	res := s.render.Resource(201, shown, "")
	shown.Key = ""
	stored := s.render.Resource(201, shown, "")
	err := s.store.Update(ctx, func(tx boxoffice.Tx) error {
		if err := tx.InsertAPIKey(ctx, k); err != nil {
			return err
		}
		return insertRecord(ctx, tx, s.newRecord(idem, stored))
	})
	return s.finish(ctx, idem, res, err)
}

// validLabel accepts "" or up to maxLabelLen characters of UTF-8 without control characters.
func validLabel(l string) bool {
	return boxoffice.PlainText(l) && utf8.RuneCountInString(l) <= maxLabelLen
}

// ListAPIKeys returns a page of the stored keys, revoked ones too, without their secrets (only
// hashes are stored, and those stay inside). The configured admin keys are not stored, so not
// listed.
func (s *Service) ListAPIKeys(ctx context.Context, after string, limit int) ([]*boxoffice.APIKey, string, error) {
	var keys []*boxoffice.APIKey
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		keys, err = tx.ListAPIKeys(ctx, after, limit+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	keys, next := page(keys, limit, func(k *boxoffice.APIKey) string { return k.ID })
	return keys, next, nil
}

// RevokeAPIKey revokes a stored key: from then on it authenticates nothing, in this process at
// once and in any other sharing the store within keyCacheTTL. Revoking a revoked key succeeds, so
// a retried DELETE is harmless; an unknown id is ENOTFOUND.
func (s *Service) RevokeAPIKey(ctx context.Context, id string) error {
	if !strings.HasPrefix(id, boxoffice.PrefixAPIKey) {
		return boxoffice.Errorf(boxoffice.ENOTFOUND, "api key %q does not exist", id)
	}
	err := s.store.Update(ctx, func(tx boxoffice.Tx) error { return tx.RevokeAPIKey(ctx, id, s.now()) })
	if err != nil {
		return err
	}
	s.keys.Range(func(hash, v any) bool {
		if v.(*cachedKey).p.KeyID == id {
			s.keys.Delete(hash)
		}
		return true
	})
	return nil
}
