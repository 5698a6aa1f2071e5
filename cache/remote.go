package cache

import (
	"context"
	"encoding/base64"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Remote is a second cache level shared by several gateways, such as Redis.
// It is an optimisation only: the Store falls through to the database on
// any error and never fails a request for it.
//
// An epoch, a counter kept beside the entries, makes revocation cheap: a
// gateway that learns of a revocation advances it, and every value written
// under an earlier epoch is stale from then on, on every replica.
type Remote interface {
	// Get returns the value at key (nil when absent) and the epoch at
	// epochKey (0 when absent), in one round trip.
	Get(ctx context.Context, key, epochKey string) (value []byte, epoch uint64, err error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Bump advances the epoch at epochKey.
	Bump(ctx context.Context, epochKey string) error
}

// Remote defaults.
const (
	DefaultRemoteTimeout = 100 * time.Millisecond
	remoteLogEvery       = 10 * time.Second
)

// remoteTier reads records from the Remote on an in-process miss and writes
// the ones the database found, each call bounded by the timeout. The write
// happens before the answer, so that what one gateway has verified is
// already shared when its client hears back.
type remoteTier struct {
	r       Remote
	prefix  string
	timeout time.Duration
	logger  *zap.Logger
	lastLog atomic.Int64 // unix nanoseconds of the last error logged
}

func newRemoteTier(r Remote, prefix string, timeout time.Duration, logger *zap.Logger) *remoteTier {
	if timeout <= 0 {
		timeout = DefaultRemoteTimeout
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &remoteTier{r: r, prefix: prefix + codecVersion + ":", timeout: timeout, logger: logger}
}

// keyFor is the shared-cache key of a lookup: the prefix, the codec version,
// the lookup mode and the SHA-256 of the secret (for API keys, what
// Better-Auth itself stores), never the secret.
func (t *remoteTier) keyFor(k key) string {
	return t.prefix + string("?kse"[k[0]%4]) + ":" + base64.RawURLEncoding.EncodeToString(k[1:])
}

func (t *remoteTier) epochKey() string { return t.prefix + "epoch" }

// get reads a record written under the current epoch. ok is false on a
// miss, a stale or bad value, or an error; epoch is the current epoch (0
// when Redis could not answer), under which a record loaded now may be
// written.
func (t *remoteTier) get(ctx context.Context, k key) (rec betterauth.Record, expires time.Time, epoch uint64, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	b, epoch, err := t.r.Get(ctx, t.keyFor(k), t.epochKey())
	if err != nil {
		t.fail("shared cache read failed; using the database", err)
		return betterauth.Record{}, time.Time{}, 0, false
	}
	if b == nil {
		return betterauth.Record{}, time.Time{}, epoch, false
	}
	rec, exp, written, err := decode(b)
	if err != nil {
		t.fail("shared cache entry unreadable; using the database", err)
		return betterauth.Record{}, time.Time{}, epoch, false
	}
	if written != epoch {
		return betterauth.Record{}, time.Time{}, epoch, false // revoked since
	}
	return rec, exp, epoch, true
}

// bump makes every shared entry stale.
func (t *remoteTier) bump(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := t.r.Bump(ctx, t.epochKey()); err != nil {
		t.fail("shared cache revocation failed; entries expire with their TTL", err)
	}
}

// put shares a found record until its entry expires. A failure only means
// the entry is not shared.
func (t *remoteTier) put(ctx context.Context, k key, rec betterauth.Record, expires, now time.Time, epoch uint64) {
	ttl := expires.Sub(now)
	if ttl < time.Millisecond {
		return
	}
	b, err := encode(rec, expires, epoch)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := t.r.Set(ctx, t.keyFor(k), b, ttl); err != nil {
		t.fail("shared cache write failed", err)
	}
}

// fail logs a Remote error at most once per remoteLogEvery: an outage must
// not flood the log.
func (t *remoteTier) fail(msg string, err error) {
	now := time.Now().UnixNano()
	last := t.lastLog.Load()
	if now-last < int64(remoteLogEvery) || !t.lastLog.CompareAndSwap(last, now) {
		return
	}
	t.logger.Warn(msg, zap.Error(err))
}
