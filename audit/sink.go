package audit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
)

// Writer stores a batch of events, all or none.
type Writer interface {
	Write(ctx context.Context, events []Event) error
	Close() error
}

// Counter hears what becomes of queued events (package metrics counts them).
type Counter interface {
	AuditWritten(n int)
	AuditDropped(n int)
}

// DefaultQueue is a sink's queue unless told otherwise.
const DefaultQueue = 10000

// SinkOptions configure a Sink.
type SinkOptions struct {
	// Queue bounds the events waiting for the database; past it new events
	// are dropped (counted, and logged at most every 10 s). Default:
	// DefaultQueue.
	Queue int
	// Batch is the most events one write carries. Default: 500.
	Batch int
	// Interval is how long an event may wait for its batch to fill.
	// Default: 1s.
	Interval time.Duration
	// Timeout bounds each write. Default: 5s.
	Timeout time.Duration
	Logger  *zap.Logger
	Counter Counter // nil: not counted
}

// Sink writes events to a database in batches, from a bounded queue that
// never blocks the request offering an event. A write that fails for want
// of the database is retried, with backoff, until it lands or Close gives
// up on it; one the database refuses (the table missing, a value it will
// not take) is dropped and logged, since retrying it would stop the rest.
type Sink struct {
	w       Writer
	opts    SinkOptions
	queue   chan Event
	dropped atomic.Uint64 // since the last drop was logged
	drops   throttle.Log  // drops logged at most every 10 s
	fails   throttle.Log  // failed writes likewise
	closing chan struct{}
	// deadline ends the last writes: Timeout after Close was called (set
	// before closing is closed).
	deadline time.Time
	done     chan struct{}
	once     sync.Once
}

// NewSink starts a sink writing through w.
func NewSink(w Writer, opts SinkOptions) *Sink {
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Sink{w: w, opts: opts, queue: make(chan Event, opts.Queue),
		closing: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// Offer queues e, or drops it when the queue is full or the sink closed.
func (s *Sink) Offer(e *Event) {
	select {
	case <-s.closing:
		s.drop(1)
		return
	default:
	}
	select {
	case s.queue <- e.detached():
	default:
		s.drop(1)
	}
}

func (s *Sink) drop(n int) {
	if s.opts.Counter != nil {
		s.opts.Counter.AuditDropped(n)
	}
	total := s.dropped.Add(uint64(n))
	if _, ok := s.drops.Allow(); ok {
		s.dropped.Add(-total)
		s.opts.Logger.Warn("audit events dropped: the database is not keeping up or not answering",
			zap.Uint64("dropped", total))
	}
}

// run batches the queue into writes until Close.
func (s *Sink) run() {
	defer close(s.done)
	batch := make([]Event, 0, s.opts.Batch)
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	backoff := time.Duration(0)
	var retry <-chan time.Time
	for {
		full := len(batch) >= s.opts.Batch
		in := s.queue
		if full || retry != nil {
			in = nil // hold the batch; the queue fills, then drops
		}
		select {
		case e := <-in:
			batch = append(batch, e)
			if len(batch) < s.opts.Batch {
				continue
			}
		case <-tick.C:
			if retry != nil {
				continue
			}
		case <-retry:
			retry = nil
		case <-s.closing:
			s.flush(batch)
			return
		}
		if len(batch) == 0 {
			continue
		}
		switch err := s.write(batch); {
		case err == nil:
			batch, backoff = batch[:0], 0
		case refused(err):
			s.fail(err, len(batch))
			s.drop(len(batch))
			batch, backoff = batch[:0], 0
		default:
			s.fail(err, len(batch))
			backoff = min(max(2*backoff, 250*time.Millisecond), 30*time.Second)
			retry = time.After(backoff)
		}
	}
}

func (s *Sink) write(batch []Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	err := s.w.Write(ctx, batch)
	if err == nil && s.opts.Counter != nil {
		s.opts.Counter.AuditWritten(len(batch))
	}
	return err
}

func (s *Sink) fail(err error, n int) {
	if _, ok := s.fails.Allow(); ok {
		s.opts.Logger.Error("writing audit events", zap.Int("events", n), zap.Error(err))
	}
}

// flush writes what is held and queued, once each, by the deadline.
func (s *Sink) flush(batch []Event) {
	ctx, cancel := context.WithDeadline(context.Background(), s.deadline)
	defer cancel()
	for {
	fill:
		for len(batch) < s.opts.Batch {
			select {
			case e := <-s.queue:
				batch = append(batch, e)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if err := s.w.Write(ctx, batch); err != nil {
			s.opts.Logger.Error("writing audit events at shutdown", zap.Int("events", len(batch)), zap.Error(err))
			s.drop(len(batch) + len(s.queue))
			return
		}
		if s.opts.Counter != nil {
			s.opts.Counter.AuditWritten(len(batch))
		}
		batch = batch[:0]
	}
}

// Close writes what is queued (within the write timeout of the call) and
// closes the writer. Events offered after it are dropped.
func (s *Sink) Close() error {
	s.once.Do(func() {
		// From now, not from the end of a write in flight (which has its
		// own timeout): a database that does not answer would otherwise
		// hold Close, and a reload or shutdown, for twice the timeout.
		s.deadline = time.Now().Add(s.opts.Timeout)
		close(s.closing)
	})
	<-s.done
	return s.w.Close()
}

// errRefused marks an error the database gave about the events themselves.
var errRefused = errors.New("refused")

// Refused wraps err as the database refusing the batch: retrying it would
// fail again.
func Refused(err error) error { return errors.Join(errRefused, err) }

func refused(err error) bool { return errors.Is(err, errRefused) }
