package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// countingStore returns a fixed answer and counts lookups; gate, when set,
// holds every lookup until it is closed.
type countingStore struct {
	rec     betterauth.Record
	err     error
	gate    chan struct{}
	entered chan struct{} // receives once per lookup, when gated
	calls   atomic.Int64
}

func gated(rec betterauth.Record) *countingStore {
	return &countingStore{rec: rec, gate: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (c *countingStore) Lookup(ctx context.Context, _ betterauth.Lookup) (betterauth.Record, error) {
	c.calls.Add(1)
	if c.gate != nil {
		c.entered <- struct{}{}
		select {
		case <-c.gate:
		case <-ctx.Done():
			return betterauth.Record{}, ctx.Err()
		}
	}
	return c.rec, c.err
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func keyRecord(expires time.Time) betterauth.Record {
	return betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", Enabled: true, ExpiresAt: expires, User: &betterauth.User{ID: "u1"}}}
}

func lookup(secret string) betterauth.Lookup {
	return betterauth.NewLookup(betterauth.KindAPIKey, secret)
}

func TestHitServesFromMemoryUntilTTL(t *testing.T) {
	t.Parallel()
	clk := &clock{t0}
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, Options{TTL: 10 * time.Second, Now: clk.now})
	ctx := context.Background()
	for range 3 {
		rec, err := s.Lookup(ctx, lookup("k"))
		if err != nil || rec.APIKey == nil {
			t.Fatalf("Lookup = %+v, %v", rec, err)
		}
	}
	if n := inner.calls.Load(); n != 1 {
		t.Fatalf("inner calls = %d, want 1", n)
	}
	clk.advance(10 * time.Second)
	if _, err := s.Lookup(ctx, lookup("k")); err != nil {
		t.Fatal(err)
	}
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("inner calls after TTL = %d, want 2", n)
	}
}

func TestRecordExpiryCapsTTL(t *testing.T) {
	t.Parallel()
	clk := &clock{t0}
	inner := &countingStore{rec: keyRecord(t0.Add(2 * time.Second))}
	s := New(inner, Options{TTL: time.Minute, Now: clk.now})
	s.Lookup(context.Background(), lookup("k"))
	clk.advance(2 * time.Second)
	s.Lookup(context.Background(), lookup("k"))
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("inner calls = %d, want 2 (entry must expire with the key)", n)
	}
}

func TestNegativeEntriesAreShortAndSeparate(t *testing.T) {
	t.Parallel()
	clk := &clock{t0}
	inner := &countingStore{}
	s := New(inner, Options{TTL: time.Minute, NegativeTTL: time.Second, MaxNegative: shards, Now: clk.now})
	ctx := context.Background()
	for range 2 {
		rec, err := s.Lookup(ctx, lookup("unknown"))
		if err != nil || rec.Found() {
			t.Fatalf("Lookup = %+v, %v", rec, err)
		}
	}
	if n := inner.calls.Load(); n != 1 {
		t.Fatalf("inner calls = %d, want 1", n)
	}
	clk.advance(time.Second)
	s.Lookup(ctx, lookup("unknown"))
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("inner calls after negative TTL = %d, want 2", n)
	}
	// A flood of unknown keys stays within MaxNegative and leaves the
	// positive space alone.
	inner.rec = keyRecord(time.Time{})
	s.Lookup(ctx, lookup("good"))
	inner.rec = betterauth.Record{}
	for i := range 1000 {
		s.Lookup(ctx, lookup(fmt.Sprint("probe", i)))
	}
	pos, neg := s.Len()
	if pos != 1 || neg > shards {
		t.Fatalf("Len = %d positive, %d negative; want 1 and at most %d", pos, neg, shards)
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	t.Parallel()
	boom := errors.New("db down")
	inner := &countingStore{err: boom}
	s := New(inner, Options{})
	for range 2 {
		if _, err := s.Lookup(context.Background(), lookup("k")); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
	}
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("inner calls = %d, want 2", n)
	}
	inner.err, inner.rec = nil, keyRecord(time.Time{})
	if rec, err := s.Lookup(context.Background(), lookup("k")); err != nil || rec.APIKey == nil {
		t.Fatalf("after recovery: %+v, %v", rec, err)
	}
}

func TestConcurrentMissesShareOneLookup(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		inner := gated(keyRecord(time.Time{}))
		s := New(inner, Options{})
		const n = 50
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				rec, err := s.Lookup(context.Background(), lookup("k"))
				if err == nil && rec.APIKey == nil {
					err = errors.New("no record")
				}
				errs <- err
			})
		}
		// Every goroutine is blocked: one in the inner store, the others
		// waiting for its flight. Then release it.
		synctest.Wait()
		<-inner.entered
		close(inner.gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if c := inner.calls.Load(); c != 1 {
			t.Fatalf("inner calls = %d for %d concurrent misses", c, n)
		}
	})
}

func TestLookupTimeoutIsAnError(t *testing.T) {
	t.Parallel()
	inner := gated(betterauth.Record{}) // never released
	s := New(inner, Options{LookupTimeout: 20 * time.Millisecond})
	_, err := s.Lookup(context.Background(), lookup("k"))
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a TimeoutError", err)
	}
}

func TestCallerCancellationDoesNotFailTheSharedLookup(t *testing.T) {
	t.Parallel()
	inner := gated(keyRecord(time.Time{}))
	s := New(inner, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Lookup(ctx, lookup("k")); done <- err }()
	<-inner.entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(inner.gate)
	if rec, err := s.Lookup(context.Background(), lookup("k")); err != nil || rec.APIKey == nil {
		t.Fatalf("second caller got %+v, %v", rec, err)
	}
}

func TestBoundedPositiveSpace(t *testing.T) {
	t.Parallel()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, Options{MaxEntries: 4 * shards})
	for i := range 5000 {
		s.Lookup(context.Background(), lookup(fmt.Sprint("key", i)))
	}
	if pos, _ := s.Len(); pos > 4*shards {
		t.Fatalf("%d entries, bound %d", pos, 4*shards)
	}
}

func TestHitDoesNotAllocate(t *testing.T) {
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, Options{})
	l := lookup("k")
	ctx := context.Background()
	s.Lookup(ctx, l)
	if a := testing.AllocsPerRun(100, func() { s.Lookup(ctx, l) }); a != 0 {
		t.Fatalf("cache hit allocates %v times", a)
	}
}

// The cache seals what it keeps, from the database and from the shared
// tier: a hit encodes nothing, even values that need escaping. Not
// parallel: AllocsPerRun counts every goroutine's allocations.
func TestRecordsLeaveTheCacheSealed(t *testing.T) {
	clk := &clock{t0}
	remote := newFakeRemote()
	rec := betterauth.Record{APIKey: &betterauth.APIKey{ID: "k\u00e9", Enabled: true,
		User: &betterauth.User{ID: "u1", Email: "zo\u00eb@example.com", Name: "Zo\u00eb", Role: "r\u00f4le"}}}
	fromDB := New(&countingStore{rec: rec}, sharedOpts(remote, Options{TTL: time.Minute, Jitter: -1, Now: clk.now}))
	inner := &countingStore{}
	fromShared := New(inner, sharedOpts(remote, Options{TTL: time.Minute, Jitter: -1, Now: clk.now}))
	clk.advance(ClockSkew) // entries written as a gateway starts are not read
	ctx := context.Background()
	c := betterauth.Credential{Kind: betterauth.KindAPIKey, Source: betterauth.SourceAPIKeyHeader, Value: secretKey}
	for _, s := range []*Store{fromDB, fromShared} {
		v, err := betterauth.NewVerifier(betterauth.Options{Store: s, Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		d, err := v.Verify(ctx, c)
		if err != nil || !d.Allowed() || d.CredentialHeader() != "k%C3%A9" {
			t.Fatalf("%+v %v", d, err)
		}
		var buf [betterauth.MaxHeaders]betterauth.Header
		if a := testing.AllocsPerRun(50, func() {
			d, _ := v.Verify(ctx, c)
			d.AppendHeaders(buf[:0])
			d.User.HeaderValues()
		}); a != 0 {
			t.Errorf("a hit allocates %v times: the record was not sealed", a)
		}
	}
	if inner.calls.Load() != 0 {
		t.Fatal("the second gateway read the database, not the shared tier")
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{Jitter: 1.01}, {Jitter: 10}, {Jitter: math.NaN()},
		{StaleWhileRevalidate: -time.Second}, {StaleIfError: -1},
		{MaxEntries: -1}, {MaxNegative: -1}, {LookupTimeout: -time.Second}, {RemoteTimeout: -1},
		{Remote: newFakeRemote()},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	for _, o := range []Options{
		{},                                     // every default
		{TTL: -1, NegativeTTL: -1, Jitter: -1}, // off, as the Caddyfile's "off" writes them
		{Jitter: -5, APIKeyTTL: -1, SessionTTL: time.Minute},
		{TTL: time.Minute, Jitter: 1, StaleWhileRevalidate: time.Second, StaleIfError: time.Hour, MaxEntries: 1, MaxNegative: 1,
			LookupTimeout: time.Second, RemoteTimeout: time.Millisecond, Remote: newFakeRemote(), Sealer: testSealer},
	} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v refused: %v", o, err)
		}
	}
}
