package nats

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultConsumerBatch is how many messages a batching consumer run (the email consumer writing
// files) takes at once: what JetStream has ready, up to this many.
const DefaultConsumerBatch = 64

// runBatches is run for a consumer whose effects batch (r.batch set): it takes the messages
// JetStream has ready (up to r.batchSize) in one pull, checks all their inbox records and events
// in one read transaction, applies the new ones with r.batch (which records them in the inbox,
// together, in one write transaction) and then settles each one as process would. When nothing
// is ready it waits for one message as run does.
//
// Per message, the email consumer had cost a pull, a read transaction, a write transaction and
// two fsyncs: a third of the sale's throughput went to writing receipts while it sold. Batched,
// a receipt costs its file's fsync and a share of the rest. Nothing about a single message
// changes: each is still applied once (its inbox row), acked only after that commit, and retried
// or dead-lettered on its own when it fails.
func (r *runner) runBatches(ctx context.Context, cons jetstream.Consumer) error {
	wait := r.fetchWait
	if wait <= 0 {
		wait = time.Second
	}
	size := r.batchSize
	if size <= 0 {
		size = DefaultConsumerBatch
	}
	lastCheck := time.Now()
	for ctx.Err() == nil {
		msgs, err := fetchReady(cons, size)
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
		if err := r.processBatch(ctx, msgs); err != nil {
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

// processBatch applies and settles msgs (see runBatches). Only a test hook's error or a handler's
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
	for i := range items {
		if !done[i] && errs[i] == nil {
			todo, at = append(todo, ms[i]), append(at, i)
		}
	}
	if len(todo) > 0 {
		for j, err := range r.batch(ctx, todo) {
			errs[at[j]] = err
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

// heldBatch is a batch of messages whose progress one goroutine reports (runner.holdAll), the
// batch's counterpart of heldMsg: a message settled is reported no more.
type heldBatch struct {
	mu      sync.Mutex
	settled []bool
	msgs    []jetstream.Msg
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// holdAll returns msgs wrapped so that InProgress is sent every r.ackWait/3 for each one not yet
// settled, until release.
func (r *runner) holdAll(msgs []jetstream.Msg) *heldBatch {
	h := &heldBatch{settled: make([]bool, len(msgs)), stop: make(chan struct{}), done: make(chan struct{})}
	for i, msg := range msgs {
		h.msgs = append(h.msgs, &batchMsg{Msg: msg, h: h, i: i})
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

// batchMsg is one message of a heldBatch: settling it first takes it off the progress reports,
// under the lock the reports are sent under, so that no report follows its ack.
type batchMsg struct {
	jetstream.Msg
	h *heldBatch
	i int
}

func (b *batchMsg) settle() {
	b.h.mu.Lock()
	b.h.settled[b.i] = true
	b.h.mu.Unlock()
}

// Ack implements jetstream.Msg.
func (b *batchMsg) Ack() error { b.settle(); return b.Msg.Ack() }

// Nak implements jetstream.Msg.
func (b *batchMsg) Nak() error { b.settle(); return b.Msg.Nak() }

// NakWithDelay implements jetstream.Msg.
func (b *batchMsg) NakWithDelay(delay time.Duration) error {
	b.settle()
	return b.Msg.NakWithDelay(delay)
}

// Term implements jetstream.Msg.
func (b *batchMsg) Term() error { b.settle(); return b.Msg.Term() }

// TermWithReason implements jetstream.Msg.
func (b *batchMsg) TermWithReason(reason string) error {
	b.settle()
	return b.Msg.TermWithReason(reason)
}
