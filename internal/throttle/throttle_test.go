package throttle

import (
	"sync"
	"testing"
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
