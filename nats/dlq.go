package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// The dead-letter stream: a consumer that gives up on a message (past its retry schedule, or at
// once on a permanent failure) publishes a boxoffice.DeadLetter on DLQSubjectPrefix + its consumer
// name, and only then terminates the message. A dead letter stays until a replay applies it.
const (
	DLQStreamName    = "BOXOFFICE_DLQ"
	DLQSubjectPrefix = "boxoffice.dlq."
)

// ErrReplayFailed is wrapped by the error of a replay whose delivery failed again; the dead letter
// is kept. The error's text says why, for the operator.
var ErrReplayFailed = errors.New("replay failed")

// ensureDLQStream creates the dead-letter stream or updates it to this configuration. It is kept
// like the events stream (file storage, the same replicas): a dead letter is the only copy of a
// message that was given up on. The duplicate window drops a second dead letter for one event
// (see runner.deadLetter).
func ensureDLQStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStreamName,
		Description: "boxoffice dead letters: messages a consumer gave up on",
		Subjects:    []string{DLQSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  dlqDuplicateWindow,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", DLQStreamName, err)
	}
	return st, nil
}

// ListDeadLetters returns up to limit dead letters of the dead-letter stream, oldest first; limit
// <= 0 returns them all.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, limit int) ([]boxoffice.DeadLetter, error) {
	st, err := js.Stream(ctx, DLQStreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", DLQStreamName, err)
	}
	out := []boxoffice.DeadLetter{}
	for seq := uint64(1); limit <= 0 || len(out) < limit; {
		// The next message at or after seq skips the deleted (replayed) ones in one request.
		raw, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(DLQSubjectPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		out = append(out, decodeDeadLetter(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

// decodeDeadLetter turns a stream message into a DeadLetter whose ID is its sequence. A message
// that is not one (published by hand on the subject) is shown as it is rather than hidden.
func decodeDeadLetter(raw *jetstream.RawStreamMsg) boxoffice.DeadLetter {
	var dl boxoffice.DeadLetter
	if err := json.Unmarshal(raw.Data, &dl); err != nil {
		dl = boxoffice.DeadLetter{Payload: payloadJSON(raw.Data), Error: "undecodable dead letter: " + err.Error(),
			FailedAt: raw.Time}
	}
	dl.ID = strconv.FormatUint(raw.Sequence, 10)
	if dl.Consumer == "" {
		dl.Consumer = strings.TrimPrefix(raw.Subject, DLQSubjectPrefix)
	}
	return dl
}

// ListDeadLetters returns up to limit dead letters, oldest first; limit <= 0 returns them all.
func (a *Async) ListDeadLetters(ctx context.Context, limit int) ([]boxoffice.DeadLetter, error) {
	return ListDeadLetters(ctx, a.js, limit)
}

// ReplayDeadLetter applies the dead letter id once more, synchronously, through the handler of the
// consumer that gave up on it (email, or that webhook endpoint), inbox-checked like any delivery
// (an event applied meanwhile is not applied again). On success the dead letter leaves the stream;
// on failure the error (wrapping ErrReplayFailed) says why and the dead letter stays. An unknown
// id is an ENOTFOUND. Replays run one at a time.
func (a *Async) ReplayDeadLetter(ctx context.Context, id string) error {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		return deadLetterNotFound(id)
	}
	st, err := a.js.Stream(ctx, DLQStreamName)
	if err != nil {
		return fmt.Errorf("stream %s: %w", DLQStreamName, err)
	}
	a.replayMu.Lock()
	defer a.replayMu.Unlock()
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return deadLetterNotFound(id)
	}
	if err != nil {
		return fmt.Errorf("read dead letter %s: %w", id, err)
	}
	return a.replay(ctx, st, raw)
}

// ReplayAllDeadLetters replays every dead letter there was when it started, oldest first, as
// ReplayDeadLetter does, and returns how many were applied. The first failure stops it: the
// failing one and those after it stay (a receiver that is still down fails them all anyway).
func (a *Async) ReplayAllDeadLetters(ctx context.Context) (int, error) {
	st, err := a.js.Stream(ctx, DLQStreamName)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", DLQStreamName, err)
	}
	a.replayMu.Lock()
	defer a.replayMu.Unlock()
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", DLQStreamName, err)
	}
	last := info.State.LastSeq
	n := 0
	for seq := uint64(1); seq <= last; {
		raw, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(DLQSubjectPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("read dead letters: %w", err)
		}
		if raw.Sequence > last {
			break // dead-lettered after the start: for the next replay
		}
		if err := a.replay(ctx, st, raw); err != nil {
			return n, err
		}
		n++
		seq = raw.Sequence + 1
	}
	return n, nil
}

// replay applies one dead letter and deletes it on success. The caller holds replayMu.
func (a *Async) replay(ctx context.Context, st jetstream.Stream, raw *jetstream.RawStreamMsg) error {
	dl := decodeDeadLetter(raw)
	var m Message
	if err := json.Unmarshal(dl.Payload, &m); err != nil || !safeID.MatchString(m.ID) {
		return replayFailed("dead letter %s holds no event that can be applied", dl.ID)
	}
	var err error
	switch {
	case dl.Consumer == EmailConsumer && a.email != nil:
		_, err = a.email.runner().apply(ctx, &m)
	case strings.HasPrefix(dl.Consumer, webhookConsumerPrefix) && a.webhooks != nil:
		err = a.webhooks.replay(ctx, dl.Consumer, &m)
	default:
		return replayFailed("dead letter %s is for consumer %q, which this server does not run", dl.ID, dl.Consumer)
	}
	if err != nil {
		return replayFailed("dead letter %s (event %s for %s): %v", dl.ID, m.ID, dl.Consumer, err)
	}
	if err := st.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		// Applied and recorded in the inbox: a later replay finds it there and only deletes it.
		return fmt.Errorf("dead letter %s was applied, but deleting it failed: %w", dl.ID, err)
	}
	return nil
}

// replayFailed is the error of a replay that did not go through: ErrReplayFailed for callers in
// this package, and EREPLAYFAILED so the API shows an operator why instead of an internal error.
func replayFailed(format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrReplayFailed, boxoffice.Errorf(boxoffice.EREPLAYFAILED, format, args...))
}

func deadLetterNotFound(id string) error {
	return boxoffice.Errorf(boxoffice.ENOTFOUND, "dead letter %q not found", id)
}
