package usage

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// hookMirror returns the row as it was when the read began, after running
// onRead once: what happens between the database read and the seed script.
type hookMirror struct {
	*fakeMirror
	onRead func()
}

func (m *hookMirror) ReadUsage(ctx context.Context, id string) (Row, bool, error) {
	r, ok, err := m.fakeMirror.ReadUsage(ctx, id)
	if f := m.onRead; f != nil {
		m.onRead = nil
		f()
	}
	return r, ok, err
}

func (m *fakeMirror) set(id string, f func(*Row)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rows[id]
	f(&r)
	m.rows[id] = r
}

func (m *fakeMirror) remaining(id string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rows[id].Remaining
}

// Found in review: the stale check compares the row's updatedAt with the last
// token, but the token is the time of the last USE (flush.lua: pu), not of
// the write. An app write (a rename, a quota change: the very thing that
// triggers the reseed) after the last use and before the flush gives the
// row an updatedAt above the token. A reseed whose read lands before the
// flush's commit and whose script runs after its ack takes that row as
// fresh: the flushed decrements are in neither the row read nor Redis.
func TestRedisStaleReadAfterAnAppWrite(t *testing.T) {
	attack2Stale(t)
}

func attack2Stale(t *testing.T) {
	base := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 100,
		CreatedAt: time.Now().Add(-time.Hour), RateLimitOff: true}}}
	mirror := &hookMirror{fakeMirror: base}
	m, _ := newTestMeter(t, mirror, Rules{})
	ctx := context.Background()
	key := &betterauth.APIKey{ID: "k"}
	for range 10 {
		if _, err := m.Use(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	// The app renames the key (its updatedAt, which once served as the
	// write token, is no input now): the trigger sends "apikey", the
	// gateway marks the hash.
	if err := m.Reseed(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// The next use reads the row; the periodic flush commits and
	// acknowledges the 10 uses before the seed script runs.
	mirror.onRead = func() {
		if n, err := m.Flush(ctx); n != 1 || err != nil {
			t.Errorf("flush: %d %v", n, err)
		}
	}
	u, err := m.Use(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u.Remaining != 89 || base.remaining("k") != 89 {
		t.Errorf("after 11 uses of 100: gateway says %d, row %d; want 89 and 89 (%d uses handed out again)",
			u.Remaining, base.remaining("k"), u.Remaining-89)
	}
}

// Found in review: a change that reaches the gateway while a seed is under way
// (between the row's read and the seed script) is dropped: the seed
// script clears the reseed mark (HDEL reseed) and stamps the current
// generation, with the row read before the change.
func TestRedisChangeDuringASeed(t *testing.T) {
	for _, all := range []bool{false, true} {
		base := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 100,
			CreatedAt: time.Now().Add(-time.Hour), RateLimitOff: true}}}
		mirror := &hookMirror{fakeMirror: base}
		m, _ := newTestMeter(t, mirror, Rules{})
		ctx := context.Background()
		key := &betterauth.APIKey{ID: "k"}
		for range 2 {
			if _, err := m.Use(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Reseed(ctx, "k"); err != nil { // an earlier change
			t.Fatal(err)
		}
		mirror.onRead = func() {
			// The app cuts the quota to 5 right after the read; its
			// notification (or a listener's reconnection) arrives before
			// the seed script runs.
			base.set("k", func(r *Row) { r.Remaining = 5 })
			var err error
			if all {
				err = m.ReseedAll(ctx)
			} else {
				err = m.Reseed(ctx, "k")
			}
			if err != nil {
				t.Error(err)
			}
		}
		if _, err := m.Use(ctx, key); err != nil { // 3 uses pending
			t.Fatal(err)
		}
		u, err := m.Use(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		// The cut to 5, with 3 uses not yet on the row, then this one: 1.
		if u.Remaining != 1 {
			t.Errorf("ReseedAll=%v: quota cut to 5 during a seed; 4 uses pending after it: gateway says %d, want 1", all, u.Remaining)
		}
	}
}

// failAckMirror writes, then reports a failure (a commit whose answer was
// lost, or a gateway that dies before acknowledging).
type failAckMirror struct {
	*fakeMirror
	fail bool
}

func (m *failAckMirror) FlushUsage(ctx context.Context, items []FlushItem) ([]Flushed, error) {
	out, err := m.fakeMirror.FlushUsage(ctx, items)
	if m.fail {
		m.fail = false
		return nil, errors.New("connection lost after commit")
	}
	return out, err
}

// Found in review: the write's idempotence token is updatedAt, which the app
// writes too. A write that committed but was not acknowledged is taken
// again after its lease; if the app touched the row meanwhile (any
// updateApiKey, or its own verify), the statement no longer recognises it
// and applies the decrements twice. A reseed in that window also lays
// them over the row a second time (fu differs from the row's updatedAt).
func TestRedisRetakenWriteAfterAnAppWrite(t *testing.T) {
	base := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 100,
		CreatedAt: time.Now().Add(-time.Hour), RateLimitOff: true}}}
	mirror := &failAckMirror{fakeMirror: base, fail: true}
	m, c := newTestMeter(t, mirror, Rules{})
	ctx := context.Background()
	key := &betterauth.APIKey{ID: "k"}
	for range 10 {
		if _, err := m.Use(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Flush(ctx); err == nil {
		t.Fatal("the first write should report a failure")
	}
	if got := base.remaining("k"); got != 90 {
		t.Fatalf("row after the committed write: %d", got)
	}
	// The app renames the key; the gateway is told.
	if err := m.Reseed(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	u, err := m.Use(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// The lease runs out (30 s): expire it rather than wait.
	keys, _ := m.keys(ctx, "k")
	if err := c.HSet(ctx, keys[0], "fl", "0").Err(); err != nil {
		t.Fatal(err)
	}
	c.ZAdd(ctx, keys[1], redisZ(0, "k"))
	for range 2 {
		if _, err := m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if u.Remaining != 89 || base.remaining("k") != 89 {
		t.Errorf("11 uses of 100: gateway says %d, row %d; want 89 and 89", u.Remaining, base.remaining("k"))
	}
}

// fakeClaimer holds the row of "locked" until the use's context ends (an
// app transaction holding the row lock).
type fakeClaimer struct{}

func (fakeClaimer) ClaimUsage(ctx context.Context, id string, _ Rules, clock func() time.Time) (Row, time.Time, bool, error) {
	if id == "locked" {
		<-ctx.Done()
		return Row{}, time.Time{}, false, ctx.Err()
	}
	return Row{CreatedAt: clock().Add(-time.Hour), RateLimitOff: true}, clock(), true, nil
}

// Uses of one key queue on that key alone: a key whose row is locked
// holds up no other key (with shared queues, one hashed beside it would
// wait out its timeout and fail).
func TestDatabaseLockedRowHoldsUpOnlyItsKey(t *testing.T) {
	d := NewDatabase(fakeClaimer{}, func(string) Rules { return Rules{} }, 200*time.Millisecond)
	ctx := context.Background()
	held := make(chan error)
	go func() {
		_, err := d.Use(ctx, &betterauth.APIKey{ID: "locked"})
		held <- err
	}()
	holding := func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		ln := d.lanes["locked"]
		return ln != nil && len(ln.turn) == 1
	}
	for !holding() {
		runtime.Gosched() // polling a condition
	}
	for i := range 300 {
		if _, err := d.Use(ctx, &betterauth.APIKey{ID: "key-" + strconv.Itoa(i)}); err != nil {
			t.Fatalf("key-%d, whose row is free, while key \"locked\" waits: %v", i, err)
		}
	}
	if err := <-held; err == nil {
		t.Fatal("the locked key's use did not time out")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lanes) != 0 {
		t.Fatalf("%d lanes left after every use ended", len(d.lanes))
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
