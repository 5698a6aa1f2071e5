// Package breaker keeps an optional dependency that just failed from
// costing every request its timeout: after a failure, callers skip it for
// a pause, then try again.
package breaker

import (
	"errors"
	"sync/atomic"
	"time"
)

// Pause is how long a dependency is skipped after a failure.
const Pause = time.Second

// ErrOpen is the error of a call skipped while the breaker is open.
var ErrOpen = errors.New("skipped for a moment after a failure")

// Breaker is open (skip the dependency) for Pause after a failure. The
// zero value is closed; it is safe for concurrent use.
type Breaker struct{ until atomic.Int64 }

// Open reports whether the dependency is to be skipped at now.
func (b *Breaker) Open(now time.Time) bool { return now.UnixNano() < b.until.Load() }

// Failed opens the breaker from now for Pause.
func (b *Breaker) Failed(now time.Time) { b.until.Store(now.Add(Pause).UnixNano()) }
