package usage

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// inflightMirror holds its first FlushUsage until release is closed,
// after telling entered: a write of uses in flight.
type inflightMirror struct {
	*fakeMirror
	entered, release chan struct{}
}

func (m *inflightMirror) FlushUsage(ctx context.Context, items []FlushItem) ([]Flushed, error) {
	if m.entered != nil {
		close(m.entered)
		m.entered = nil
		<-m.release
	}
	return m.fakeMirror.FlushUsage(ctx, items)
}

// A key's hash is lost (evicted, expired, FLUSHALL, a failover to a
// replica behind) while a write of its uses is in flight. The next use
// seeds a new hash from a row read before that write commits; the new
// hash's tokens must still be above the one in flight (a seed starts them
// at Redis's clock), and its own writes must not wait for the lost one's
// lease: every use reaches the row.
func TestRedisHashLostWhileAWriteIsInFlight(t *testing.T) {
	base := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 100,
		CreatedAt: time.Now().Add(-time.Hour), RateLimitOff: true}}}
	mirror := &inflightMirror{fakeMirror: base, entered: make(chan struct{}), release: make(chan struct{})}
	m, c := newTestMeter(t, mirror, Rules{})
	ctx := context.Background()
	key := &betterauth.APIKey{ID: "k"}
	for range 10 {
		if _, err := m.Use(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	entered := mirror.entered
	done := make(chan error, 1)
	go func() { _, err := m.Flush(ctx); done <- err }()
	<-entered // token 1 taken, its write not committed
	keys, _ := m.keys(ctx, "k")
	if err := c.Del(ctx, keys[0]).Err(); err != nil { // the hash is lost
		t.Fatal(err)
	}
	for range 5 {
		if _, err := m.Use(ctx, key); err != nil { // seeded from the row: applied 0, tk 0
			t.Fatal(err)
		}
	}
	close(mirror.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := base.remaining("k"); got != 90 {
		t.Fatalf("after the first write: %d, want 90", got)
	}
	if _, err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := base.remaining("k"); got != 85 {
		t.Errorf("15 uses of 100 written back: row says %d, want 85 (the second write's token %d was already recorded)",
			got, base.flushes[len(base.flushes)-1].Token)
	}
}
