package sale

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"boxoffice"
)

// NewIdem is the idempotency context of a request, the same whichever transport carries it (REST,
// gRPC, gRPC-Web, Connect). The scope is the caller's key id and the operation: the REST method
// and route template ("POST /v1/shows/{show_id}/holds"), to which each RPC maps. The fingerprint
// is the SHA-256 of the operation, the request's path (which holds its ids) and the decoded input
// as JSON: what the request asks for, not how its bytes looked, so a key sent over Connect and
// then over REST has one effect, and two bodies that decode alike are the same request.
func NewIdem(keyID, operation, path, key string, in any) (Idem, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return Idem{}, boxoffice.Errorf(boxoffice.EINTERNAL, "fingerprint the request: %v", err)
	}
	h := sha256.New()
	h.Write([]byte(operation))
	h.Write([]byte{'\n'})
	h.Write([]byte(path))
	h.Write([]byte{'\n'})
	h.Write(body)
	return Idem{Scope: keyID + " " + operation, Key: key, Fingerprint: hex.EncodeToString(h.Sum(nil))}, nil
}

// errKeyTaken says a record for the key appeared between the lookup and the effect's transaction
// (a concurrent request with the same key won); the effect was rolled back and the record decides.
// On PostgreSQL the winner may still be in flight, its record not yet visible: claiming a key
// never waits for another transaction (postgres.LockOrder), so the request is then in progress.
var errKeyTaken = errors.New("idempotency key taken concurrently")

// storable lists the domain answers that are final and so stored for replay. Everything else
// (5xx, overload, a transient payment failure, a request in progress) is not, so a retry may work.
var storable = map[string]bool{
	boxoffice.ESOLDOUT: true, boxoffice.EBUYERLIMIT: true, boxoffice.ENOTFOUND: true,
	boxoffice.EHOLDCONFIRMED: true, boxoffice.EHOLDEXPIRED: true, boxoffice.EHOLDRELEASED: true,
	boxoffice.EPAYMENTDECLINED: true, boxoffice.ENOTCANCELLABLE: true, boxoffice.EVALIDATION: true,
	boxoffice.ECANCELWINDOW: true, boxoffice.ESEATUNAVAILABLE: true,
}

// lookup reads the record of idem's key. A finished record gives its response to replay; a
// different fingerprint is EIDEMREUSED (checked first); a record whose request is still working is
// EIDEMINPROGRESS; a record whose request died before finishing is returned to be resumed. All nil
// means the key is new.
func (s *Service) lookup(ctx context.Context, idem Idem) (*boxoffice.Response, *boxoffice.IdemRecord, error) {
	return s.lookupThen(ctx, idem, nil)
}

// lookupThen is lookup that, when the key is new, also runs then in the same read transaction: a
// request's reads share one snapshot and one transaction instead of taking one each, which on the
// hot path of a stampede is one reader transaction less per request.
func (s *Service) lookupThen(ctx context.Context, idem Idem, then func(tx boxoffice.Tx) error) (*boxoffice.Response, *boxoffice.IdemRecord, error) {
	var rec *boxoffice.IdemRecord
	err := s.store.View(ctx, func(tx boxoffice.Tx) (err error) {
		rec, err = tx.GetIdemRecord(ctx, idem.Scope, idem.Key)
		if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND && then != nil {
			if err := then(tx); err != nil {
				return err
			}
		}
		return err
	})
	if boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND && rec == nil {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	res, rec, err := s.judge(idem, rec)
	s.countIdem(res, err)
	return res, rec, err
}

// judge is lookup's verdict on a record that exists.
func (s *Service) judge(idem Idem, rec *boxoffice.IdemRecord) (*boxoffice.Response, *boxoffice.IdemRecord, error) {
	if rec.Fingerprint != idem.Fingerprint {
		return nil, nil, boxoffice.Errorf(boxoffice.EIDEMREUSED, "this Idempotency-Key was used with a different request")
	}
	if rec.Response != nil {
		return rec.Response, nil, nil
	}
	if now := s.now(); rec.LockedUntil.After(now) {
		e := boxoffice.Errorf(boxoffice.EIDEMINPROGRESS, "a request with this Idempotency-Key is still in progress")
		// The request in progress answers within the sync budget (the lease's margin beyond it
		// only covers a process that died), so that is when a retry finds its answer.
		e.RetryAfter = max(rec.LockedUntil.Add(-leaseMargin).Sub(now), time.Second)
		return nil, nil, e
	}
	return nil, rec, nil
}

// answerLookup answers a lookup for operations that finish in one transaction and so never leave a
// record to resume.
func (s *Service) answerLookup(res *boxoffice.Response, rec *boxoffice.IdemRecord, err error) (*boxoffice.Response, bool, error) {
	switch {
	case err != nil:
		return nil, false, err
	case res != nil:
		return res, true, nil
	default:
		return nil, false, boxoffice.Errorf(boxoffice.EINTERNAL, "idempotency record %s has no response", rec.ID)
	}
}

// newRecord returns the record of idem, finished with res when res is set.
func (s *Service) newRecord(idem Idem, res *boxoffice.Response) *boxoffice.IdemRecord {
	now := s.now()
	return &boxoffice.IdemRecord{
		ID: boxoffice.NewID(boxoffice.PrefixRecord, now), Scope: idem.Scope, Key: idem.Key,
		Fingerprint: idem.Fingerprint, Response: res, CreatedAt: now, ExpiresAt: now.Add(s.cfg.IdempotencyTTL),
	}
}

// insertRecord writes rec in tx and turns a clash on its key into errKeyTaken.
func insertRecord(ctx context.Context, tx boxoffice.Tx, rec *boxoffice.IdemRecord) error {
	err := tx.InsertIdemRecord(ctx, rec)
	if boxoffice.ErrorCode(err) == boxoffice.ECONFLICT {
		return errKeyTaken
	}
	return err
}

// finish answers a request whose effect transaction returned err: res on success; the winner's
// record when a concurrent request with the same key won; the stored problem for a final domain
// answer; err otherwise.
func (s *Service) finish(ctx context.Context, idem Idem, res *boxoffice.Response, err error) (*boxoffice.Response, bool, error) {
	switch {
	case err == nil:
		return res, false, nil
	case errors.Is(err, errKeyTaken):
		r, rec, err := s.lookup(ctx, idem)
		if r == nil && rec == nil && err == nil {
			// Claimed by a transaction still in flight (or, rarely, swept meanwhile): the
			// request that claimed it answers soon, and a retry then replays its answer.
			e := boxoffice.Errorf(boxoffice.EIDEMINPROGRESS, "a request with this Idempotency-Key is still in progress")
			e.RetryAfter = time.Second
			s.countIdem(nil, e)
			return nil, false, e
		}
		return s.answerLookup(r, rec, err)
	case storable[boxoffice.ErrorCode(err)]:
		return s.storeFailure(ctx, idem, err)
	default:
		return nil, false, err
	}
}

// storeFailure stores a final domain answer under idem's key, in a transaction shared only with
// other such records (storeRecord): the effect's transaction rolled back, so nothing else changed.
func (s *Service) storeFailure(ctx context.Context, idem Idem, cause error) (*boxoffice.Response, bool, error) {
	res := s.render.Problem(cause)
	err := s.storeRecord(s.newRecord(idem, res))
	if err != nil {
		return s.finish(ctx, idem, nil, err)
	}
	return res, false, nil
}

// SweepIdempotency deletes records past their TTL and returns how many.
func (s *Service) SweepIdempotency(ctx context.Context) (int, error) {
	return sweep(func(limit int) (n int, err error) {
		err = s.store.Update(ctx, func(tx boxoffice.Tx) (err error) {
			n, err = tx.SweepIdemRecords(ctx, s.now(), limit)
			return err
		})
		return n, err
	})
}

// SweepInbox deletes consumers' records of applied events older than the inbox TTL and returns
// how many.
func (s *Service) SweepInbox(ctx context.Context) (int, error) {
	return sweep(func(limit int) (n int, err error) {
		err = s.store.Update(ctx, func(tx boxoffice.Tx) (err error) {
			n, err = tx.SweepInbox(ctx, s.now().Add(-s.cfg.InboxTTL), limit)
			return err
		})
		return n, err
	})
}

// sweep calls one until it deletes fewer than a batch, in batches so that no transaction holds
// the writer for long, and returns the total.
func sweep(one func(limit int) (int, error)) (int, error) {
	const batch = 1000
	total := 0
	for {
		n, err := one(batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

// RunOnce runs op, an operation whose effect lives outside the store and is idempotent by itself
// (a dead-letter replay is checked against its consumer's inbox), under an Idempotency-Key: a
// retry gets the first completed answer again. The answer is stored after the effect, in a
// transaction of its own; a crash in between leaves the key free, and running op again is safe.
func (s *Service) RunOnce(ctx context.Context, idem Idem, status int, op func(ctx context.Context) (any, error)) (*boxoffice.Response, bool, error) {
	if res, rec, err := s.lookup(ctx, idem); res != nil || rec != nil || err != nil {
		return s.answerLookup(res, rec, err)
	}
	v, err := op(ctx)
	if err != nil {
		return s.finish(ctx, idem, nil, err)
	}
	return s.storeResource(ctx, idem, s.render.Resource(status, v, ""))
}
