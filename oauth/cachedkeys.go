package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// CachedKeysConfig configures a CachedKeys.
type CachedKeysConfig struct {
	// Source looks keys up one kid at a time, usually a store's jwks
	// table (KeyFunc(store.JWK)). Required.
	Source KeySource
	// TTL is how long a key found is used before it is looked up again:
	// a key whose row is deleted stops verifying within TTL. Default: 1
	// min.
	TTL time.Duration
	// NegativeTTL is how long a kid found missing (or unusable) stays so
	// without another lookup. Default: 10 s.
	NegativeTTL time.Duration
	// LookupsPerSecond bounds the lookups of kids the cache holds no key
	// for, with a burst of as many: tokens with made-up kids cost the
	// database at most that many queries a second. A kid over the bound
	// is answered from All when it is set, else as not found (the token
	// is refused) without a query. Default: 10.
	LookupsPerSecond int
	// All, when set, lists every key of the source (the jwks table holds
	// a handful). Over the lookup bound, the cache reads them all, at most
	// once a second, and answers from them: a flood of made-up kids then
	// costs at most that, and cannot keep a genuine kid from being found.
	All func(ctx context.Context) ([]Key, error)
	// MaxEntries bounds the kids cached, found or missing. Default: 1024.
	MaxEntries int
	// GracePeriod is how long a key keeps verifying after its row's
	// expiresAt (jwks.rotationInterval): Better-Auth's jwks.gracePeriod,
	// during which its /jwks endpoint, and so its introspection, still
	// accept the key. Zero means the default, 30 days; negative means
	// none.
	GracePeriod time.Duration
	// Timeout bounds one lookup. Default: 5 s.
	Timeout time.Duration
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
}

// DefaultGracePeriod is Better-Auth's default jwks.gracePeriod.
const DefaultGracePeriod = 30 * 24 * time.Hour

// CachedKeys is a KeySource that keeps another's answers in memory, each
// kid for its TTL. Concurrent lookups of one kid share one query.
//
// When a key's lookup fails (the database is unreachable), the key cached
// for it keeps verifying, and the next attempt waits for NegativeTTL; a
// kid with no key cached gets the failure, which decides nothing.
type CachedKeys struct {
	src      KeySource
	ttl, neg time.Duration
	grace    time.Duration
	timeout  time.Duration
	max      int
	now      func() time.Time
	flight   singleflight.Group

	all func(context.Context) ([]Key, error)

	mu      sync.Mutex
	entries map[string]*keyEntry
	// listed is what All returned at listedAt.
	listed   map[string]Key
	listedAt time.Time
	// A token bucket of lookups of unknown kids.
	rate, tokens float64
	refilled     time.Time
}

// keyEntry is what is known of a kid. Entries are replaced, never changed.
type keyEntry struct {
	key   Key
	err   error     // nil: key was found; else why not (ErrKeyNotFound, ErrUnusableKey)
	until time.Time // fresh until
	retry time.Time // after a failed lookup of a found key, no new attempt before
}

// NewCachedKeys checks cfg and returns its cache.
func NewCachedKeys(cfg CachedKeysConfig) (*CachedKeys, error) {
	if cfg.Source == nil {
		return nil, errors.New("oauth: cached keys: a source is required")
	}
	if cfg.TTL < 0 || cfg.NegativeTTL < 0 || cfg.LookupsPerSecond < 0 || cfg.MaxEntries < 0 || cfg.Timeout < 0 {
		return nil, errors.New("oauth: cached keys: negative TTL, rate, size or timeout")
	}
	c := &CachedKeys{
		src:     cfg.Source,
		all:     cfg.All,
		ttl:     orDefault(cfg.TTL, time.Minute),
		neg:     orDefault(cfg.NegativeTTL, 10*time.Second),
		grace:   orDefault(cfg.GracePeriod, DefaultGracePeriod),
		timeout: orDefault(cfg.Timeout, 5*time.Second),
		max:     orDefault(cfg.MaxEntries, 1024),
		rate:    float64(orDefault(cfg.LookupsPerSecond, 10)),
		now:     cfg.Now,
		entries: map[string]*keyEntry{},
	}
	if c.grace < 0 {
		c.grace = 0
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.tokens = c.rate
	return c, nil
}

func orDefault[T time.Duration | int](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Key implements KeySource.
func (c *CachedKeys) Key(ctx context.Context, kid string) (Key, error) {
	now := c.now()
	c.mu.Lock()
	e := c.entries[kid]
	c.mu.Unlock()
	if e != nil && (now.Before(e.until) || e.err == nil && now.Before(e.retry)) {
		return c.answer(e, now)
	}

	ch := c.flight.DoChan(kid, func() (any, error) { return c.lookup(ctx, kid), nil })
	select {
	case r := <-ch:
		return c.answer(r.Val.(*keyEntry), now)
	case <-ctx.Done():
		return Key{}, ctx.Err()
	}
}

// errOverRate answers the kids whose lookup the rate bound refuses.
var errOverRate = fmt.Errorf("%w (lookups of unknown kids are over their rate)", ErrKeyNotFound)

// lookup asks the source about kid, on its own deadline (detached from
// ctx, as the answer is shared), and caches what it learns. A kid with no
// key cached is looked up only if the rate bound allows; concurrent
// callers share one lookup, and so one spending of the bound.
func (c *CachedKeys) lookup(ctx context.Context, kid string) *keyEntry {
	c.mu.Lock()
	old, now := c.entries[kid], c.now()
	switch {
	case old != nil && now.Before(old.until):
		c.mu.Unlock()
		return old // a lookup that ended as this one was asked for
	case (old == nil || old.err != nil) && !c.take(now):
		c.mu.Unlock()
		if c.all != nil {
			return c.fromList(ctx, kid)
		}
		return &keyEntry{err: errOverRate}
	}
	c.mu.Unlock()

	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	k, err := c.src.Key(lctx, kid)
	now = c.now()
	var e *keyEntry
	switch {
	case err == nil:
		e = &keyEntry{key: k, until: now.Add(c.ttl)}
	case notFound(err):
		e = &keyEntry{err: err, until: now.Add(c.neg)}
	default:
		c.mu.Lock()
		defer c.mu.Unlock()
		if old := c.entries[kid]; old != nil && old.err == nil {
			// Keep verifying with the key; ask again later.
			stale := *old
			stale.retry = now.Add(c.neg)
			c.entries[kid] = &stale
			return &stale
		}
		return &keyEntry{err: err} // not cached: the next token asks again
	}
	c.mu.Lock()
	c.store(kid, e)
	c.mu.Unlock()
	return e
}

// listInterval is how often, at most, All is read.
const listInterval = time.Second

// fromList answers kid from the source's list of every key, read again if
// it is older than listInterval (concurrent callers share one reading). A
// kid found is cached as if looked up; one not found is not cached, so
// that made-up kids cannot crowd out the entries.
func (c *CachedKeys) fromList(ctx context.Context, kid string) *keyEntry {
	c.mu.Lock()
	listed, fresh := c.listed, c.now().Sub(c.listedAt) < listInterval
	c.mu.Unlock()
	if !fresh {
		v, err, _ := c.flight.Do("\x00all", func() (any, error) {
			c.mu.Lock()
			if c.now().Sub(c.listedAt) < listInterval {
				defer c.mu.Unlock()
				return c.listed, nil
			}
			c.mu.Unlock()
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
			defer cancel()
			keys, err := c.all(lctx)
			if err != nil {
				return nil, err
			}
			m := make(map[string]Key, len(keys))
			for _, k := range keys {
				m[k.ID] = k
			}
			c.mu.Lock()
			c.listed, c.listedAt = m, c.now()
			c.mu.Unlock()
			return m, nil
		})
		if err != nil {
			return &keyEntry{err: err} // decides nothing: 503
		}
		listed = v.(map[string]Key)
	}
	k, ok := listed[kid]
	if !ok {
		return &keyEntry{err: errOverRate}
	}
	e := &keyEntry{key: k, until: c.now().Add(c.ttl)}
	c.mu.Lock()
	c.store(kid, e)
	c.mu.Unlock()
	return e
}

// answer is the result an entry gives at now: a key past its expiresAt
// and grace period is no longer found.
func (c *CachedKeys) answer(e *keyEntry, now time.Time) (Key, error) {
	if e.err != nil {
		return Key{}, e.err
	}
	if !e.key.Expires.IsZero() && now.After(e.key.Expires.Add(c.grace)) {
		return Key{}, fmt.Errorf("%w: the key expired at %s", ErrKeyNotFound, e.key.Expires.Format(time.RFC3339))
	}
	return e.key, nil
}

// take spends a lookup of an unknown kid, if the bucket has one. c.mu is
// held.
func (c *CachedKeys) take(now time.Time) bool {
	if elapsed := now.Sub(c.refilled).Seconds(); elapsed > 0 {
		c.tokens = min(c.rate, c.tokens+elapsed*c.rate)
		c.refilled = now
	}
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// store caches e for kid, making room first when the cache is full:
// entries past their time go, then kids found missing, then any (a tenth
// of the cache at once, so that eviction is not paid on every store).
// c.mu is held.
func (c *CachedKeys) store(kid string, e *keyEntry) {
	if _, ok := c.entries[kid]; !ok && len(c.entries) >= c.max {
		now := c.now()
		target := max(1, c.max/10)
		evicted := 0
		for _, pass := range []func(*keyEntry) bool{
			func(x *keyEntry) bool { return !now.Before(x.until) },
			func(x *keyEntry) bool { return x.err != nil },
			func(*keyEntry) bool { return true },
		} {
			for k, x := range c.entries {
				if evicted >= target {
					break
				}
				if pass(x) {
					delete(c.entries, k)
					evicted++
				}
			}
		}
	}
	c.entries[kid] = e
}
