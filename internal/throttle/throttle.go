// Package throttle keeps a repeated warning from flooding the log: an
// outage, or someone sending bad input on purpose, must cost one line per
// interval, not one per event.
package throttle

import (
	"sync/atomic"
	"time"
)

// Every is how often a throttled warning is logged at most.
const Every = 10 * time.Second

// Log counts events and lets one through per Every. The zero value is
// ready; it is safe for concurrent use.
type Log struct {
	n    atomic.Uint64
	last atomic.Int64 // unix nanoseconds of the last event let through
}

// Allow counts one event and reports whether it may be logged now, with
// the number of events counted so far.
func (l *Log) Allow() (total uint64, ok bool) { return l.AllowAt(time.Now()) }

// AllowAt is Allow by the caller's clock.
func (l *Log) AllowAt(t time.Time) (total uint64, ok bool) {
	total = l.n.Add(1)
	now := t.UnixNano()
	last := l.last.Load()
	return total, now-last >= int64(Every) && l.last.CompareAndSwap(last, now)
}

// Count returns the number of events counted so far.
func (l *Log) Count() uint64 { return l.n.Load() }
