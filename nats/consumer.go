package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"boxoffice"
)

// Retry schedules: the pause before each retry of a message that failed, the first entry after
// the first attempt. A message that fails once more after the last pause is dead-lettered, so a
// schedule of n pauses makes n+1 attempts.
var (
	// DefaultEmailBackoff is the email retry schedule. It spans about 16 hours: an email is worth little after a day.
	DefaultEmailBackoff = []time.Duration{
		time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
		30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour,
	}
	// DefaultWebhookBackoff is the webhook retry schedule. It spans about 24 hours, so that a partner's outage of a day loses
	// nothing (Standard Webhooks and Stripe retry for a similar time).
	DefaultWebhookBackoff = []time.Duration{
		5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour,
	}
)

// DefaultAckWait is the email and webhook consumers' AckWait: how long JetStream waits without
// an ack or a progress report before it hands a message to another subscriber. Several servers
// pull from one durable consumer, so this is how long the work of a server that died mid-message
// stalls: seconds, not the 30 s JetStream defaults to. It stays short for slow work too, because
// the runner reports progress every AckWait/3 while it applies a message (see runner.hold): a
// server that is alive keeps its message however long the apply takes, and only one that stopped
// reporting (dead, paused, cut off from NATS) loses it.
const DefaultAckWait = 5 * time.Second

// maxRetryAfter caps a Retry-After that a remote side asks for, so that a receiver cannot park a
// consumer (and every event behind the message) for days.
const maxRetryAfter = time.Hour

// RetryAfterError is a failure whose remote side said when to try again (an HTTP Retry-After). The
// consumer waits at least After (capped at an hour) before the next attempt, and longer when its
// own schedule says so; the attempt still counts against the schedule.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

// Error implements error.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

// Unwrap returns the underlying failure.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// PermanentError is a failure that no retry can cure (a refused address, an invalid secret, a
// message the handler cannot use): the consumer dead-letters the message at once rather than
// block the events behind it for the whole retry schedule.
type PermanentError struct {
	Err error
}

// Error implements error.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying failure.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent (see PermanentError); nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// consumerErrors keeps, per durable consumer, the last delivery failure this server's runners
// saw, for Async.Consumers. It travels in the context of the runs, as the deliveries counter
// does, rather than in a runner: a webhook endpoint's runner is rebuilt each time its worker
// restarts, and the last error must outlive that.
type consumerErrors struct {
	mu sync.Mutex
	m  map[string]consumerError
}

// consumerError is a consumer's last failure; failing says no delivery succeeded since, so that
// an endpoint that recovered is not shown as failing while its last error stays visible.
type consumerError struct {
	msg     string
	at      time.Time
	failing bool
}

type consumerErrorsKey struct{}

func withConsumerErrors(ctx context.Context, ce *consumerErrors) context.Context {
	return context.WithValue(ctx, consumerErrorsKey{}, ce)
}

// consumerErrorsOf returns ctx's consumerErrors; nil (which records nothing) for a run without
// one (a test's, a dead letter's replay).
func consumerErrorsOf(ctx context.Context) *consumerErrors {
	ce, _ := ctx.Value(consumerErrorsKey{}).(*consumerErrors)
	return ce
}

func (ce *consumerErrors) failed(name string, err error) {
	if ce == nil {
		return
	}
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if ce.m == nil {
		ce.m = make(map[string]consumerError)
	}
	ce.m[name] = consumerError{msg: err.Error(), at: time.Now().UTC(), failing: true}
}

func (ce *consumerErrors) succeeded(name string) {
	if ce == nil {
		return
	}
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if e, ok := ce.m[name]; ok && e.failing {
		e.failing = false
		ce.m[name] = e
	}
}

// stopError, returned by a handler, ends the consumer's run after the message is handed back to
// JetStream (Nak) unharmed: the webhook endpoint that answered 410 Gone was disabled, and a later
// enabling resumes from that message.
type stopError struct {
	err error
}

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// runner is the one implementation of a durable consumer's loop, shared by the email and the
// webhook consumers: fetch one message (a webhook endpoint's consumer has MaxAckPending 1, so
// its events are applied in stream order; the email consumer keeps order per order instead, see
// Email), skip it when the inbox has its event id, else apply it with
// handle, which records the inbox row in the transaction of its effect's record; ack on success;
// on failure NakWithDelay along backoff (jitter added, Retry-After honoured), and past the schedule
// or on a PermanentError publish a dead letter to the DLQ stream and, once that publish is acked,
// Term the message. A message is therefore always in exactly one of three places: pending in the
// consumer, applied (inbox row), or in the dead-letter stream.
type runner struct {
	store boxoffice.Store
	js    jetstream.JetStream
	// name is the durable consumer's name, the inbox's consumer key and the dead letters'
	// Consumer, all one: a replay finds its handler by it.
	name    string
	backoff []time.Duration
	handle  func(ctx context.Context, m *Message) error
	// batch, when set, applies several checked messages at once and records each one applied in
	// the inbox, all in one transaction; it returns one error per message, nil for one applied
	// and recorded. With it the consumer runs in batches (see run). batchSize bounds a batch;
	// 0 means DefaultConsumerBatch.
	batch     func(ctx context.Context, ms []*Message) []error
	batchSize int
	log       *slog.Logger
	// fetchWait bounds one Fetch, and so how long a stop waits; 0 means 1 s.
	fetchWait time.Duration
	// beforeAck, in tests, runs after a successful apply and before the ack; its error ends the
	// run there, as a crash would.
	beforeAck func(m *Message) error
	// onSkip counts a message skipped because the inbox had it.
	onSkip func()
	// ackWait is the consumer's AckWait: while a message is being applied the runner reports
	// progress every third of it, so that JetStream hands the message to another subscriber
	// only when this one stops reporting. 0 reports nothing.
	ackWait time.Duration
}

// loop runs the consumer that ensure creates or updates until ctx ends (nil) or a handler stops
// it. It creates the consumer again when it disappears under it (deleted by an operator, or lost
// with a cluster's state).
func (r *runner) loop(ctx context.Context, ensure func(ctx context.Context) (jetstream.Consumer, error)) error {
	return r.loopN(ctx, 1, ensure)
}

// loopN is loop with n runs of the consumer side by side, each fetching and applying its own
// messages: for a consumer whose messages need not be applied one at a time (the email consumer;
// see Email).
func (r *runner) loopN(ctx context.Context, n int, ensure func(ctx context.Context) (jetstream.Consumer, error)) error {
	for ctx.Err() == nil {
		cons, err := ensure(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("consumer: create", "consumer", r.name, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		err = r.runN(ctx, n, cons)
		if !errors.Is(err, errConsumerGone) {
			return err
		}
		r.log.Warn("consumer: it disappeared; creating it again", "consumer", r.name)
		sleep(ctx, time.Second)
	}
	return nil
}

// runN runs n runs of cons side by side. When one ends for a reason (the consumer is gone, a
// test hook's error, a handler's stop), the others are stopped, and the reason is returned, a
// stop or a hook's error before errConsumerGone.
func (r *runner) runN(ctx context.Context, n int, cons jetstream.Consumer) error {
	if n <= 1 {
		return r.run(ctx, cons)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, n)
	for range n {
		go func() {
			err := r.run(runCtx, cons)
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, errConsumerGone)) {
			first = err
		}
	}
	return first
}

// errConsumerGone ends run when the durable consumer no longer exists.
var errConsumerGone = errors.New("consumer gone")

// infoEvery is how often an idle run checks that its consumer still exists: a pull from a
// deleted consumer just finds no messages.
const infoEvery = 30 * time.Second

func isConsumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound)
}

// process applies one message and settles it with JetStream. Only a test hook's error or a
// handler's stopError is returned; every other outcome is settled on the message.
func (r *runner) process(ctx context.Context, msg jetstream.Msg) error {
	// From here until the message is settled (acked, naked or terminated), JetStream hears every
	// third of AckWait that this server still works on it: an apply slower than AckWait (an SMTP
	// server or a webhook receiver taking its time, a dead-letter publish waiting out a leader
	// election) is not handed to another server meanwhile, which would apply it a second time.
	held := r.holdAll([]jetstream.Msg{msg})
	defer held.release()
	msg = held.msgs[0]
	m, attempt, streamSeq, ok := r.decode(ctx, msg)
	if !ok {
		return nil
	}
	skipped, err := r.apply(ctx, m)
	return r.settle(ctx, msg, m, attempt, streamSeq, skipped, err)
}

// decode reads msg's delivery count and stream sequence and decodes its event. An undecodable
// message is dead-lettered here (ok false): no retry will make it decodable, and redelivering it
// would block the queue.
func (r *runner) decode(ctx context.Context, msg jetstream.Msg) (m *Message, attempt int, streamSeq uint64, ok bool) {
	attempt = 1
	if meta, err := msg.Metadata(); err == nil {
		attempt = int(meta.NumDelivered)
		streamSeq = meta.Sequence.Stream
	}
	m = new(Message)
	if err := json.Unmarshal(msg.Data(), m); err != nil || !safeID.MatchString(m.ID) {
		if err == nil {
			err = fmt.Errorf("event id %q is not an id", m.ID)
		}
		consumerErrorsOf(ctx).failed(r.name, err)
		deliveryCounter(ctx, r.name)(r.deadLetter(ctx, msg, nil, streamSeq, attempt, fmt.Errorf("undecodable message: %w", err)))
		return nil, 0, 0, false
	}
	return m, attempt, streamSeq, true
}

// settle settles a decoded message with JetStream after its apply: ack when it was applied or
// skipped (err nil), else nak it along the schedule or dead-letter it. Only a test hook's error
// or a handler's stopError is returned.
func (r *runner) settle(ctx context.Context, msg jetstream.Msg, m *Message, attempt int, streamSeq uint64, skipped bool, err error) error {
	count := deliveryCounter(ctx, r.name)
	errs := consumerErrorsOf(ctx)
	if err == nil {
		if r.beforeAck != nil {
			if err := r.beforeAck(m); err != nil {
				return err
			}
		}
		if err := msg.Ack(); err != nil {
			// The inbox has it: the redelivery will be skipped.
			r.log.Warn("consumer: ack", "consumer", r.name, "event", m.ID, "err", err)
		}
		errs.succeeded(r.name)
		if skipped {
			count(OutcomeDuplicate)
		} else {
			count(OutcomeApplied)
			r.log.Debug("consumer: applied", "consumer", r.name, "event", m.ID, "type", m.Type, "attempt", attempt)
		}
		return nil
	}
	if stop, ok := errors.AsType[*stopError](err); ok {
		// The endpoint was disabled (a 410), which is so whether or not this run is being
		// stopped meanwhile: the webhooks' sync sees the disabled endpoint in the store and may
		// cancel the run before this line, and the operator must still see why it stopped.
		errs.failed(r.name, err)
		_ = msg.Nak()
		count(OutcomeStopped)
		return stop
	}
	if ctx.Err() != nil {
		// Stopping: the failure is ours, not the message's. Hand it back at once for whoever runs
		// next.
		_ = msg.Nak()
		count(OutcomeInterrupted)
		return nil
	}
	errs.failed(r.name, err)
	if _, ok := errors.AsType[*PermanentError](err); ok || attempt > len(r.backoff) {
		count(r.deadLetter(ctx, msg, m, streamSeq, attempt, err))
		return nil
	}
	count(OutcomeRetry)
	delay := r.delay(attempt, err)
	r.log.Warn("consumer: failed; will retry", "consumer", r.name, "event", m.ID, "type", m.Type,
		"attempt", attempt, "retry_in", delay.Round(time.Millisecond), "err", err)
	if err := msg.NakWithDelay(delay); err != nil {
		// Without the nak, JetStream redelivers after AckWait.
		r.log.Warn("consumer: nak", "consumer", r.name, "event", m.ID, "err", err)
	}
	return nil
}

// settleFirst is a message that calls before ahead of every way of settling it (Ack, Nak,
// NakWithDelay, Term, TermWithReason): how heldBatch stops reporting progress for a
// message before it is settled.
type settleFirst struct {
	jetstream.Msg
	before func()
}

// Ack implements jetstream.Msg.
func (m settleFirst) Ack() error { m.before(); return m.Msg.Ack() }

// Nak implements jetstream.Msg.
func (m settleFirst) Nak() error { m.before(); return m.Msg.Nak() }

// NakWithDelay implements jetstream.Msg.
func (m settleFirst) NakWithDelay(delay time.Duration) error {
	m.before()
	return m.Msg.NakWithDelay(delay)
}

// Term implements jetstream.Msg.
func (m settleFirst) Term() error { m.before(); return m.Msg.Term() }

// TermWithReason implements jetstream.Msg.
func (m settleFirst) TermWithReason(reason string) error {
	m.before()
	return m.Msg.TermWithReason(reason)
}

// apply applies m unless the inbox says it was applied; skipped reports that it was. The message
// must be an event of the store's outbox, as the store has it: anyone who can publish to the bus
// (an external cluster's other clients) could otherwise have a receipt mailed or a signed webhook
// sent for an order that does not exist. One that is not is refused for good (dead-lettered), and
// what is applied is the store's event, not the message's copy.
func (r *runner) apply(ctx context.Context, m *Message) (skipped bool, err error) {
	done, errs := r.check(ctx, []*Message{m})
	if errs[0] != nil {
		return false, errs[0]
	}
	if done[0] {
		return true, nil
	}
	return false, r.handle(ctx, m)
}

// check reads, in one transaction of two queries, whether the inbox has each message's event
// (done) and otherwise confirms the message against the store's event (see apply); a message
// that is neither done nor confirmed has its error, and one that is confirmed is marked
// inboxChecked.
func (r *runner) check(ctx context.Context, ms []*Message) (done []bool, errs []error) {
	done, errs = make([]bool, len(ms)), make([]error, len(ms))
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	applied := make(map[string]bool, len(ms))
	stored := make(map[string]*boxoffice.Event, len(ms))
	err := r.store.View(ctx, func(tx boxoffice.Tx) error {
		got, err := tx.InboxApplied(ctx, r.name, ids)
		if err != nil {
			return err
		}
		var rest []string
		for _, id := range got {
			applied[id] = true
		}
		for _, id := range ids {
			if !applied[id] {
				rest = append(rest, id)
			}
		}
		evs, err := tx.EventsByID(ctx, rest)
		for _, ev := range evs {
			stored[ev.ID] = ev
		}
		return err
	})
	for i, m := range ms {
		switch {
		case err != nil:
			errs[i] = fmt.Errorf("read inbox: %w", err)
		case applied[m.ID]:
			done[i] = true
			if r.onSkip != nil {
				r.onSkip()
			}
		case stored[m.ID] == nil:
			errs[i] = Permanent(fmt.Errorf("event %s is not in the store's outbox: a message no server committed", m.ID))
		default:
			if err := confirm(m, stored[m.ID]); err != nil {
				errs[i] = Permanent(err)
			} else {
				m.inboxChecked = true
			}
		}
	}
	return done, errs
}

// confirm checks m against the store's event of its id and, when they agree, makes m the store's:
// type and subject as stored, and the data as stored.
func confirm(m *Message, stored *boxoffice.Event) error {
	same := stored.Type == m.Type && stored.Subject == m.Subject && sameJSON(stored.Data, m.Data)
	if !same {
		return fmt.Errorf("event %s on the bus differs from the store's: refused", m.ID)
	}
	m.Type, m.Subject, m.Seq, m.Position, m.Data, m.CreatedAt = stored.Type, stored.Subject, stored.Seq, stored.Position, stored.Data, stored.CreatedAt
	return nil
}

// sameJSON compares two JSON documents byte for byte after compaction: encoding a Message compacts
// its RawMessage data, which the store may hold with spaces.
func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// delay is the pause before the retry after attempt: the schedule's entry with ±20 % jitter, so
// that the retries of many messages failing together (a receiver back from an outage) spread out,
// and at least what a RetryAfterError asks for.
func (r *runner) delay(attempt int, err error) time.Duration {
	d := time.Second
	if n := len(r.backoff); n > 0 {
		d = r.backoff[min(max(attempt, 1), n)-1]
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	if ra, ok := errors.AsType[*RetryAfterError](err); ok {
		d = max(d, min(ra.After, maxRetryAfter))
	}
	return d
}

// deadLetter publishes the message with its failure to the dead-letter stream and, once the
// publish is acked, terminates the message. When the publish fails the message is naked to be
// tried again later instead: it is never dropped. m is nil for an undecodable message. The
// outcome says which it was (OutcomeDeadLettered, OutcomeRetry).
//
// The publish carries a message id made of the consumer and the event id (or the stream sequence
// of an undecodable message), so that a crash between the publish and the Term, which makes
// JetStream redeliver the message and this run dead-letter it again, leaves one dead letter.
func (r *runner) deadLetter(ctx context.Context, msg jetstream.Msg, m *Message, streamSeq uint64, attempt int, cause error) (outcome string) {
	dl := boxoffice.DeadLetter{
		Consumer: r.name,
		Payload:  payloadJSON(msg.Data()),
		Error:    cause.Error(),
		Attempts: attempt,
		FailedAt: time.Now().UTC(),
	}
	dedup := "dlq:" + r.name + ":seq:" + strconv.FormatUint(streamSeq, 10)
	if m != nil {
		dl.EventID, dl.EventType = m.ID, m.Type
		dedup = "dlq:" + r.name + ":" + m.ID
	}
	body, err := json.Marshal(dl)
	if err == nil {
		out := natsgo.NewMsg(DLQSubjectPrefix + r.name)
		out.Data = body
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = r.js.PublishMsg(pctx, out, jetstream.WithMsgID(dedup), jetstream.WithExpectStream(DLQStreamName))
		cancel()
	}
	if err != nil {
		retry := r.delay(1, nil)
		r.log.Error("consumer: dead-letter publish failed; will retry the message", "consumer", r.name,
			"event", dl.EventID, "err", err, "cause", cause, "retry_in", retry.Round(time.Millisecond))
		_ = msg.NakWithDelay(retry)
		return OutcomeRetry
	}
	r.log.Error("consumer: gave up; message dead-lettered", "consumer", r.name, "event", dl.EventID,
		"type", dl.EventType, "attempts", attempt, "err", cause)
	if err := msg.TermWithReason("dead-lettered"); err != nil {
		// Redelivered after AckWait, it is dead-lettered again and the DLQ's duplicate window
		// drops the copy.
		r.log.Warn("consumer: term", "consumer", r.name, "event", dl.EventID, "err", err)
	}
	return OutcomeDeadLettered
}

// payloadJSON returns data as a JSON value for DeadLetter.Payload: as it is when it is JSON (every
// message the relay publishes), else as a JSON string, so that the dead letter can be encoded.
func payloadJSON(data []byte) json.RawMessage {
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	b, _ := json.Marshal(string(data))
	return b
}
