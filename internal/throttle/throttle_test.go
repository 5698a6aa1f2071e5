package throttle

import (
	"sync"
	"testing"
	"time"
)

func TestOnePerInterval(t *testing.T) {
	t.Parallel()
	var l Log
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 100 {
		wg.Go(func() {
			if _, ok := l.Allow(); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 1 || l.Count() != 100 {
		t.Fatalf("%d of 100 let through, %d counted; want 1 and 100", allowed, l.Count())
	}
}

func TestAllowAtFollowsTheCallersClock(t *testing.T) {
	t.Parallel()
	var l Log
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for i, tc := range []struct {
		at time.Time
		ok bool
	}{{t0, true}, {t0.Add(Every - 1), false}, {t0.Add(Every), true}, {t0.Add(Every + time.Second), false}} {
		if _, ok := l.AllowAt(tc.at); ok != tc.ok {
			t.Errorf("event %d at %v: allowed %v, want %v", i, tc.at, ok, tc.ok)
		}
	}
}
