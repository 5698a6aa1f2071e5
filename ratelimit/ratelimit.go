package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/breaker"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
	"github.com/caddy-betterauth/caddy-betterauth/shield"
)

// Options configure a Store.
type Options struct {
	// Redis, when set, keeps the buckets, shared by every gateway using
	// it. Any error or timeout falls back to the in-process buckets (fail
	// open to local limits), logged at most once per throttle.Every; Redis
	// is then left alone for breaker.Pause.
	Redis redis.Scripter
	// Prefix starts every Redis key. Default: "caddy-betterauth:".
	Prefix string
	// MaxBuckets bounds the in-process buckets. Default: 100000.
	MaxBuckets int
	// Now is the clock of the in-process buckets (Redis uses its own).
	// Default: time.Now.
	Now func() time.Time
	// Logger hears Redis failures.
	Logger *zap.Logger
}

// DefaultPrefix starts Redis keys when Options.Prefix is empty.
const DefaultPrefix = "caddy-betterauth:"

// Store holds the buckets of every tier of a gateway's routes. Buckets are
// named by tier name, key kind and key, not by route: two routes with a
// tier of the same name and key count in the same buckets (each with its
// own rate).
type Store struct {
	local  *local
	redis  redis.Scripter
	prefix string
	now    func() time.Time
	logger *zap.Logger
	failed throttle.Log
	down   breaker.Breaker
}

// NewStore returns a Store.
func NewStore(o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Store{local: newLocal(o.MaxBuckets), redis: o.Redis, prefix: o.Prefix + "rl:", now: o.Now, logger: o.Logger}
}

// Limiter is one route's tiers over a Store; it implements
// betterauth.Limiter.
type Limiter struct {
	store *Store
	tiers []tier
	byIP  bool
}

type tier struct {
	Tier
	lim      gcra
	salt     uint64 // the bucket hash of the tier's name and key kind
	redisKey string // prefix, name and kind: the Redis key but for its id
	args     [2]string
}

// Limiter returns the limiter of ts, checked in order, or an error if ts
// are not valid (see ValidateTiers); nil for no tiers.
func (s *Store) Limiter(ts []Tier) (*Limiter, error) {
	if err := ValidateTiers(ts); err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, nil
	}
	l := &Limiter{store: s}
	for _, t := range ts {
		lim := t.gcra()
		id := t.Name + "\x00" + t.Key.String()
		l.tiers = append(l.tiers, tier{
			Tier: t, lim: lim, salt: maphash.String(s.local.seed, id),
			redisKey: s.prefix + t.Name + ":" + t.Key.String() + ":",
			args: [2]string{
				strconv.FormatInt(lim.interval/int64(time.Microsecond), 10),
				strconv.FormatInt(lim.limit/int64(time.Microsecond), 10),
			},
		})
		l.byIP = l.byIP || t.Key == KeyIP
	}
	return l, nil
}

// UsesClient implements betterauth.Limiter.
func (l *Limiter) UsesClient() bool { return l.byIP }

// organizationOf is the organization a decision acts for: the owner of an
// organization's key, or a session's active organization; none otherwise
// (the tier is skipped).
func organizationOf(d *betterauth.Decision) string {
	switch {
	case d.Org != nil:
		return d.Org.ID
	case d.Member != nil:
		return d.Member.OrgID
	}
	return ""
}

// keyOf is what t counts d by; ok is false when the request has none (the
// tier is skipped).
func (t *tier) keyOf(d *betterauth.Decision, client netip.Addr) (id string, addr netip.Addr, ok bool) {
	switch t.Key {
	case KeyCredential:
		id = d.CredentialID
	case KeyUser:
		if d.User != nil {
			id = d.User.ID
		}
	case KeyOrganization:
		id = organizationOf(d)
	case KeyIP:
		if !client.IsValid() {
			return "", addr, false
		}
		return "", shield.ClientKey(client), true
	case KeyGlobal:
		return "", addr, true
	}
	return id, addr, id != ""
}

// Limit implements betterauth.Limiter.
func (l *Limiter) Limit(ctx context.Context, d betterauth.Decision, client netip.Addr) (time.Duration, bool) {
	var (
		which [MaxTiers]*tier
		ids   [MaxTiers]uint64
		lims  [MaxTiers]gcra
		n     int
	)
	for i := range l.tiers {
		t := &l.tiers[i]
		id, addr, ok := t.keyOf(&d, client)
		if !ok {
			continue
		}
		var h uint64
		if addr.IsValid() {
			b := addr.As16()
			h = maphash.Bytes(l.store.local.seed, b[:])
		} else {
			h = maphash.String(l.store.local.seed, id)
		}
		// The tier's salt is a seeded hash too: two keys of one tier
		// collide only if their hashes do, and nobody can aim for it.
		which[n], ids[n], lims[n] = t, h^t.salt, t.lim
		n++
	}
	if n == 0 {
		return 0, false
	}
	if l.store.redis != nil && !l.store.down.Open(time.Now()) {
		wait, limited, err := l.redisTake(ctx, which[:n], &d, client)
		if err == nil {
			return wait, limited
		}
		if ctx.Err() != nil {
			return 0, false // the client left: nobody to answer, Redis is not to blame
		}
		l.store.down.Failed(time.Now())
		if total, ok := l.store.failed.Allow(); ok {
			l.store.logger.Warn("rate limits: redis failed; counting in this process until it answers",
				zap.Error(err), zap.Uint64("failures", total))
		}
	}
	denied, wait := l.store.local.take(ids[:n], lims[:n], l.store.now().UnixNano())
	if denied < 0 {
		return 0, false
	}
	return max(time.Duration(wait), 1), true
}

// take is the Redis script: every tier's bucket is read and checked at
// Redis's clock (microseconds), and only if all allow are they written,
// each to expire when it is full again. A value that is not a number
// (written by someone else) counts as a full bucket; one that runs past
// what the tier allows is capped. It returns {0, 0}, or {i, wait} for the
// first tier i (1-based) that is exhausted.
var take = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2*i-1])
  local limit = tonumber(ARGV[2*i])
  local tat = tonumber(redis.pcall('GET', KEYS[i]))
  if tat == nil or tat ~= tat or tat < now then tat = now end
  if tat > now + limit then tat = now + limit end
  local nxt = tat + interval
  if nxt - now > limit then
    return {i, nxt - now - limit}
  end
  tats[i] = nxt
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', string.format('%d', math.ceil((tats[i] - now) / 1000)))
end
return {0, 0}`)

func (l *Limiter) redisTake(ctx context.Context, ts []*tier, d *betterauth.Decision, client netip.Addr) (time.Duration, bool, error) {
	keys := make([]string, len(ts))
	args := make([]any, 0, 2*len(ts))
	for i, t := range ts {
		id, addr, _ := t.keyOf(d, client)
		if addr.IsValid() {
			id = addr.String()
		}
		keys[i] = t.redisKey + id
		args = append(args, t.args[0], t.args[1])
	}
	res, err := take.Run(ctx, l.store.redis, keys, args...).Int64Slice()
	if err != nil {
		return 0, false, err
	}
	if len(res) != 2 || res[0] < 0 || res[0] > int64(len(ts)) || res[1] < 0 {
		return 0, false, fmt.Errorf("redis: unexpected rate limit answer %v", res)
	}
	if res[0] == 0 {
		return 0, false, nil
	}
	return max(time.Duration(res[1])*time.Microsecond, 1), true, nil
}

var _ betterauth.Limiter = (*Limiter)(nil)
