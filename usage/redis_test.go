package usage

import (
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// fakeMirror is a database of usage rows, with the table of the last
// write token applied to each.
type fakeMirror struct {
	mu      sync.Mutex
	rows    map[string]Row
	applied map[string]int64
	flushes []Flush
	reads   int
}

func (m *fakeMirror) ReadUsage(_ context.Context, id string) (Row, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	r, ok := m.rows[id]
	r.Applied = m.applied[id]
	return r, ok, nil
}

func (m *fakeMirror) FlushUsage(_ context.Context, items []FlushItem) ([]Flushed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Flushed
	for _, it := range items {
		f := it.Flush
		m.flushes = append(m.flushes, f)
		r := m.rows[it.ID]
		if m.applied == nil {
			m.applied = map[string]int64{}
		}
		if m.applied[it.ID] >= f.Token {
			out = append(out, Flushed{}) // written already
			continue
		}
		m.applied[it.ID] = f.Token
		if f.Refill && r.LastRefillAt.Equal(f.RefilledFrom) {
			r.Remaining, r.LastRefillAt = max(f.RemainingAfter-f.Decrements, 0), f.RefillAt
		} else if r.HasRemaining {
			extra := int64(0)
			if f.Refill {
				extra = 1
			}
			r.Remaining = max(r.Remaining-f.Decrements-extra, 0)
		}
		if f.HasRequestCount {
			r.RequestCount = f.RequestCount
		}
		if !f.LastRequest.IsZero() {
			r.LastRequest = f.LastRequest
		}
		m.rows[it.ID] = r
		out = append(out, Flushed{LastRefillAt: r.LastRefillAt, Known: true})
	}
	return out, nil
}

func newTestMeter(t *testing.T, m Mirror, rules Rules) (*Redis, *redis.Client) {
	t.Helper()
	opts, err := redis.ParseURL(testenv.Require(t, "TEST_REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	prefix := "usage-test:" + rand.Text()[:10] + ":"
	return NewRedis(RedisOptions{Client: c, Mirror: m, Rules: func(string) Rules { return rules },
		Prefix: func(context.Context) (string, error) { return prefix, nil }}), c
}

func redisNow(t *testing.T, c *redis.Client) time.Time {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// randomRow is a row whose dates lie whole seconds and a half from now,
// so that the milliseconds between Redis's clock and the test's do not
// move a decision across a boundary.
func randomRow(r *mrand.Rand, now time.Time) Row {
	ago := func() time.Time { return now.Add(-time.Duration(r.IntN(120))*time.Second - 500*time.Millisecond) }
	row := Row{CreatedAt: now.Add(-time.Hour)}
	if r.IntN(4) > 0 {
		row.HasRemaining, row.Remaining = true, int64(r.IntN(4))
	}
	if r.IntN(2) == 0 {
		row.HasRefillAmount, row.RefillAmount = true, int64(r.IntN(3))
		row.RefillInterval = int64(r.IntN(3)) * 30_000
	}
	if r.IntN(2) == 0 {
		row.LastRefillAt = ago()
	}
	row.RateLimitOff = r.IntN(5) == 0
	if r.IntN(5) > 0 {
		row.HasWindow, row.Window = true, int64(1+r.IntN(3))*30_000
		row.HasMax, row.Max = true, int64(r.IntN(4))
	}
	row.RequestCount = int64(r.IntN(5))
	if r.IntN(4) > 0 {
		row.LastRequest = ago()
	}
	return row
}

// The script decides as Rules.Plan does, for every family, on random rows.
func TestScriptMatchesPlan(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, family := range []Family{Current, Spare429, Legacy} {
		for _, globalOff := range []bool{false, true} {
			rules := Rules{Family: family, RateLimitOff: globalOff}
			mirror := &fakeMirror{rows: map[string]Row{}}
			m, c := newTestMeter(t, mirror, rules)
			for i := range 300 {
				// Redis's clock, read again for each row: the script's
				// answer is compared within 100 ms.
				now := redisNow(t, c)
				row := randomRow(rng, now)
				id := rand.Text()
				mirror.rows[id] = row
				want, _ := rules.Plan(row, now)
				got, err := m.Use(context.Background(), &betterauth.APIKey{ID: id})
				if err != nil {
					t.Fatal(err)
				}
				within := func(a, b time.Duration) bool { return a-b < 100*time.Millisecond && b-a < 100*time.Millisecond }
				if got.Reason != want.Reason || got.HasRemaining != want.HasRemaining || got.Remaining != want.Remaining ||
					got.Limit != want.Limit || got.Left != want.Left || got.RefillAmount != want.RefillAmount ||
					!within(got.RetryAfter, want.RetryAfter) || !within(got.RefillIn, want.RefillIn) || !within(got.Reset, want.Reset) {
					t.Fatalf("%v off=%v row %d %+v:\n script %+v\n plan   %+v", family, globalOff, i, row, got, want)
				}
			}
		}
	}
}

// Concurrent uses across meters sharing one Redis: exactly the quota
// passes, the database read once per key, and after a flush the row holds
// what was spent.
func TestRedisMeterExactAndFlushed(t *testing.T) {
	mirror := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 50, CreatedAt: time.Now().Add(-time.Hour),
		HasWindow: true, Window: 3_600_000, HasMax: true, Max: 1000}}}
	m, _ := newTestMeter(t, mirror, Rules{})
	var mu sync.Mutex
	passed := 0
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			u, err := m.Use(context.Background(), &betterauth.APIKey{ID: "k"})
			if err != nil {
				t.Error(err)
				return
			}
			if u.Reason == betterauth.Allowed {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if passed != 50 {
		t.Fatalf("%d of 200 passed a quota of 50", passed)
	}
	if mirror.reads > 2 {
		// Concurrent first uses may each read it; they agree.
		t.Logf("%d reads", mirror.reads)
	}
	n, err := m.Flush(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("flush: %d, %v", n, err)
	}
	if r := mirror.rows["k"]; r.Remaining != 0 || r.RequestCount != 50 || r.LastRequest.IsZero() {
		t.Fatalf("row after the flush: %+v", r)
	}
	// Nothing more to write.
	if n, err := m.Flush(context.Background()); err != nil || n != 0 {
		t.Fatalf("second flush: %d, %v", n, err)
	}
}

// A flush whose gateway died before acknowledging it is taken over once
// its lease ends, with the same token: the database applies it once.
func TestRedisFlushTakeover(t *testing.T) {
	mirror := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 10, CreatedAt: time.Now().Add(-time.Hour)}}}
	m, c := newTestMeter(t, mirror, Rules{})
	m.opts.Lease = 50 * time.Millisecond
	for range 3 {
		if _, err := m.Use(context.Background(), &betterauth.APIKey{ID: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	keys, _ := m.keys(context.Background(), "k")
	// A gateway takes the flush and dies.
	res, err := flushScript.Run(context.Background(), c, keys, "k", 50).Slice()
	if err != nil || len(res) != 9 {
		t.Fatalf("take: %v %v", res, err)
	}
	// Within the lease nobody else writes it.
	if n, err := m.Flush(context.Background()); err != nil || n != 0 {
		t.Fatalf("flush within the lease: %d %v", n, err)
	}
	// After it, another gateway does, with the taken token.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := m.Flush(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease never ended")
		}
	}
	if len(mirror.flushes) != 1 || mirror.flushes[0].Decrements != 3 || mirror.flushes[0].Token != mustInt(t, res[7]) {
		t.Fatalf("flushes %+v, taken token %v", mirror.flushes, res[7])
	}
	if r := mirror.rows["k"]; r.Remaining != 7 {
		t.Fatalf("remaining %d, want 7", r.Remaining)
	}
}

func mustInt(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case string:
		var n int64
		for _, c := range x {
			n = n*10 + int64(c-'0')
		}
		return n
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

// A hash marked for reseeding reads the row again and keeps what is
// pending; garbage in the hash is read as no hash.
func TestRedisReseedAndGarbage(t *testing.T) {
	mirror := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 10, CreatedAt: time.Now().Add(-time.Hour)}}}
	m, c := newTestMeter(t, mirror, Rules{})
	ctx := context.Background()
	use := func() betterauth.Usage {
		u, err := m.Use(ctx, &betterauth.APIKey{ID: "k"})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	use()
	use() // 8 left in Redis, 2 pending
	// The app sets remaining to 100 (not yet knowing the 2 pending uses).
	mirror.mu.Lock()
	r := mirror.rows["k"]
	r.Remaining = 100
	mirror.rows["k"] = r
	mirror.mu.Unlock()
	if err := m.Reseed(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if u := use(); u.Remaining != 97 {
		t.Fatalf("after the reseed: remaining %d, want 100 - 2 pending - 1", u.Remaining)
	}
	keys, _ := m.keys(ctx, "k")
	for _, field := range []string{"ca", "r", "rc", "pn"} {
		c.HSet(ctx, keys[0], field, "not a number")
		reads := mirror.reads
		if u := use(); u.Reason != betterauth.Allowed || mirror.reads != reads+1 {
			t.Fatalf("a hash with garbage in %s was used as it was: %+v, reads %d → %d", field, u, reads, mirror.reads)
		}
		if use(); mirror.reads != reads+1 {
			t.Fatalf("the garbage in %s stayed: the row was read again", field)
		}
	}
	// A key whose row is gone is unknown.
	if u, err := m.Use(ctx, &betterauth.APIKey{ID: "gone"}); err != nil || u.Reason != betterauth.InvalidAPIKey {
		t.Fatalf("a key without a row: %+v %v", u, err)
	}
}

// refusing is a database that refuses to write one row.
type refusing struct {
	*fakeMirror
	bad string
}

func (r refusing) FlushUsage(ctx context.Context, items []FlushItem) ([]Flushed, error) {
	for _, it := range items {
		if it.ID == r.bad {
			return nil, errors.New("refused")
		}
	}
	return r.fakeMirror.FlushUsage(ctx, items)
}

// A row the database refuses holds back only its own uses.
func TestRedisFlushIsolatesARefusedRow(t *testing.T) {
	base := &fakeMirror{rows: map[string]Row{}}
	for _, id := range []string{"a", "bad", "c"} {
		base.rows[id] = Row{HasRemaining: true, Remaining: 10, CreatedAt: time.Now().Add(-time.Hour)}
	}
	m, _ := newTestMeter(t, refusing{base, "bad"}, Rules{})
	for _, id := range []string{"a", "bad", "c"} {
		if _, err := m.Use(context.Background(), &betterauth.APIKey{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := m.Flush(context.Background())
	if n != 2 || err == nil {
		t.Fatalf("flush: %d written, err %v; want 2 and the refusal", n, err)
	}
	if base.rows["a"].Remaining != 9 || base.rows["c"].Remaining != 9 || base.rows["bad"].Remaining != 10 {
		t.Fatalf("rows: %+v", base.rows)
	}
}

// lagging answers its first read with a row from before the last write.
type lagging struct {
	*fakeMirror
	old   Row
	stale int
}

func (m *lagging) ReadUsage(ctx context.Context, id string) (Row, bool, error) {
	if m.stale > 0 {
		m.stale--
		m.fakeMirror.mu.Lock()
		m.reads++
		m.fakeMirror.mu.Unlock()
		return m.old, true, nil
	}
	return m.fakeMirror.ReadUsage(ctx, id)
}

// A row read before the last acknowledged write reached it (the write
// landed between the read and the script) is read again, not taken: its
// uses would be handed out twice. One that stays older (an app whose clock
// lags) is taken after two tries.
func TestRedisSeedRereadsAStaleRow(t *testing.T) {
	for _, stale := range []int{1, 5} {
		base := &fakeMirror{rows: map[string]Row{"k": {HasRemaining: true, Remaining: 100, CreatedAt: time.Now().Add(-time.Hour),
			RateLimitOff: true}}}
		mirror := &lagging{fakeMirror: base, old: base.rows["k"]}
		m, _ := newTestMeter(t, mirror, Rules{})
		ctx := context.Background()
		key := &betterauth.APIKey{ID: "k"}
		for range 10 {
			if _, err := m.Use(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := m.Flush(ctx); n != 1 || err != nil {
			t.Fatalf("flush: %d %v", n, err)
		}
		mirror.stale = stale
		if err := m.Reseed(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		reads := base.reads
		u, err := m.Use(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case stale == 1 && (u.Remaining != 89 || base.reads != reads+2):
			t.Errorf("one stale read: remaining %d after %d reads; want 89 after 2", u.Remaining, base.reads-reads)
		case stale == 5 && base.reads != reads+3:
			t.Errorf("a row that stays old: %d reads, want 3 and then taken", base.reads-reads)
		}
	}
}
