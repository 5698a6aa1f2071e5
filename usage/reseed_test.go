package usage

import (
	"context"
	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"sync"
	"testing"
	"time"
)

// blockingMirror holds a flush between taking it and writing it, as a
// database round trip does.
type blockingMirror struct {
	*fakeMirror
	entered, release chan struct{}
	once             sync.Once
}

func (m *blockingMirror) FlushUsage(ctx context.Context, items []FlushItem) ([]Flushed, error) {
	m.once.Do(func() {
		m.entered <- struct{}{}
		<-m.release
	})
	return m.fakeMirror.FlushUsage(ctx, items)
}

// A reseed (any apikey notification: the app renamed the key, raised its
// quota, ...) that reads the row while a flush is in flight (taken from
// Redis, not yet committed) lays the in-flight decrements over the row,
// which lacks them: no use is handed out twice.
func TestRedisReseedDuringAFlush(t *testing.T) {
	now := time.Now().UTC()
	base := &fakeMirror{rows: map[string]Row{"k": {
		HasRemaining: true, Remaining: 100, CreatedAt: now.Add(-time.Hour), RateLimitOff: true,
	}}}
	mirror := &blockingMirror{fakeMirror: base, entered: make(chan struct{}), release: make(chan struct{})}
	m, _ := newTestMeter(t, mirror, Rules{Family: Current})
	ctx := context.Background()
	key := &betterauth.APIKey{ID: "k"}
	for range 10 {
		if u, err := m.Use(ctx, key); err != nil || u.Reason != 0 {
			t.Fatalf("use: %+v %v", u, err)
		}
	}
	done := make(chan error)
	go func() { _, err := m.Flush(ctx); done <- err }()
	<-mirror.entered // the 10 uses are taken (fn), the row still says 100

	// The row changed outside the gateways (a rename): the listener marks
	// the hash, and the next use reads the row again.
	if err := m.Reseed(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	u, err := m.Use(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	close(mirror.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	base.mu.Lock()
	row := base.rows["k"].Remaining
	base.mu.Unlock()
	// 11 uses spent of 100: 89 left, in Redis and on the row.
	if u.Remaining != 89 || row != 89 {
		t.Errorf("after 11 uses of 100: the gateway answered remaining %d, the row says %d; want 89 for both (%d uses handed out twice)",
			u.Remaining, row, u.Remaining-89)
	}
}
