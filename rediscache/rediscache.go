// Package rediscache is the Redis side of the shared cache: a cache.Remote
// over a go-redis universal client (one node, Sentinel or Cluster), and the
// Bus on which gateways relay invalidations to each other.
package rediscache

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/redisurl"
)

// Options configure a client of the shared cache tier. Secondary storage,
// a source of truth, opens its own (secondary.Open).
type Options struct {
	// URL is redis://[user:pass@]host:port[/db], or rediss:// for TLS. More
	// nodes of a cluster go in addr parameters:
	// redis://h1:6379?addr=h2:6379&addr=h3:6379.
	URL string
	// SentinelMaster, when set, makes the URL's hosts Sentinels of that
	// master.
	SentinelMaster string
	// Timeout bounds dialing, reading and writing. Default:
	// cache.DefaultRemoteTimeout.
	Timeout time.Duration
}

// Open returns a client for opts that fails fast, as a tier the gateway
// may skip should. It does not connect: the first command does.
func Open(opts Options) (redis.UniversalClient, error) {
	uo, err := redisurl.Parse(opts.URL, opts.SentinelMaster)
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = cache.DefaultRemoteTimeout
	}
	uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout = timeout, timeout, timeout
	// A slow or absent Redis must not slow requests: no command retries and
	// one dial attempt (go-redis would otherwise redial until the timeout),
	// then fall through to the database.
	uo.MaxRetries, uo.DialerRetries = -1, 1
	// The caller's deadline bounds every command too (go-redis ignores it
	// otherwise): a Redis that stops answering must not hold a lookup past
	// lookup_timeout, whatever the timeout here.
	uo.ContextTimeoutEnabled = true
	return redis.NewUniversalClient(uo), nil
}

// Remote adapts a client to cache.Remote.
type Remote struct{ c redis.UniversalClient }

// New returns the cache.Remote over c.
func New(c redis.UniversalClient) *Remote { return &Remote{c: c} }

// Get implements cache.Remote: one MGET of the entry and the epoch.
//
// In a Redis Cluster the two keys must hash to one slot; the cache's keys
// share their prefix, so give it a hash tag there ({caddy-betterauth}:).
func (r *Remote) Get(ctx context.Context, key, epochKey string) ([]byte, uint64, error) {
	vals, err := r.c.MGet(ctx, key, epochKey).Result()
	if err != nil {
		return nil, 0, err
	}
	var epoch uint64
	if s, ok := vals[1].(string); ok {
		if epoch, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("redis: epoch: %w", err)
		}
	}
	s, ok := vals[0].(string)
	if !ok {
		return nil, epoch, nil
	}
	return []byte(s), epoch, nil
}

// bump advances an epoch past both its value and a floor in one atomic
// step: a gateway that has seen a higher epoch than Redis holds (Redis lost
// its data, or someone set the key back) restores monotonicity.
var bump = redis.NewScript(`
local v = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if v <= floor then
  v = floor + 1
  redis.call('SET', KEYS[1], string.format('%d', v))
end
return v`)

// Bump implements cache.Remote.
func (r *Remote) Bump(ctx context.Context, epochKey string, floor uint64) (uint64, error) {
	if floor >= cache.MaxEpoch {
		return 0, fmt.Errorf("redis: epoch floor %d out of range", floor)
	}
	v, err := bump.Run(ctx, r.c, []string{epochKey}, strconv.FormatUint(floor, 10)).Int64()
	if err != nil {
		return 0, err
	}
	if v <= 0 || v >= cache.MaxEpoch {
		return 0, fmt.Errorf("redis: epoch %d out of range", v)
	}
	return uint64(v), nil
}

// Del implements cache.Remote, pipelined: one round trip, and in a Cluster
// the keys may live on different nodes.
func (r *Remote) Del(ctx context.Context, keys ...string) error {
	pipe := r.c.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, k)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Set implements cache.Remote.
func (r *Remote) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return r.c.Set(ctx, key, value, ttl).Err()
}

var _ cache.Remote = (*Remote)(nil)

// Bus carries messages between gateways over Redis pub/sub: the
// invalidations one gateway heard, relayed to the others. It is not part
// of the cache tier (Remote), though it may share its client.
type Bus struct{ c redis.UniversalClient }

// NewBus returns the bus over c.
func NewBus(c redis.UniversalClient) *Bus { return &Bus{c: c} }

// Publish sends msg on channel.
func (b *Bus) Publish(ctx context.Context, channel string, msg []byte) error {
	return b.c.Publish(ctx, channel, msg).Err()
}

// Subscribe calls handle for every message on channel until ctx ends.
// subscribed, if set, is called each time Redis confirms the subscription:
// the first time, and again after go-redis has reconnected and
// resubscribed, when messages sent meanwhile were lost.
func (b *Bus) Subscribe(ctx context.Context, channel string, subscribed func(), handle func([]byte)) error {
	ps := b.c.Subscribe(ctx, channel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return err
	}
	if subscribed != nil {
		subscribed()
	}
	ch := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Message:
				handle([]byte(m.Payload))
			case *redis.Subscription:
				if m.Kind == "subscribe" && subscribed != nil {
					subscribed()
				}
			}
		}
	}
}
