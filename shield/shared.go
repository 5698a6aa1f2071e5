package shield

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/internal/breaker"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
)

// SharedOptions configure a Shared shield.
type SharedOptions struct {
	// Local is the per-replica shield: its Failures and Window are the
	// shared ones, it counts every failure here too, and it answers
	// whenever Redis does not. Required.
	Local *Shield
	// Redis keeps the accounts. Required.
	Redis redis.Scripter
	// Prefix starts every Redis key ("bf:" and the address follow).
	Prefix string
	// Fresh is how long an account read from Redis is trusted here before
	// it is read again: a client is seen blocked by every replica within
	// Fresh of the failure that blocked it (at once by the replica that
	// counted it, and by one that had not asked about it recently).
	// Default: DefaultFresh.
	Fresh time.Duration
	// Logger hears Redis failures, at most once per throttle.Every.
	Logger *zap.Logger
}

// DefaultFresh is how long a replica reuses an account read from Redis.
const DefaultFresh = time.Second

// Shared is a Shield whose accounts live in Redis, so that every replica
// sees one account per address: each call is one script (EVALSHA) that
// reads or counts at Redis's clock, and each key expires when its failures
// are all forgiven. A replica remembers what it read for Fresh, in a
// bounded table, so that a client asking again and again costs one round
// trip per Fresh, not one per request. Should Redis fail or time out, the
// local shield answers (it counted every failure seen here as well); Redis
// is never a reason to refuse a client or to fail a request. A value in
// Redis that is not a number counts as no failures.
type Shared struct {
	local  *Shield
	redis  redis.Scripter
	prefix string
	fresh  int64
	window string // microseconds, for the scripts
	step   string
	logger *zap.Logger
	failed throttle.Log
	down   breaker.Breaker
	seed   maphash.Seed
	memo   [shards]memoShard
}

type memoShard struct {
	mu sync.Mutex
	m  map[netip.Addr]account
}

// account is an address's account as last read from Redis, in this
// process's clock: its TAT, and when it was read (unix nanoseconds).
type account struct{ tat, read int64 }

// NewShared returns a Shared shield; nil when o.Local is nil.
func NewShared(o SharedOptions) *Shared {
	if o.Local == nil || o.Redis == nil {
		return nil
	}
	if o.Fresh <= 0 {
		o.Fresh = DefaultFresh
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	l := o.Local
	s := &Shared{local: l, redis: o.Redis, prefix: o.Prefix + "bf:", fresh: int64(o.Fresh), logger: o.Logger,
		window: fmt.Sprint(int64((l.tolerance + l.interval) / time.Microsecond)),
		step:   fmt.Sprint(int64(l.interval / time.Microsecond)),
		seed:   maphash.MakeSeed()}
	for i := range s.memo {
		s.memo[i].m = map[netip.Addr]account{}
	}
	return s
}

// readScript returns how far ahead of now (microseconds) an account runs.
var readScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.pcall('GET', KEYS[1]))
if tat == nil or tat ~= tat or tat <= now then return 0 end
local window = tonumber(ARGV[1])
if tat > now + window then tat = now + window end
return tat - now`)

// failScript counts one failure, and returns how far ahead of now the
// account then runs; the key expires when it is back to now.
var failScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local tat = tonumber(redis.pcall('GET', KEYS[1]))
if tat == nil or tat ~= tat or tat < now then tat = now end
if tat > now + window then tat = now + window end
tat = tat + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', math.ceil((tat - now) / 1000)))
return tat - now`)

func (s *Shared) shard(a netip.Addr) *memoShard {
	b := a.As16()
	return &s.memo[maphash.Bytes(s.seed, b[:])%shards]
}

// Blocked implements betterauth.Shield.
func (s *Shared) Blocked(client netip.Addr) (time.Duration, bool) {
	if !client.IsValid() {
		return 0, false
	}
	key := ClientKey(client)
	now := s.local.now().UnixNano()
	sh := s.shard(key)
	sh.mu.Lock()
	acc, ok := sh.m[key]
	sh.mu.Unlock()
	if !ok || now-acc.read >= s.fresh {
		ahead, err := s.run(readScript, key, s.window)
		if err != nil {
			return s.local.Blocked(client)
		}
		acc = s.remember(sh, key, now, ahead)
	}
	if wait := time.Duration(acc.tat-now) - s.local.tolerance; wait > 0 {
		return wait, true
	}
	return 0, false
}

// Failed implements betterauth.Shield.
func (s *Shared) Failed(client netip.Addr) {
	if !client.IsValid() {
		return
	}
	s.local.Failed(client)
	key := ClientKey(client)
	now := s.local.now().UnixNano()
	ahead, err := s.run(failScript, key, s.window, s.step)
	if err != nil {
		return
	}
	s.remember(s.shard(key), key, now, ahead)
}

// run runs a script on key's account and returns its answer as a
// duration, logging a failure.
func (s *Shared) run(script *redis.Script, key netip.Addr, args ...any) (time.Duration, error) {
	if s.down.Open(time.Now()) {
		return 0, breaker.ErrOpen
	}
	ahead, err := script.Run(context.Background(), s.redis, []string{s.prefix + key.String()}, args...).Int64()
	if err == nil && ahead < 0 {
		err = fmt.Errorf("redis: unexpected shield answer %d", ahead)
	}
	if err != nil {
		s.down.Failed(time.Now())
		if total, ok := s.failed.Allow(); ok {
			s.logger.Warn("brute-force shield: redis failed; this replica's own counts decide until it answers",
				zap.Error(err), zap.Uint64("failures", total))
		}
		return 0, err
	}
	return time.Duration(ahead) * time.Microsecond, nil
}

// remember keeps an account read at now, within the table's bound: when
// a shard is full, accounts read longer than fresh ago go first, then any.
func (s *Shared) remember(sh *memoShard, key netip.Addr, now int64, ahead time.Duration) account {
	acc := account{tat: now + int64(ahead), read: now}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= s.local.perShard {
		for a, old := range sh.m {
			if now-old.read >= s.fresh {
				delete(sh.m, a)
			}
		}
		for a := range sh.m {
			if len(sh.m) < s.local.perShard {
				break
			}
			delete(sh.m, a)
		}
	}
	sh.m[key] = acc
	return acc
}

// remembered is how many accounts are remembered here.
func (s *Shared) remembered() int {
	n := 0
	for i := range s.memo {
		s.memo[i].mu.Lock()
		n += len(s.memo[i].m)
		s.memo[i].mu.Unlock()
	}
	return n
}
