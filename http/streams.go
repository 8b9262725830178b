package http

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"boxoffice/waitroom"
)

// streamWorkers read and write the hub's due streams. A few are enough: a stream's turn is a
// read of its ticket (no store read for a settled place), a render and one write.
const streamWorkers = 4

// streamWriteWithin bounds one event's write. A client that has not read its last events fills
// its socket's buffer and then stalls the write: past this it is dropped (its EventSource
// reconnects with the last token it got), rather than holding a worker the others need.
const streamWriteWithin = 2 * time.Second

// streamHub serves the ticket event streams of a crowd from a few goroutines. Through net/http,
// a stream held its connection's goroutines (the handler's and the background read's), their
// stacks and the connection's buffers for as long as its buyer waited: 28 KB of the server's
// memory a stream, measured with 10,000 open (bench --mode streams), so that the collector, far
// past the soft memory limit, took 1.78 cores for their 2,000 events a second. The hub takes the connection over from net/http once the stream's first event is out
// (Hijack) and keeps only the connection, the token and when to read the ticket next, in a heap
// ordered by that time; its workers take each stream when due, read its ticket as a poll would,
// and write the event. A client that goes away is found at the next write.
type streamHub struct {
	rooms WaitRoom

	mu      sync.Mutex
	due     streamHeap
	wake    chan struct{} // a stream was added before every other's turn
	started bool
	stopped bool
	// work hands the workers the streams whose turn it is.
	work chan *hubStream
}

// hubStream is a stream the hub holds.
type hubStream struct {
	conn  net.Conn
	token string
	next  time.Time
}

func newStreamHub(rooms WaitRoom) *streamHub {
	return &streamHub{rooms: rooms, wake: make(chan struct{}, 1), work: make(chan *hubStream)}
}

// open starts a stream of events on w's connection with t, the ticket as first read, and
// reports whether the hub took it: false when the connection cannot be taken over (an HTTP/2
// stream, a test's recorder) or the hub has stopped, and nothing was written then.
func (hub *streamHub) open(w http.ResponseWriter, t *waitroom.Ticket) bool {
	hub.mu.Lock()
	stopped := hub.stopped
	hub.mu.Unlock()
	if stopped {
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	// What net/http would have sent, and then the body until the connection closes (an
	// event stream has no length; Connection: close makes that its end).
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	h := w.Header().Clone()
	streamHeader(h)
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	_ = h.Write(&b)
	b.WriteString("\r\n")
	_ = brw.Writer.Flush() // nothing is buffered before the headers; this only makes sure
	s := &hubStream{conn: conn}
	if !hub.send(s, &b, t) {
		return true
	}
	hub.start()
	hub.schedule(s, t)
	return true
}

// send appends t's event to b, writes b and reports whether the stream goes on; it closes the
// connection when the client is gone or t will not change any more.
func (hub *streamHub) send(s *hubStream, b *bytes.Buffer, t *waitroom.Ticket) bool {
	err := writeTicketEvent(b, t)
	if err == nil {
		_ = s.conn.SetWriteDeadline(time.Now().Add(streamWriteWithin))
		_, err = s.conn.Write(b.Bytes())
	}
	if err != nil || t.Done() {
		_ = s.conn.Close()
		return false
	}
	s.token = t.Token
	return true
}

// streamHeader sets what a stream of ticket events answers with, besides the route's own.
func streamHeader(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // a proxy must pass each event on at once
}

// writeTicketEvent writes t as one event of the stream to w.
func writeTicketEvent(w io.Writer, t *waitroom.Ticket) error {
	data, err := json.Marshal(t)
	if err == nil {
		_, err = fmt.Fprintf(w, "event: ticket\ndata: %s\n\n", data)
	}
	return err
}

// schedule puts s back in the heap for its next read, as t says.
func (hub *streamHub) schedule(s *hubStream, t *waitroom.Ticket) {
	s.next = time.Now().Add(t.ReadAgainIn())
	hub.mu.Lock()
	if hub.stopped {
		hub.mu.Unlock()
		_ = s.conn.Close()
		return
	}
	heap.Push(&hub.due, s)
	first := hub.due[0] == s
	hub.mu.Unlock()
	if first {
		select {
		case hub.wake <- struct{}{}:
		default:
		}
	}
}

// start runs the hub's scheduler and workers, once, until the waiting rooms stop.
func (hub *streamHub) start() {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.started || hub.stopped {
		return
	}
	hub.started = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-hub.rooms.Done()
		cancel()
	}()
	var workers sync.WaitGroup
	for range streamWorkers {
		workers.Go(func() {
			var b bytes.Buffer
			for s := range hub.work {
				hub.turn(ctx, s, &b)
			}
		})
	}
	go func() {
		hub.dispatch(ctx)
		close(hub.work)
		workers.Wait()
		hub.mu.Lock()
		hub.stopped = true
		for _, s := range hub.due {
			_ = s.conn.Close()
		}
		hub.due = nil
		hub.mu.Unlock()
	}()
}

// dispatch hands each stream to a worker when its turn comes, until ctx ends.
func (hub *streamHub) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		hub.mu.Lock()
		var s *hubStream
		wait := time.Hour
		if len(hub.due) > 0 {
			if wait = time.Until(hub.due[0].next); wait <= 0 {
				s = heap.Pop(&hub.due).(*hubStream)
			}
		}
		hub.mu.Unlock()
		if s != nil {
			select {
			case hub.work <- s:
			case <-ctx.Done():
				_ = s.conn.Close()
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-hub.wake:
		case <-ctx.Done():
			return
		}
	}
}

// turn reads s's ticket and sends it, and keeps s for its next turn unless it ended.
func (hub *streamHub) turn(ctx context.Context, s *hubStream, b *bytes.Buffer) {
	t, err := hub.rooms.Status(ctx, s.token)
	if err != nil {
		// As net/http's loop did: the stream ends, and the client reconnects (with a fresh
		// token if this one ran out) or gives up.
		_ = s.conn.Close()
		return
	}
	b.Reset()
	if hub.send(s, b, t) {
		hub.schedule(s, t)
	}
}

// streamHeap orders streams by their next turn.
type streamHeap []*hubStream

func (h streamHeap) Len() int           { return len(h) }
func (h streamHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h streamHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

// Push implements heap.Interface.
func (h *streamHeap) Push(x any) { *h = append(*h, x.(*hubStream)) }

// Pop implements heap.Interface.
func (h *streamHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}
