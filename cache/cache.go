// Package cache keeps verified Better-Auth records in process memory, in
// front of a betterauth.Store.
//
// Entries are keyed by the lookup kind and SHA-256 of the presented secret,
// never by the secret itself. They hold facts (the rows), not decisions: the
// Verifier re-checks expiry, enabled and bans on every hit. Unknown
// credentials are remembered briefly in a separate, bounded space so that a
// flood of bad keys can neither reach the database nor evict good entries.
// Concurrent misses for one key share one lookup, and errors are never
// cached.
package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// Defaults.
const (
	DefaultTTL           = 15 * time.Second
	DefaultNegativeTTL   = 5 * time.Second
	DefaultMaxEntries    = 100_000
	DefaultMaxNegative   = 10_000
	DefaultLookupTimeout = 3 * time.Second
	DefaultJitter        = 0.1
)

// Options configure a Store.
type Options struct {
	// TTL bounds how long a record is served from memory, and so how long a
	// key deleted in Better-Auth keeps working when no revocation is pushed.
	// A record's own expiry caps it further. Negative disables positive
	// caching. Default: DefaultTTL.
	TTL time.Duration
	// APIKeyTTL and SessionTTL, when set, replace TTL for that kind;
	// negative disables caching that kind.
	APIKeyTTL, SessionTTL time.Duration
	// Jitter shortens each entry's TTL by a random fraction up to this (at
	// most 1), so that replicas do not all reload a popular credential at
	// once. Negative disables it. Default: DefaultJitter.
	Jitter float64
	// StaleWhileRevalidate serves an entry for this long past its TTL while
	// one background lookup refreshes it, so that popular credentials never
	// wait for the database. It widens the revocation bound when no
	// revocation is pushed. Default: 0 (off).
	StaleWhileRevalidate time.Duration
	// StaleIfError serves an entry for this long past its TTL when the
	// database cannot answer, instead of failing with 503. Default: 0 (off:
	// fail closed).
	StaleIfError time.Duration
	// NegativeTTL is how long "no such credential" is remembered. Negative
	// disables it. Default: DefaultNegativeTTL.
	NegativeTTL time.Duration
	// MaxEntries and MaxNegative bound the two spaces. Default:
	// DefaultMaxEntries and DefaultMaxNegative.
	MaxEntries  int
	MaxNegative int
	// LookupTimeout bounds one lookup in the inner store. Default:
	// DefaultLookupTimeout.
	LookupTimeout time.Duration
	// Now is the clock: every time the cache reads (expiry, the shared
	// tier's stamps and watermarks, the pace of its warnings) comes from
	// it. Only timeouts run on real time. Default: time.Now.
	Now func() time.Time

	// Remote, when set, is a cache shared with other gateways (Redis): read
	// on an in-process miss, written after a database hit. It needs Sealer.
	Remote Remote
	// Sealer authenticates shared entries; required with Remote. Without
	// it, New ignores the Remote and logs why.
	Sealer *Sealer
	// RemotePrefix starts every Remote key; gateways that share entries must
	// use the same prefix, and gateways for different databases different
	// ones. When empty, RemoteScope names the prefix on first use (see
	// DefaultPrefix).
	RemotePrefix string
	// RemoteScope, when set, returns a description of the rows the gateway
	// reads (database, user, schema, layout); it is called once, on first
	// use of the shared tier, and retried until it succeeds.
	RemoteScope func(context.Context) (string, error)
	// AllowedIPsField is the metadata field the inner store reads API keys'
	// allow-lists from ("" for none; see schema.Config.AllowedIPsField).
	// Shared entries carry it, and an API key's entry written by a gateway
	// that read another field, or none, is not served: its key might be
	// restricted here.
	AllowedIPsField string
	// RemoteTimeout bounds each Remote call. Default: DefaultRemoteTimeout.
	RemoteTimeout time.Duration
	// Logger receives rate-limited warnings about the Remote.
	Logger *zap.Logger
	// Metrics, when set, counts which tier answered each lookup and times
	// the inner store's and the Remote's reads, the inner store's as
	// Backend.
	Metrics *metrics.Set
	Backend metrics.Backend
}

// Validate reports options that mean nothing: a jitter above 1, and
// negative values where only zero (the default) or a positive value does.
// New is more lenient (it takes those negatives for the default or off);
// front ends call Validate when a configuration loads, so that a mistake
// is an error rather than a silent default. Zero durations and counts
// mean the default; negative TTL, NegativeTTL, APIKeyTTL, SessionTTL and
// Jitter mean off.
func (o Options) Validate() error {
	switch {
	case math.IsNaN(o.Jitter) || o.Jitter > 1:
		return fmt.Errorf("jitter must be a fraction from 0 to 1, or negative for off, not %v", o.Jitter)
	case o.StaleWhileRevalidate < 0:
		return errors.New("stale_while_revalidate must not be negative")
	case o.StaleIfError < 0:
		return errors.New("stale_if_error must not be negative")
	case o.MaxEntries < 0:
		return errors.New("max_entries must not be negative")
	case o.MaxNegative < 0:
		return errors.New("max_negative must not be negative")
	case o.LookupTimeout < 0:
		return errors.New("lookup_timeout must not be negative")
	case o.RemoteTimeout < 0:
		return errors.New("the redis timeout must not be negative")
	case o.Remote != nil && o.Sealer == nil:
		return errors.New("a shared cache needs a Sealer to authenticate its entries")
	}
	return nil
}

// Store is a caching betterauth.Store.
type Store struct {
	inner   betterauth.Store
	ttl     time.Duration
	keyTTL  time.Duration
	sessTTL time.Duration
	jitter  float64
	swr     int64 // stale-while-revalidate window, nanoseconds
	sie     int64 // stale-if-error window, nanoseconds
	negTTL  time.Duration
	timeout time.Duration
	now     func() time.Time

	pos, neg table
	flights  singleflight.Group
	remote   *remoteTier // nil without a Remote

	logger   *zap.Logger
	staleLog throttle.Log
	metrics  *metrics.Set // nil: nothing counted
	backend  metrics.Backend
	loaded   func() // tests: called when a load has stored its result

	// gen counts invalidations. A load remembers it when it starts and
	// stores its result only if no invalidation came meanwhile, so a lookup
	// that raced a revocation can never put the revoked record back.
	gen atomic.Uint64
}

// New wraps inner.
func New(inner betterauth.Store, opts Options) *Store {
	s := &Store{inner: inner, ttl: opts.TTL, negTTL: opts.NegativeTTL, timeout: opts.LookupTimeout, now: opts.Now,
		metrics: opts.Metrics, backend: opts.Backend}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.negTTL == 0 {
		s.negTTL = DefaultNegativeTTL
	}
	if s.timeout <= 0 {
		s.timeout = DefaultLookupTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.keyTTL, s.sessTTL = cmpOr(opts.APIKeyTTL, s.ttl), cmpOr(opts.SessionTTL, s.ttl)
	s.jitter = opts.Jitter
	if s.jitter == 0 {
		s.jitter = DefaultJitter
	}
	s.swr, s.sie = int64(max(opts.StaleWhileRevalidate, 0)), int64(max(opts.StaleIfError, 0))
	s.pos.init(orDefault(opts.MaxEntries, DefaultMaxEntries))
	s.neg.init(orDefault(opts.MaxNegative, DefaultMaxNegative))
	s.logger = opts.Logger
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	if opts.Remote != nil && s.ttl > 0 {
		if opts.Sealer == nil {
			s.logger.Error("the shared cache is off: its entries cannot be authenticated without a key")
		} else {
			s.remote = newRemoteTier(opts, s.now)
		}
	}
	return s
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// Lookup implements betterauth.Store.
func (s *Store) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	k := keyOf(l)
	now := s.now().UnixNano()
	rec, expires, ok := s.pos.get(k, now)
	if ok && now < expires {
		s.metrics.Answered(metrics.TierMemory)
		traceTier(ctx, metrics.TierMemory)
		return rec, nil
	}
	if ok && now < expires+s.swr {
		s.refresh(k, l)
		s.metrics.Answered(metrics.TierStale)
		traceTier(ctx, metrics.TierStale)
		return rec, nil
	}
	if _, _, ok := s.neg.get(k, now); ok {
		s.metrics.Answered(metrics.TierNegative)
		traceTier(ctx, metrics.TierNegative)
		return betterauth.Record{}, nil
	}
	fresh, err := s.miss(ctx, k, l)
	if err != nil && ok && now < expires+s.sie {
		s.logStale(err)
		s.metrics.Answered(metrics.TierStale)
		traceTier(ctx, metrics.TierStale)
		return rec, nil
	}
	return fresh, err
}

// refresh starts the one background lookup of k, unless one is running.
func (s *Store) refresh(k key, l betterauth.Lookup) {
	s.flights.DoChan(string(k[:]), func() (any, error) { return s.load(context.Background(), k, l) })
}

// logStale says, at most once per throttle.Every, that the database is
// down and stale entries are served.
func (s *Store) logStale(err error) {
	if _, ok := s.staleLog.AllowAt(s.now()); ok {
		s.logger.Warn("the database cannot answer; serving recently verified records (stale_if_error)", zap.Error(err))
	}
}

// miss joins or starts the one lookup for k. It is a separate function so
// that the hit path above allocates nothing.
func (s *Store) miss(ctx context.Context, k key, l betterauth.Lookup) (betterauth.Record, error) {
	ch := s.flights.DoChan(string(k[:]), func() (any, error) { return s.load(ctx, k, l) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return betterauth.Record{}, res.Err
		}
		ld := res.Val.(loadResult)
		// Every caller sharing the lookup, not only the one that ran it.
		traceTier(ctx, ld.tier)
		return ld.rec, nil
	case <-ctx.Done():
		return betterauth.Record{}, ctx.Err()
	}
}

// loadResult is what one shared lookup found, and which tier answered.
type loadResult struct {
	rec  betterauth.Record
	tier metrics.Tier
}

// load runs one shared lookup. It is detached from the first caller's
// cancellation, since other callers wait on it, and bounded by the timeout.
// It keeps that caller's values, its trace span among them: the reads'
// spans are children of that request's span (the callers that joined it get
// the answering tier on their spans, no read spans of their own).
// It seals every record it returns, from the shared tier or the inner
// store, before any other goroutine can see it: the cache is the one owner
// of sealing (see betterauth.Record.Seal), so that a hit costs no encoding.
func (s *Store) load(ctx context.Context, k key, l betterauth.Lookup) (loadResult, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if s.loaded != nil {
		defer s.loaded()
	}
	gen := s.gen.Load()
	var sh shared
	if s.remote != nil {
		rctx, sp := startSpan(ctx, "better_auth.redis.get", metrics.BackendRedis, l.Kind)
		sh = s.remote.get(rctx, k)
		if sp != nil {
			sp.SetAttributes(attribute.Bool("better_auth.hit", sh.hit))
		}
		endSpan(sp, nil) // a failed read is logged, and the database asked
		if sh.hit {
			sh.rec = sh.rec.Seal()
			// Never kept past this gateway's own TTL, nor the record's
			// expiry, whatever the shared entry says.
			now := s.now()
			exp := sh.expires
			if e := now.Add(s.ttlFor(sh.rec)); e.Before(exp) {
				exp = e
			}
			if e := expiryOf(sh.rec); !e.IsZero() && e.Before(exp) {
				exp = e
			}
			if exp.After(now) {
				s.pos.put(k, sh.rec, exp.UnixNano(), s.keep(exp.UnixNano()), now.UnixNano(), &s.gen, gen)
				s.metrics.Answered(metrics.TierShared)
				return loadResult{sh.rec, metrics.TierShared}, nil
			}
		}
	}
	var began time.Time
	if s.metrics != nil {
		began = time.Now()
	}
	lctx, sp := startSpan(ctx, "better_auth.lookup", s.backend, l.Kind)
	rec, err := s.inner.Lookup(lctx, l)
	endSpan(sp, err)
	if s.metrics != nil {
		s.metrics.Looked(s.backend, time.Since(began), err)
		if err == nil {
			s.metrics.Answered(metrics.TierDatabase)
		}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = &TimeoutError{After: s.timeout, Err: err}
		}
		return loadResult{}, err
	}
	rec = rec.Seal()
	now := s.now()
	if !rec.Found() {
		if s.negTTL > 0 {
			exp := now.Add(s.negTTL).UnixNano()
			s.neg.put(k, rec, exp, exp, now.UnixNano(), &s.gen, gen)
		}
		return loadResult{rec, metrics.TierDatabase}, nil
	}
	if ttl := s.ttlFor(rec); ttl > 0 {
		exp := now.Add(ttl)
		if e := expiryOf(rec); !e.IsZero() && e.Before(exp) {
			exp = e
		}
		if exp.After(now) && s.pos.put(k, rec, exp.UnixNano(), s.keep(exp.UnixNano()), now.UnixNano(), &s.gen, gen) && s.remote != nil {
			pctx, sp := startSpan(ctx, "better_auth.redis.set", metrics.BackendRedis, l.Kind)
			s.remote.put(pctx, sh, k, rec, exp, now)
			endSpan(sp, nil) // a failed write is logged, and only costs sharing
		}
	}
	return loadResult{rec, metrics.TierDatabase}, nil
}

// ttlFor is the TTL of a record's kind, shortened by jitter.
func (s *Store) ttlFor(r betterauth.Record) time.Duration {
	ttl := s.ttl
	switch {
	case r.APIKey != nil:
		ttl = s.keyTTL
	case r.Session != nil:
		ttl = s.sessTTL
	}
	if ttl > 0 && s.jitter > 0 {
		ttl -= time.Duration(rand.Float64() * min(s.jitter, 1) * float64(ttl))
	}
	return ttl
}

// keep is how long an entry fresh until expires stays usable as stale.
func (s *Store) keep(expires int64) int64 { return expires + max(s.swr, s.sie) }

// expiryOf returns when the record stops being valid on its own, so that an
// expired row is not kept for long (it is denied on every hit regardless).
func expiryOf(r betterauth.Record) time.Time {
	switch {
	case r.APIKey != nil:
		return r.APIKey.ExpiresAt
	case r.Session != nil:
		return r.Session.ExpiresAt
	case r.OAuth != nil:
		if c := r.OAuth.CheckBy; !c.IsZero() && (r.OAuth.ExpiresAt.IsZero() || c.Before(r.OAuth.ExpiresAt)) {
			return c
		}
		return r.OAuth.ExpiresAt
	}
	return time.Time{}
}

// Target is what an invalidation names.
type Target uint8

// Targets.
const (
	TargetAPIKey     Target = iota + 1 // one API key, by id
	TargetSession                      // one session, by id
	TargetUser                         // everything of one user, by user id
	TargetCredential                   // one credential in every lookup kind, by digest
	TargetAll                          // everything, unknown credentials included
	// TargetOrg is everything of one organization, by id: the keys it
	// owns and the sessions whose active organization it is. Its value
	// comes after the others: it is relayed between gateways.
	TargetOrg
	// TargetOAuthToken is one OAuth access token, by its row id;
	// TargetOAuthClient every token of one OAuth client, by client id;
	// TargetOAuth every OAuth token (a resource changed).
	TargetOAuthToken
	TargetOAuthClient
	TargetOAuth
)

// Revocation names records that changed or went away.
type Revocation struct {
	Target Target
	// ID is the key's, session's or user's id.
	ID string
	// Digest is SHA-256 of the API key or session token, for
	// TargetCredential: for sources that report changes by key rather than
	// by row (Better-Auth's secondary storage).
	Digest [32]byte
}

// Revoke drops what the revocations name, here and in the shared cache, and
// keeps lookups already in flight from storing it again. The shared step
// comes between two local ones: the local entries go first, so that nothing
// revoked is served from memory; then the shared epoch is advanced (reads of
// the shared tier go to the database meanwhile) and the shared entries this
// gateway can name are deleted; then whatever a lookup took from the shared
// tier in between goes too. It returns the number of entries dropped here
// and the shared epoch reached (0 without a shared cache, or when it could
// not be advanced: the shared tier is then left unread until it can).
func (s *Store) Revoke(ctx context.Context, revs ...Revocation) (dropped int, epoch uint64) {
	if len(revs) == 0 {
		return 0, 0
	}
	m := newMatcher(revs)
	s.gen.Add(1)
	names, n := s.drop(m)
	if s.remote == nil {
		return n, 0
	}
	s.remote.raise(s.now())
	epoch = s.remote.revoke(ctx, names)
	s.gen.Add(1)
	_, again := s.drop(m)
	return n + again, epoch
}

// Relayed applies revocations another gateway made and announced, at the
// shared epoch it reached and the time it revoked: no shared entry older
// than either is accepted from now on, and the local entries go. With
// epoch 0 (the other gateway could not advance it) this gateway revokes in
// full itself.
func (s *Store) Relayed(ctx context.Context, epoch uint64, at time.Time, revs ...Revocation) int {
	if epoch == 0 || s.remote == nil {
		n, _ := s.Revoke(ctx, revs...)
		return n
	}
	s.remote.observe(epoch, at)
	s.gen.Add(1)
	names, n := s.drop(newMatcher(revs))
	if prefix, ok := s.remote.keyPrefix(ctx); ok {
		s.remote.del(ctx, prefix, names)
	}
	return n
}

// Purge drops everything, for when revocations may have been missed (a
// listener reconnected), and makes every shared entry stale.
func (s *Store) Purge(ctx context.Context) {
	s.Revoke(ctx, Revocation{Target: TargetAll})
}

// drop removes the matching entries from both spaces and returns the keys
// of those that were shared-cache candidates (found records), to delete
// there too.
func (s *Store) drop(m *matcher) (names []key, n int) {
	names, n = s.pos.deleteWhere(m.matches, names)
	if m.all {
		names = nil // the epoch makes every shared entry stale: nothing to name
	}
	if m.all || len(m.digests) > 0 {
		_, nn := s.neg.deleteWhere(m.matches, nil)
		n += nn
	}
	for d := range m.digests {
		// Named even when not held here: another gateway may have shared it.
		for _, kind := range digestKinds {
			names = append(names, keyOf(betterauth.Lookup{Kind: kind, Digest: d}))
		}
	}
	return names, n
}

// digestKinds are the lookup kinds a credential's digest may be cached
// under.
var digestKinds = []betterauth.Kind{betterauth.KindAPIKey, betterauth.KindSession, betterauth.KindEither,
	betterauth.KindOAuth, betterauth.KindAPIKey | betterauth.KindOAuth, betterauth.KindSession | betterauth.KindOAuth,
	betterauth.KindEither | betterauth.KindOAuth, betterauth.KindJWT}

// matcher tells which entries a batch of revocations names.
type matcher struct {
	all, oauth                bool
	keys, sessions, user, org map[string]bool
	oauthTokens, oauthClients map[string]bool
	digests                   map[[32]byte]bool
}

func newMatcher(revs []Revocation) *matcher {
	m := &matcher{keys: map[string]bool{}, sessions: map[string]bool{}, user: map[string]bool{}, org: map[string]bool{},
		oauthTokens: map[string]bool{}, oauthClients: map[string]bool{}, digests: map[[32]byte]bool{}}
	for _, r := range revs {
		switch r.Target {
		case TargetAll:
			m.all = true
		case TargetOAuth:
			m.oauth = true
		case TargetOAuthToken:
			m.oauthTokens[r.ID] = true
		case TargetOAuthClient:
			m.oauthClients[r.ID] = true
		case TargetAPIKey:
			m.keys[r.ID] = true
		case TargetSession:
			m.sessions[r.ID] = true
		case TargetUser:
			m.user[r.ID] = true
		case TargetOrg:
			m.org[r.ID] = true
		case TargetCredential:
			m.digests[r.Digest] = true
		}
	}
	return m
}

func (m *matcher) matches(k key, r betterauth.Record) bool {
	switch {
	case m.all || m.digests[[32]byte(k[1:])]:
		return true
	case r.APIKey != nil:
		// By the owner's id as the row names it: the user's or the
		// organization's, whichever row was found (or none).
		k := r.APIKey
		return m.keys[k.ID] || m.user[k.ReferenceID] || m.org[k.ReferenceID] ||
			(k.User != nil && m.user[k.User.ID]) || (k.Org != nil && m.org[k.Org.ID])
	case r.Session != nil:
		s := r.Session
		return m.sessions[s.ID] || m.user[s.User.ID] || (s.Org != nil && m.org[s.Org.OrgID])
	case r.OAuth != nil:
		t := r.OAuth
		return m.oauth || m.oauthTokens[t.ID] || m.oauthClients[t.ClientID] || m.user[t.UserID] ||
			(t.SessionID != "" && m.sessions[t.SessionID])
	}
	return false
}

// TimeoutError reports a lookup that took longer than LookupTimeout.
type TimeoutError struct {
	After time.Duration
	Err   error
}

func (e *TimeoutError) Error() string { return "lookup timed out after " + e.After.String() }
func (e *TimeoutError) Unwrap() error { return e.Err }

// Len returns the number of positive and negative entries, expired ones
// included until they are swept.
func (s *Store) Len() (positive, negative int) { return s.pos.len(), s.neg.len() }

// key is the lookup kind followed by the digest of the secret.
type key [1 + 32]byte

func keyOf(l betterauth.Lookup) key {
	var k key
	k[0] = byte(l.Kind)
	copy(k[1:], l.Digest[:])
	return k
}

const shards = 32

// table is a bounded, sharded map with per-entry expiry.
type table struct {
	perShard int
	shards   [shards]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[key]entry
}

type entry struct {
	rec     betterauth.Record
	expires int64 // fresh until, unix nanoseconds
	keep    int64 // usable as stale until (>= expires)
}

func (t *table) init(max int) {
	t.perShard = max / shards
	if t.perShard < 1 {
		t.perShard = 1
	}
	for i := range t.shards {
		t.shards[i].m = make(map[key]entry)
	}
}

func (t *table) shard(k key) *shard { return &t.shards[k[1]%shards] }

// get returns an entry that is still usable (fresh or stale) and when its
// freshness ends.
func (t *table) get(k key, now int64) (betterauth.Record, int64, bool) {
	sh := t.shard(k)
	sh.mu.RLock()
	e, ok := sh.m[k]
	sh.mu.RUnlock()
	if !ok || now >= e.keep {
		return betterauth.Record{}, 0, false
	}
	return e.rec, e.expires, true
}

// put stores an entry unless gen has moved past want: checked under the
// shard lock, so an invalidation either sees the entry and drops it, or
// has already moved gen and the entry is not stored.
func (t *table) put(k key, rec betterauth.Record, expires, keep, now int64, gen *atomic.Uint64, want uint64) bool {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if gen.Load() != want {
		return false
	}
	if _, ok := sh.m[k]; !ok && len(sh.m) >= t.perShard {
		sh.makeRoom(t.perShard, now)
	}
	sh.m[k] = entry{rec: rec, expires: expires, keep: keep}
	return true
}

// deleteWhere drops the entries that match, appending their keys to names.
func (t *table) deleteWhere(match func(key, betterauth.Record) bool, names []key) ([]key, int) {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if match(k, e.rec) {
				delete(sh.m, k)
				names = append(names, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return names, n
}

// makeRoom drops expired entries, and if that frees nothing, about an eighth
// of the shard in map order (effectively random), so that eviction is paid
// rarely rather than on every insert. As in Caddy's basic-auth cache.
func (sh *shard) makeRoom(limit int, now int64) {
	for k, e := range sh.m {
		if now >= e.keep {
			delete(sh.m, k)
		}
	}
	if len(sh.m) < limit {
		return
	}
	drop := len(sh.m) - limit + 1 + limit/8
	for k := range sh.m {
		if drop <= 0 {
			break
		}
		delete(sh.m, k)
		drop--
	}
}

func (t *table) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
