package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

// table is a fake jwks table: keys by id, a failure to return instead,
// and a count of lookups.
type table struct {
	mu      sync.Mutex
	keys    map[string]oauth.Key
	err     error
	delay   time.Duration
	lookups atomic.Int64
}

func newTable(keys ...oauth.Key) *table {
	return &table{keys: oauth.NewStaticKeys(keys...)}
}

func (tb *table) Key(ctx context.Context, kid string) (oauth.Key, error) {
	tb.lookups.Add(1)
	tb.mu.Lock()
	k, ok := tb.keys[kid]
	err, delay := tb.err, tb.delay
	tb.mu.Unlock()
	time.Sleep(delay)
	switch {
	case err != nil:
		return oauth.Key{}, err
	case !ok:
		return oauth.Key{}, fmt.Errorf("jwks row %q: %w", kid, oauth.ErrKeyNotFound)
	}
	return k, nil
}

func (tb *table) set(f func(*table)) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	f(tb)
}

func newCachedKeys(t *testing.T, src oauth.KeySource, c *clock, cfg oauth.CachedKeysConfig) *oauth.CachedKeys {
	t.Helper()
	cfg.Source, cfg.Now = src, c.Now
	ck, err := oauth.NewCachedKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func TestCachedKeysCacheForTheirTTL(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	tb := newTable(ed)
	c := &clock{t: testNow}
	ck := newCachedKeys(t, tb, c, oauth.CachedKeysConfig{TTL: time.Minute})
	ctx := context.Background()
	for range 100 {
		if k, err := ck.Key(ctx, ed.ID); err != nil || k.ID != ed.ID {
			t.Fatalf("Key = %+v, %v", k, err)
		}
	}
	if n := tb.lookups.Load(); n != 1 {
		t.Errorf("%d lookups", n)
	}

	// The row is deleted (an operator retiring a leaked key): the key
	// verifies until the TTL is over, and no longer.
	tb.set(func(tb *table) { delete(tb.keys, ed.ID) })
	c.Add(59 * time.Second)
	if _, err := ck.Key(ctx, ed.ID); err != nil {
		t.Errorf("within the TTL: %v", err)
	}
	c.Add(time.Second)
	if _, err := ck.Key(ctx, ed.ID); !errors.Is(err, oauth.ErrKeyNotFound) {
		t.Errorf("after the TTL: %v", err)
	}
	if n := tb.lookups.Load(); n != 2 {
		t.Errorf("%d lookups", n)
	}
}

func TestCachedKeysCacheMissesBriefly(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	tb := newTable()
	c := &clock{t: testNow}
	ck := newCachedKeys(t, tb, c, oauth.CachedKeysConfig{NegativeTTL: 10 * time.Second})
	ctx := context.Background()
	for range 20 {
		if _, err := ck.Key(ctx, ed.ID); !errors.Is(err, oauth.ErrKeyNotFound) {
			t.Fatalf("missing key: %v", err)
		}
	}
	if n := tb.lookups.Load(); n != 1 {
		t.Errorf("%d lookups", n)
	}
	tb.set(func(tb *table) { tb.keys[ed.ID] = ed })
	c.Add(10 * time.Second)
	if _, err := ck.Key(ctx, ed.ID); err != nil {
		t.Errorf("after the negative TTL: %v", err)
	}
}

func TestCachedKeysBoundLookupsOfUnknownKids(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	tb := newTable(ed)
	c := &clock{t: testNow}
	ck := newCachedKeys(t, tb, c, oauth.CachedKeysConfig{LookupsPerSecond: 5})
	ctx := context.Background()
	if _, err := ck.Key(ctx, ed.ID); err != nil {
		t.Fatal(err)
	}
	// A flood of made-up kids: at most the burst is looked up...
	for i := range 1000 {
		if _, err := ck.Key(ctx, fmt.Sprint("made-up-", i)); !errors.Is(err, oauth.ErrKeyNotFound) {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if n := tb.lookups.Load(); n != 5 {
		t.Errorf("%d lookups, want 5 (the known key's and 4 made up)", n)
	}
	// ...while the known key keeps verifying...
	if _, err := ck.Key(ctx, ed.ID); err != nil {
		t.Errorf("known key during the flood: %v", err)
	}
	// ...and the bucket refills at the rate.
	c.Add(time.Second)
	for i := range 1000 {
		ck.Key(ctx, fmt.Sprint("more-", i))
	}
	if n := tb.lookups.Load(); n != 10 {
		t.Errorf("%d lookups a second later, want 10", n)
	}
}

// With All, a flood of made-up kids cannot keep a genuine kid (a key
// rotated in, not cached yet) from being found: over the bound, the list of
// every key answers, read at most once a second.
func TestCachedKeysFindGenuineKidsDuringAFlood(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	rotated := newSigner(t, oauth.ES256, "rotated-in").key
	tb := newTable(ed, rotated)
	var listings atomic.Int64
	all := func(context.Context) ([]oauth.Key, error) {
		listings.Add(1)
		return []oauth.Key{ed, rotated}, nil
	}
	c := &clock{t: testNow}
	ck := newCachedKeys(t, tb, c, oauth.CachedKeysConfig{LookupsPerSecond: 5, All: all})
	ctx := context.Background()
	for i := range 1000 {
		if _, err := ck.Key(ctx, fmt.Sprint("made-up-", i)); !errors.Is(err, oauth.ErrKeyNotFound) {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if k, err := ck.Key(ctx, rotated.ID); err != nil || k.ID != rotated.ID {
		t.Fatalf("a genuine kid during the flood: %v", err)
	}
	if n, l := tb.lookups.Load(), listings.Load(); n != 5 || l != 1 {
		t.Errorf("%d lookups and %d listings, want 5 and 1", n, l)
	}
	c.Add(time.Second)
	for i := range 1000 {
		ck.Key(ctx, fmt.Sprint("more-", i))
	}
	if l := listings.Load(); l != 2 {
		t.Errorf("%d listings a second later, want 2", l)
	}
}

func TestCachedKeysShareConcurrentLookups(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	tb := newTable(ed)
	tb.delay = 50 * time.Millisecond
	ck := newCachedKeys(t, tb, &clock{t: testNow}, oauth.CachedKeysConfig{})
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := ck.Key(context.Background(), ed.ID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := tb.lookups.Load(); n != 1 {
		t.Errorf("%d lookups", n)
	}
}

func TestCachedKeysOnBackendFailure(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	tb := newTable(ed)
	c := &clock{t: testNow}
	ck := newCachedKeys(t, tb, c, oauth.CachedKeysConfig{TTL: time.Minute, NegativeTTL: 10 * time.Second})
	ctx := context.Background()
	down := errors.New("database down")

	// No key cached: the failure, not cached, and not "no such key".
	tb.set(func(tb *table) { tb.err = down })
	for range 3 {
		if _, err := ck.Key(ctx, ed.ID); !errors.Is(err, down) || notFoundOrUnusable(err) {
			t.Fatalf("Key: %v", err)
		}
	}
	if n := tb.lookups.Load(); n != 3 {
		t.Errorf("%d lookups", n)
	}

	// A key cached: it keeps verifying past its TTL, and the database is
	// asked again only after the negative TTL.
	tb.set(func(tb *table) { tb.err = nil })
	if _, err := ck.Key(ctx, ed.ID); err != nil {
		t.Fatal(err)
	}
	tb.set(func(tb *table) { tb.err = down })
	c.Add(time.Minute)
	before := tb.lookups.Load()
	for range 10 {
		if _, err := ck.Key(ctx, ed.ID); err != nil {
			t.Fatalf("cached key while the database is down: %v", err)
		}
	}
	if n := tb.lookups.Load() - before; n != 1 {
		t.Errorf("%d lookups while down", n)
	}
	c.Add(10 * time.Second)
	ck.Key(ctx, ed.ID)
	if n := tb.lookups.Load() - before; n != 2 {
		t.Errorf("%d lookups after the retry interval", n)
	}
	// Back up, the row deleted meanwhile: it stops verifying.
	tb.set(func(tb *table) { tb.err = nil; delete(tb.keys, ed.ID) })
	c.Add(10 * time.Second)
	if _, err := ck.Key(ctx, ed.ID); !errors.Is(err, oauth.ErrKeyNotFound) {
		t.Errorf("deleted while down: %v", err)
	}
}

func TestCachedKeysHonourExpiryAndGracePeriod(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	ed.Expires = testNow.Add(time.Hour)
	c := &clock{t: testNow}
	for _, tt := range []struct {
		grace time.Duration
		after time.Duration // past expiresAt when the key stops
	}{
		{0, oauth.DefaultGracePeriod},
		{-1, 0},
		{24 * time.Hour, 24 * time.Hour},
	} {
		c.t = testNow
		ck := newCachedKeys(t, newTable(ed), c, oauth.CachedKeysConfig{GracePeriod: tt.grace, TTL: 1000 * time.Hour})
		c.t = ed.Expires.Add(tt.after)
		if _, err := ck.Key(context.Background(), ed.ID); err != nil {
			t.Errorf("grace %v: at the end of the grace period: %v", tt.grace, err)
		}
		c.t = ed.Expires.Add(tt.after + time.Second)
		if _, err := ck.Key(context.Background(), ed.ID); !errors.Is(err, oauth.ErrKeyNotFound) {
			t.Errorf("grace %v: after the grace period: %v", tt.grace, err)
		}
	}
}

func TestCachedKeysCacheUnusableKeysAsMissing(t *testing.T) {
	calls := 0
	ck := newCachedKeys(t, oauth.KeyFunc(func(context.Context, string) (oauth.Key, error) {
		calls++
		return oauth.Key{}, fmt.Errorf("jwks row: %w", oauth.ErrUnusableKey)
	}), &clock{t: testNow}, oauth.CachedKeysConfig{})
	for range 3 {
		if _, err := ck.Key(context.Background(), "k"); !errors.Is(err, oauth.ErrUnusableKey) {
			t.Errorf("Key: %v", err)
		}
	}
	if calls != 1 {
		t.Errorf("%d lookups", calls)
	}
}

func TestCachedKeysAreBounded(t *testing.T) {
	tb := newTable()
	for i := range 100 {
		k := signerFor(t, oauth.EdDSA).key
		k.ID = fmt.Sprint("k", i)
		tb.keys[k.ID] = k
	}
	c := &clock{t: testNow}
	ck := newCachedKeys(t, tb, c, oauth.CachedKeysConfig{MaxEntries: 10, LookupsPerSecond: 1000})
	ctx := context.Background()
	for i := range 100 {
		if _, err := ck.Key(ctx, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The last one is cached...
	before := tb.lookups.Load()
	if _, err := ck.Key(ctx, "k99"); err != nil {
		t.Fatal(err)
	}
	if tb.lookups.Load() != before {
		t.Error("k99 is not cached")
	}
	// ...but at most 10 of them are.
	for i := range 100 {
		if _, err := ck.Key(ctx, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := tb.lookups.Load() - before; n < 90 {
		t.Errorf("%d of 100 keys looked up again: more than 10 were cached", n)
	}
}

func TestCachedKeysBehindAVerifier(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	tb := newTable(ed.key)
	ck := newCachedKeys(t, tb, &clock{t: testNow}, oauth.CachedKeysConfig{})
	v := verifier(t, oauth.AccessTokenConfig{Keys: ck})
	for range 10 {
		if _, err := v.Verify(context.Background(), ed.token(t, ed.header(), claims())); err != nil {
			t.Fatal(err)
		}
	}
	var te *oauth.TokenError
	if _, err := v.Verify(context.Background(), ed.token(t, with(ed.header(), object{"kid": "gone"}), claims())); !errors.As(err, &te) || te.Reason != "unknown_key" {
		t.Errorf("unknown kid: %v", err)
	}
	if n := tb.lookups.Load(); n != 2 {
		t.Errorf("%d lookups", n)
	}
}

func TestNewCachedKeysChecksItsConfig(t *testing.T) {
	for _, cfg := range []oauth.CachedKeysConfig{
		{},
		{Source: newTable(), TTL: -1},
		{Source: newTable(), LookupsPerSecond: -1},
	} {
		if _, err := oauth.NewCachedKeys(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
