package audit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWriter records batches; fail, while set, makes writes fail with it.
type fakeWriter struct {
	mu      sync.Mutex
	events  []Event
	batches int
	fail    error
	block   chan struct{} // when set, writes wait for it to close
	written chan int      // each successful batch's size
	started chan struct{} // when set, told of each write begun
	ends    []time.Time   // each write's deadline
}

func newFakeWriter() *fakeWriter { return &fakeWriter{written: make(chan int, 1000)} }

func (w *fakeWriter) Write(ctx context.Context, events []Event) error {
	w.mu.Lock()
	block, fail, started := w.block, w.fail, w.started
	end, _ := ctx.Deadline()
	w.ends = append(w.ends, end)
	w.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	w.mu.Lock()
	w.events = append(w.events, events...)
	w.batches++
	w.mu.Unlock()
	w.written <- len(events)
	return nil
}

func (w *fakeWriter) Close() error { return nil }

func (w *fakeWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

type counts struct {
	written, dropped atomic.Int64
	drops            chan int // each drop's size
}

func newCounts() *counts { return &counts{drops: make(chan int, 1000)} }

func (c *counts) AuditWritten(n int) { c.written.Add(int64(n)) }
func (c *counts) AuditDropped(n int) {
	c.dropped.Add(int64(n))
	select {
	case c.drops <- n:
	default:
	}
}

func event(i int) *Event { return &Event{Code: "OK", Status: i} }

func TestSinkBatchesAndFlushesOnClose(t *testing.T) {
	w, c := newFakeWriter(), newCounts()
	s := NewSink(w, SinkOptions{Batch: 10, Interval: time.Hour, Counter: c})
	for i := range 25 {
		s.Offer(event(i))
	}
	// Two full batches go at once; the rest waits for the interval, or Close.
	for range 2 {
		if n := <-w.written; n != 10 {
			t.Fatalf("batch of %d", n)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if w.count() != 25 || c.written.Load() != 25 || c.dropped.Load() != 0 {
		t.Fatalf("%d written (%d counted), %d dropped", w.count(), c.written.Load(), c.dropped.Load())
	}
	for i, e := range w.events {
		if e.Status != i {
			t.Fatalf("event %d out of order: %d", i, e.Status)
		}
	}
	s.Offer(event(99))
	if c.dropped.Load() != 1 {
		t.Error("an event offered after Close was not counted as dropped")
	}
}

// A database that does not answer fills the queue, then drops: Offer never
// waits. When it answers again the held batch and the queue are written.
func TestSinkNeverBlocksAndRetries(t *testing.T) {
	w, c := newFakeWriter(), newCounts()
	w.fail = errors.New("connection refused")
	s := NewSink(w, SinkOptions{Batch: 5, Queue: 20, Interval: 10 * time.Millisecond, Counter: c})
	defer s.Close()
	done := make(chan struct{})
	go func() {
		for i := range 100 {
			s.Offer(event(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Offer blocked on a failing database")
	}
	// Held: one batch being retried (5) and the queue (20); the rest dropped.
	if d := c.dropped.Load(); d < 75 {
		t.Fatalf("%d dropped, want at least 75", d)
	}
	w.mu.Lock()
	w.fail = nil
	w.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for w.count()+int(c.dropped.Load()) < 100 {
		select {
		case <-w.written:
		case <-deadline:
			t.Fatalf("after recovery: %d written, %d dropped", w.count(), c.dropped.Load())
		}
	}
	if w.count() == 0 {
		t.Error("nothing written after the database came back")
	}
}

// A batch the database refuses is dropped, not retried forever: the
// events after it are written.
func TestSinkDropsRefusedBatch(t *testing.T) {
	w, c := newFakeWriter(), newCounts()
	w.fail = Refused(errors.New(`relation "audit" does not exist`))
	s := NewSink(w, SinkOptions{Batch: 1, Counter: c})
	defer s.Close()
	s.Offer(event(1))
	select {
	case <-c.drops:
	case <-time.After(10 * time.Second):
		t.Fatal("a refused batch was not dropped")
	}
	w.mu.Lock()
	w.fail = nil
	w.mu.Unlock()
	s.Offer(event(2))
	if n := <-w.written; n != 1 || w.events[0].Status != 2 {
		t.Fatalf("after a refusal: %v", w.events)
	}
}

// Close gives up within the write timeout of its call, also when a write
// is in flight: the last write's deadline is the call's, not the end of
// the write before it plus another timeout.
func TestSinkCloseWithinTimeout(t *testing.T) {
	w, c := newFakeWriter(), newCounts()
	w.block, w.started = make(chan struct{}), make(chan struct{}, 10) // a database that never answers
	const timeout = 500 * time.Millisecond
	s := NewSink(w, SinkOptions{Batch: 1, Timeout: timeout, Counter: c})
	s.Offer(event(1))
	<-w.started // a write in flight
	s.Offer(event(2))
	called := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ends) != 2 {
		t.Fatalf("%d writes", len(w.ends))
	}
	if last := w.ends[1]; last.After(called.Add(timeout + timeout/2)) {
		t.Errorf("the flush at Close may run until %v after it was called, past the %v timeout", last.Sub(called), timeout)
	}
	if d := c.dropped.Load(); d != 2 {
		t.Errorf("%d dropped, want 2", d)
	}
}
