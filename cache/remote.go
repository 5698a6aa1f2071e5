package cache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// Remote is a second cache level shared by several gateways, such as Redis.
// It is an optimisation only: the Store falls through to the database on
// any error and never fails a request for it. It is not trusted either:
// every entry is sealed (see Sealer), and what someone with write access to
// it can do is limited to making entries miss.
//
// An epoch, a counter kept beside the entries, makes revocation cheap: a
// gateway that learns of a revocation advances it, and every value written
// under an earlier epoch is stale from then on, on every replica. A gateway
// never accepts an epoch lower than one it has seen, so setting the counter
// back cannot revive what a revocation made stale.
type Remote interface {
	// Get returns the value at key (nil when absent) and the epoch at
	// epochKey (0 when absent), in one round trip.
	Get(ctx context.Context, key, epochKey string) (value []byte, epoch uint64, err error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Bump advances the epoch at epochKey past both its value and floor,
	// atomically, and returns the new epoch.
	Bump(ctx context.Context, epochKey string, floor uint64) (uint64, error)
	// Del removes keys.
	Del(ctx context.Context, keys ...string) error
}

// Remote defaults.
const (
	// MaxEpoch bounds the shared epoch: Redis scripts count in doubles,
	// exact only below 2^53, and an epoch someone set out of range must be
	// an error, never a value that stops advancing.
	MaxEpoch = 1 << 52
	// ClockSkew is how far apart the gateways' clocks may be. Entries
	// written less than this after a gateway started, or after a revocation
	// it applied, are not read: a genuine entry from before a revocation,
	// restored by someone who can write to Redis, is refused even if the
	// epoch is set back, and even by a gateway that has seen no epoch.
	ClockSkew = time.Second
	// MessageWindow is how old (or how far ahead) a relayed message may be.
	MessageWindow = 30 * time.Second

	DefaultRemoteTimeout = 100 * time.Millisecond
	// resumeEvery spaces the attempts to advance an epoch that could not be
	// advanced, or that was found set back.
	resumeEvery = time.Second
)

// remoteTier reads records from the Remote on an in-process miss and writes
// the ones the database found, each call bounded by the timeout. The write
// happens before the answer, so that what one gateway has verified is
// already shared when its client hears back.
type remoteTier struct {
	r       Remote
	sealer  *Sealer
	timeout time.Duration
	logger  *zap.Logger
	now     func() time.Time
	ipField string // Options.AllowedIPsField
	metrics *metrics.Set

	prefixOnce sync.Mutex
	prefix     atomic.Pointer[string]
	scope      func(context.Context) (string, error) // resolves the default prefix on first use

	maxEpoch atomic.Uint64 // the highest epoch seen; lower ones are refused
	// notBefore, unix milliseconds by this gateway's clock, is when it
	// started or last applied a revocation: entries written earlier (less
	// ClockSkew) are not read. Unlike the epoch, Redis cannot set it back.
	notBefore atomic.Int64
	// suspended is set when a revocation could not advance the epoch, or
	// the epoch was found set back: entries written before may be revoked,
	// so nothing is read until an advance succeeds.
	suspended  atomic.Bool
	lastResume atomic.Int64 // by the store's clock, unix nanoseconds
	// revoking counts revocations advancing the epoch; nothing is read
	// meanwhile, since what is there may be what they revoke.
	revoking atomic.Int32

	forged throttle.Log // entries whose seal did not match
	errors throttle.Log // Remote errors: an outage must not flood the log
}

// newRemoteTier returns the shared tier of a Store whose clock is now.
func newRemoteTier(opts Options, now func() time.Time) *remoteTier {
	t := &remoteTier{r: opts.Remote, sealer: opts.Sealer, timeout: opts.RemoteTimeout, logger: opts.Logger, scope: opts.RemoteScope, now: now,
		ipField: opts.AllowedIPsField, metrics: opts.Metrics}
	t.notBefore.Store(t.now().UnixMilli())
	if t.timeout <= 0 {
		t.timeout = DefaultRemoteTimeout
	}
	if t.logger == nil {
		t.logger = zap.NewNop()
	}
	if opts.RemotePrefix != "" || t.scope == nil {
		p := opts.RemotePrefix + CodecVersion + ":"
		t.prefix.Store(&p)
	}
	return t
}

// DefaultPrefix is the shared-cache prefix of gateways that read the rows
// scope names (see Options.RemoteScope), without the codec version.
func DefaultPrefix(scope string) string {
	sum := sha256.Sum256([]byte(scope))
	return "caddy-betterauth:" + hex.EncodeToString(sum[:16]) + ":"
}

// keyPrefix returns the prefix of every key, resolving the default one on
// first use: it names the rows the gateway reads, which only the database
// can tell (the schema a search_path resolves to).
func (t *remoteTier) keyPrefix(ctx context.Context) (string, bool) {
	if p := t.prefix.Load(); p != nil {
		return *p, true
	}
	t.prefixOnce.Lock()
	defer t.prefixOnce.Unlock()
	if p := t.prefix.Load(); p != nil {
		return *p, true
	}
	scope, err := t.scope(ctx)
	if err != nil {
		t.fail("cannot name the shared cache's entries yet; using the database", err)
		return "", false
	}
	p := DefaultPrefix(scope) + CodecVersion + ":"
	t.prefix.Store(&p)
	return p, true
}

// Shared reports whether the store has a shared tier.
func (s *Store) Shared() bool { return s.remote != nil }

// Prefix returns the shared-cache prefix (without the codec version), for
// other users of the same Redis, such as the invalidation channel.
func (s *Store) Prefix(ctx context.Context) (string, error) {
	if s.remote == nil {
		return "", errors.New("no shared cache")
	}
	p, ok := s.remote.keyPrefix(ctx)
	if !ok {
		return "", errors.New("the shared cache's prefix is not resolved yet")
	}
	return p[:len(p)-len(CodecVersion)-1], nil
}

// keyFor is the shared-cache key of a lookup: the prefix, the codec version,
// the lookup kind and the SHA-256 of the secret (for API keys, what
// Better-Auth itself stores), never the secret.
func keyFor(prefix string, k key) string {
	return prefix + kindName(betterauth.Kind(k[0])) + ":" + base64.RawURLEncoding.EncodeToString(k[1:])
}

// kindName names a lookup kind in shared keys, one name per kind: lookups
// of different kinds read different tables, and one must never be served
// what another found.
func kindName(k betterauth.Kind) string {
	switch k {
	case betterauth.KindAPIKey:
		return "k"
	case betterauth.KindSession:
		return "s"
	case betterauth.KindEither:
		return "e"
	}
	return "x" + strconv.Itoa(int(k))
}

func epochKey(prefix string) string { return prefix + "epoch" }

// shared is what one read of the shared tier found, and whether a record
// loaded from the database may be written back under its epoch.
type shared struct {
	rec      betterauth.Record
	expires  time.Time
	hit      bool
	epoch    uint64
	writable bool
	prefix   string
	// readAt is when the lookup began, before the epoch and the database
	// were read: what a record loaded now is stamped with, so that a read
	// that raced a revocation is not stamped as if it came after it.
	readAt time.Time
}

// get reads a record written under the current epoch.
func (t *remoteTier) get(ctx context.Context, k key) shared {
	if t.revoking.Load() > 0 {
		return shared{}
	}
	if t.suspended.Load() {
		t.resume(ctx)
		return shared{}
	}
	readAt := t.now()
	prefix, ok := t.keyPrefix(ctx)
	if !ok {
		return shared{}
	}
	timeout := t.timeout
	if d, ok := ctx.Deadline(); ok {
		// Redis is optional: a Redis that does not answer must leave the
		// database at least half of what is left of the lookup's time.
		timeout = min(timeout, time.Until(d)/2)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := keyFor(prefix, k)
	var began time.Time
	if t.metrics != nil {
		began = time.Now()
	}
	floor := t.maxEpoch.Load()
	b, epoch, err := t.r.Get(ctx, name, epochKey(prefix))
	if t.metrics != nil {
		t.metrics.Looked(metrics.BackendRedis, time.Since(began), err)
	}
	if err == nil && epoch >= MaxEpoch {
		err = fmt.Errorf("the shared epoch %d is out of range", epoch)
	}
	if err != nil {
		t.fail("shared cache read failed; using the database", err)
		return shared{}
	}
	if !t.see(epoch) {
		// Set back (by a Redis that lost its data, or by someone else):
		// what is there now may predate revocations this gateway knows of.
		// An epoch between the floor and the highest seen is only a read
		// that raced a revocation (this gateway's, or one relayed): stale,
		// not set back, and not served.
		if epoch < floor {
			t.suspend("the shared cache's epoch went backwards; reading the database until it is advanced")
		}
		return shared{}
	}
	res := shared{epoch: epoch, writable: true, prefix: prefix, readAt: readAt}
	if b == nil {
		return res
	}
	payload, ok := t.sealer.Open(name, b)
	if !ok {
		t.forgery()
		return res
	}
	rec, st, err := decode(payload)
	if err != nil {
		t.fail("shared cache entry unreadable; using the database", err)
		return res
	}
	written := st.written.UnixMilli()
	if st.epoch != epoch || written < t.notBefore.Load()+ClockSkew.Milliseconds() ||
		written > readAt.Add(ClockSkew).UnixMilli() {
		return res // revoked since, written before this gateway could know, or by a clock ahead of its own
	}
	if rec.APIKey != nil && st.ipField != t.ipField {
		return res // read by a gateway that looks for allow-lists elsewhere, or not at all
	}
	res.rec, res.expires, res.hit = rec, st.expires, true
	return res
}

// see records an epoch read from the Remote; false if it is lower than one
// seen before.
func (t *remoteTier) see(epoch uint64) bool {
	for {
		m := t.maxEpoch.Load()
		if epoch < m {
			return false
		}
		if epoch == m || t.maxEpoch.CompareAndSwap(m, epoch) {
			return true
		}
	}
}

// put shares a found record until its entry expires. A failure only means
// the entry is not shared.
func (t *remoteTier) put(ctx context.Context, sh shared, k key, rec betterauth.Record, expires, now time.Time) {
	ttl := expires.Sub(now)
	if !sh.writable || ttl < time.Millisecond {
		return
	}
	payload, err := encode(rec, stamp{expires: expires, epoch: sh.epoch, written: sh.readAt, ipField: t.ipField})
	if err != nil {
		return
	}
	name := keyFor(sh.prefix, k)
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := t.r.Set(ctx, name, t.sealer.Seal(name, payload), ttl); err != nil {
		t.fail("shared cache write failed", err)
	}
}

// revoke makes every shared entry stale by advancing the epoch, and deletes
// the entries it can name. Reads of the shared tier wait it out (they go to
// the database), and if the epoch cannot be advanced the tier stays unread
// until it can. It returns the new epoch, or 0.
func (t *remoteTier) revoke(ctx context.Context, names []key) uint64 {
	t.revoking.Add(1)
	defer t.revoking.Add(-1)
	prefix, ok := t.keyPrefix(ctx)
	var epoch uint64
	if ok {
		epoch, ok = t.advance(ctx, prefix)
		t.del(ctx, prefix, names)
	}
	if !ok {
		t.suspend("a revocation could not advance the shared cache's epoch; reading the database until it can")
		return 0
	}
	return epoch
}

// advance bumps the epoch past every one seen.
func (t *remoteTier) advance(ctx context.Context, prefix string) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	floor := t.maxEpoch.Load()
	epoch, err := t.r.Bump(ctx, epochKey(prefix), floor)
	if err == nil && (epoch <= floor || epoch >= MaxEpoch) {
		err = fmt.Errorf("the shared epoch did not advance past %d (got %d)", floor, epoch)
	}
	if err != nil {
		t.fail("shared cache epoch could not be advanced", err)
		return 0, false
	}
	t.see(epoch)
	return epoch, true
}

// del removes named entries, best effort: the epoch has made them stale.
func (t *remoteTier) del(ctx context.Context, prefix string, names []key) {
	if len(names) == 0 {
		return
	}
	keys := make([]string, len(names))
	for i, k := range names {
		keys[i] = keyFor(prefix, k)
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := t.r.Del(ctx, keys...); err != nil {
		t.fail("shared cache entries could not be deleted; they are stale by epoch", err)
	}
}

// observe records an epoch another gateway reached and when it revoked
// (from an authenticated message), so that nothing older is accepted from
// now on.
func (t *remoteTier) observe(epoch uint64, at time.Time) {
	if epoch < MaxEpoch {
		t.see(epoch)
	}
	t.raise(at)
}

// raise moves the watermark up to at: entries written before it are not
// read.
func (t *remoteTier) raise(at time.Time) {
	ms := at.UnixMilli()
	for {
		cur := t.notBefore.Load()
		if ms <= cur || t.notBefore.CompareAndSwap(cur, ms) {
			return
		}
	}
}

func (t *remoteTier) suspend(msg string) {
	if !t.suspended.Swap(true) {
		t.logger.Warn(msg)
	}
}

// resume tries, at most once per resumeEvery, to advance the epoch so that
// the shared tier can be read again.
func (t *remoteTier) resume(ctx context.Context) {
	now := t.now().UnixNano()
	last := t.lastResume.Load()
	if now-last < int64(resumeEvery) || !t.lastResume.CompareAndSwap(last, now) {
		return
	}
	prefix, ok := t.keyPrefix(ctx)
	if !ok {
		return
	}
	if _, ok := t.advance(ctx, prefix); ok && t.suspended.Swap(false) {
		t.logger.Info("the shared cache's epoch was advanced; reading it again")
	}
}

// forgery counts an entry whose seal did not match and says so, without
// its contents, at most once per throttle.Every.
func (t *remoteTier) forgery() {
	if n, ok := t.forged.AllowAt(t.now()); ok {
		t.logger.Warn("ignored shared cache entries that failed authentication: written without this gateway's key, "+
			"or tampered with; is something else writing to this Redis, or do the gateways' secrets differ?",
			zap.Uint64("total", n))
	}
}

// fail logs a Remote error at most once per throttle.Every.
func (t *remoteTier) fail(msg string, err error) {
	if _, ok := t.errors.AllowAt(t.now()); ok {
		t.logger.Warn(msg, zap.Error(err))
	}
}

// Stats are counters about the shared tier.
type Stats struct {
	// ForgedEntries counts shared entries ignored because their seal did
	// not match.
	ForgedEntries uint64
	// Epoch is the highest shared epoch seen.
	Epoch uint64
	// Suspended is true while the shared tier is not read (an epoch could
	// not be advanced, or went backwards).
	Suspended bool
}

// Stats returns the shared tier's counters (zero without one).
func (s *Store) Stats() Stats {
	if s.remote == nil {
		return Stats{}
	}
	return Stats{ForgedEntries: s.remote.forged.Count(), Epoch: s.remote.maxEpoch.Load(), Suspended: s.remote.suspended.Load()}
}
