package nats

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultConsumerBatch is how many messages a batching consumer run (the email consumer writing
// files) takes at once: what JetStream has ready, up to this many.
const DefaultConsumerBatch = 64

// run fetches and applies the messages of cons until ctx ends: one at a time (process), or,
// for a consumer whose effects batch (r.batch set), what JetStream has ready, up to r.batchSize,
// in one pull (processBatch). When nothing is ready it waits for one message.
//
// A batch checks all its messages' inbox rows and events in one read transaction, applies the
// new ones with r.batch (which records them in the inbox, together, in one write transaction) and
// then settles each one as process would. Per message, the email consumer had cost a pull, a
// read transaction, a write transaction and two fsyncs: with receipts one at a time they fell
// behind the sale and were written after it, at nearly twice the CPU. Nothing about a single
// message changes: each is still applied once (its inbox row), acked only after that commit, and
// retried or dead-lettered on its own when it fails.
func (r *runner) run(ctx context.Context, cons jetstream.Consumer) error {
	wait := r.fetchWait
	if wait <= 0 {
		wait = time.Second
	}
	size := 1
	if r.batch != nil {
		size = cmp.Or(r.batchSize, DefaultConsumerBatch)
	}
	lastCheck := time.Now()
	for ctx.Err() == nil {
		var msgs []jetstream.Msg
		var err error
		if size > 1 {
			msgs, err = fetchReady(cons, size)
		}
		if err == nil && len(msgs) == 0 {
			msgs, err = fetchAll(cons, 1, jetstream.FetchMaxWait(wait))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isConsumerGone(err) {
				return errConsumerGone
			}
			r.log.Warn("consumer: fetch", "consumer", r.name, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if len(msgs) == 0 {
			if time.Since(lastCheck) > infoEvery {
				lastCheck = time.Now()
				if _, err := cons.Info(ctx); isConsumerGone(err) {
					return errConsumerGone
				}
			}
			continue
		}
		if r.batch != nil {
			err = r.processBatch(ctx, msgs)
		} else {
			for _, msg := range msgs {
				if err = r.process(ctx, msg); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fetchReady pulls the messages the consumer has ready now, up to n, without waiting for more.
func fetchReady(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	b, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	return drainBatch(b)
}

// fetchAll pulls up to n messages, waiting as opts say.
func fetchAll(cons jetstream.Consumer, n int, opts ...jetstream.FetchOpt) ([]jetstream.Msg, error) {
	b, err := cons.Fetch(n, opts...)
	if err != nil {
		return nil, err
	}
	return drainBatch(b)
}

// drainBatch collects a pull's messages. A pull that ends without messages (no messages, a timeout)
// is not an error; one that ends because the consumer is gone is.
func drainBatch(b jetstream.MessageBatch) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for msg := range b.Messages() {
		msgs = append(msgs, msg)
	}
	if err := b.Error(); err != nil && len(msgs) == 0 && isConsumerGone(err) {
		return nil, err
	}
	return msgs, nil
}

// batchItem is one decoded message of a batch.
type batchItem struct {
	msg       jetstream.Msg
	m         *Message
	attempt   int
	streamSeq uint64
}

// processBatch applies and settles msgs (see run). Only a test hook's error or a handler's
// stopError is returned.
func (r *runner) processBatch(ctx context.Context, msgs []jetstream.Msg) error {
	held := r.holdAll(msgs)
	defer held.release()
	items := make([]batchItem, 0, len(msgs))
	for _, msg := range held.msgs {
		if m, attempt, seq, ok := r.decode(ctx, msg); ok {
			items = append(items, batchItem{msg: msg, m: m, attempt: attempt, streamSeq: seq})
		}
	}
	ms := make([]*Message, len(items))
	for i, it := range items {
		ms[i] = it.m
	}
	done, errs := r.check(ctx, ms)
	var todo []*Message
	var at []int
	// A batch can hold one event twice (a publish that escaped the stream's duplicate window,
	// next to its original): the inbox has neither yet, so the check passes both. Only the first
	// is applied; a repeat takes its outcome, skipped once the first is applied, retried with it
	// when it failed, as it would have been had it come in a later batch.
	first := make(map[string]int, len(items))
	repeats := map[int]int{}
	for i := range items {
		if done[i] || errs[i] != nil {
			continue // the check settled it, as it settled every copy of the event alike
		}
		if j, seen := first[ms[i].ID]; seen {
			repeats[i] = j
			continue
		}
		first[ms[i].ID] = i
		todo, at = append(todo, ms[i]), append(at, i)
	}
	if len(todo) > 0 {
		for j, err := range r.batch(ctx, todo) {
			errs[at[j]] = err
		}
	}
	for i, j := range repeats {
		if errs[i] = errs[j]; errs[i] == nil {
			done[i] = true
			if r.onSkip != nil {
				r.onSkip()
			}
		}
	}
	for i, it := range items {
		if err := r.settle(ctx, it.msg, it.m, it.attempt, it.streamSeq, done[i], errs[i]); err != nil {
			// The run ends here, as after a crash: the messages not settled yet are redelivered
			// after AckWait, and those applied are skipped then by their inbox rows.
			return err
		}
	}
	return nil
}

// heldBatch is a batch of messages whose progress one goroutine reports (runner.holdAll): a
// message settled is reported no more, and none is reported after its ack (JetStream ignores a
// report for a settled message, but one racing a Nak would be about a message this server has
// given back).
type heldBatch struct {
	mu      sync.Mutex
	settled []bool
	msgs    []jetstream.Msg
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// holdAll returns msgs wrapped so that InProgress is sent every r.ackWait/3 for each one not yet
// settled (Ack, Nak, NakWithDelay, Term, TermWithReason), until release. With no ackWait it sends
// nothing.
//
// A progress report is best effort: a server cut off from NATS cannot send it, and then JetStream
// redelivers after AckWait to a server that can reach it, which is the point. The inbox makes that
// second apply harmless for the email files; for SMTP and webhooks it is the at-least-once window
// their receivers already have to handle (the same Message-ID, the same webhook-id).
func (r *runner) holdAll(msgs []jetstream.Msg) *heldBatch {
	h := &heldBatch{settled: make([]bool, len(msgs)), stop: make(chan struct{}), done: make(chan struct{})}
	for i, msg := range msgs {
		h.msgs = append(h.msgs, settleFirst{Msg: msg, before: func() { h.settledAt(i) }})
	}
	every := r.ackWait / 3
	if every <= 0 {
		close(h.done)
		return h
	}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			h.mu.Lock()
			for i, msg := range msgs {
				if !h.settled[i] {
					if err := msg.InProgress(); err != nil {
						r.log.Debug("consumer: progress report", "consumer", r.name, "err", err)
					}
				}
			}
			h.mu.Unlock()
		}
	}()
	return h
}

// release stops the progress reports and waits until the last one is sent.
func (h *heldBatch) release() {
	h.once.Do(func() { close(h.stop) })
	<-h.done
}

// settledAt takes the batch's message i off the progress reports, under the lock the reports are
// sent under, so that no report follows its settling.
func (h *heldBatch) settledAt(i int) {
	h.mu.Lock()
	h.settled[i] = true
	h.mu.Unlock()
}
